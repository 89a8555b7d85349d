// Our broker and the upstream peer behind one interface: start, spawn agents through the broker's
// own /api/spawn, measure memory, stop.
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { request } from "./http.mjs"
import { now, sleep, start } from "./procs.mjs"
import { collectGarbage } from "./inspector.mjs"
import { treeCpuMs, treeMemory } from "./proctree.mjs"

const LISTENING = /API listening on (https?:\/\/\S+)/

/** A sink agent itself: Node running sink-agent.mjs (upstream's wrapper has the same words in its arguments). */
const isSinkAgent = (p) => /(^|\/)node(\.exe)?$/.test(p.argv[0] ?? "") && (p.argv[1] ?? "").endsWith("sink-agent.mjs")

/** The environment without any relay setting of the caller's own, so that only ours apply. */
const cleanEnv = () =>
  Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(RELAY_|RELAYCAST_|AGENT_RELAY_)/.test(key)))

/** Polls the engine until the node named `name` reports online; resolves with the time it did. */
export const waitNodeOnline = async (engine, workspaceKey, name, { timeoutMs = 20000, everyMs = 5, proc } = {}) => {
  const deadline = now() + timeoutMs
  while (now() < deadline) {
    const node = await engine.node(workspaceKey, name)
    if (node && (node.status === "online" || node.live === true)) return now()
    if (proc && !proc.isRunning()) throw new Error(`${proc.label} exited before its node came online`)
    await sleep(everyMs)
  }
  throw new Error(`node ${name} not online in the engine within ${timeoutMs} ms`)
}

const readConnection = async (stateDir, timeoutMs) => {
  const file = join(stateDir, "connection.json")
  const deadline = now() + timeoutMs
  while (now() < deadline) {
    if (existsSync(file)) {
      try {
        return JSON.parse(readFileSync(file, "utf8"))
      } catch {
        // Half-written by a non-atomic writer: retry.
      }
    }
    await sleep(10)
  }
  throw new Error(`no connection.json in ${stateDir} within ${timeoutMs} ms`)
}

/** Waits until the control API answers (the upstream answers 503 while it is still starting). */
const waitApiReady = async (url, apiKey, timeoutMs) => {
  const deadline = now() + timeoutMs
  let last
  while (now() < deadline) {
    try {
      last = await request("GET", `${url}/api/session`, { headers: { "x-api-key": apiKey }, timeoutMs: 2000 })
      if (last.status === 200) return
    } catch (error) {
      last = { status: 0, body: String(error) }
    }
    await sleep(25)
  }
  throw new Error(`${url}/api/session not ready within ${timeoutMs} ms (last: ${last?.status} ${JSON.stringify(last?.body).slice(0, 200)})`)
}

const commandFor = (kind, { entry, binary, stateDir, apiPort, name, workspaceKey }) =>
  kind === "us"
    ? {
        command: process.execPath,
        args: [entry, "up", "--state-dir", stateDir, "--api-port", String(apiPort), "--name", name]
      }
    : {
        command: binary,
        args: ["init", "--persist", "--api-port", String(apiPort), "--workspace-key", workspaceKey, "--name", name, "--state-dir", stateDir]
      }

/**
 * Starts a broker of `kind` ("us" or "upstream") against the engine, and resolves once it is usable:
 * its API answers and its node is online. `startedAt`, `listeningAt`, `onlineAt` are epoch ms.
 */
export const startBroker = async (kind, { entry, binary, engine, workspaceKey, name, stateDir, logDir, timeoutMs = 30000 }) => {
  mkdirSync(stateDir, { recursive: true })
  const home = join(stateDir, "home")
  mkdirSync(home, { recursive: true })
  const apiKey = `br_${randomBytes(16).toString("hex")}`
  const env = {
    ...cleanEnv(),
    RELAY_BASE_URL: engine.url,
    RELAY_WORKSPACE_KEY: workspaceKey,
    RELAY_BROKER_API_KEY: apiKey,
    AGENT_RELAY_TELEMETRY_DISABLED: "1",
    DO_NOT_TRACK: "1",
    // Machine id and node-token caches go to the run's folder, not the user's home.
    HOME: home,
    XDG_DATA_HOME: join(home, ".local", "share"),
    XDG_CONFIG_HOME: join(home, ".config"),
    XDG_CACHE_HOME: join(home, ".cache")
  }
  const { command, args } = commandFor(kind, { entry, binary, stateDir, apiPort: 0, name, workspaceKey })
  const proc = start(`${kind} broker ${name}`, command, args, { env, cwd: stateDir, logFile: join(logDir, `${kind}-${name}.log`) })
  try {
    const listening = await proc.waitForLine(LISTENING, timeoutMs)
    const onlineAt = await waitNodeOnline(engine, workspaceKey, name, { timeoutMs, proc })
    const connection = await readConnection(stateDir, timeoutMs)
    const url = (connection.url ?? listening.match[1]).replace(/\/$/, "")
    const key = connection.api_key ?? apiKey
    await waitApiReady(url, key, timeoutMs)
    return makeHandle(kind, { proc, url, apiKey: key, name, stateDir, listeningAt: listening.at, onlineAt })
  } catch (error) {
    await proc.stop()
    throw error
  }
}

/** Only measures startup: exec → `API listening` → node online, then stops the broker. */
export const measureStartup = async (kind, options) => {
  const broker = await startBroker(kind, options)
  const figures = { listeningMs: broker.listeningAt - broker.startedAt, onlineMs: broker.onlineAt - broker.startedAt }
  await broker.stop()
  return figures
}

const makeHandle = (kind, { proc, url, apiKey, name, stateDir, listeningAt, onlineAt }) => {
  const headers = { "x-api-key": apiKey }
  return {
    kind,
    name,
    url,
    apiKey,
    stateDir,
    pid: proc.pid,
    startedAt: proc.startedAt,
    listeningAt,
    onlineAt,
    proc,
    /** POST /api/spawn with the same command for both brokers. */
    spawnAgent: async (agentName, { command, args, channels }) => {
      const body = { name: agentName, cli: command, args, channels, transport: "pty" }
      const response = await request("POST", `${url}/api/spawn`, { body, headers, timeoutMs: 30000 })
      if (response.status < 200 || response.status >= 300 || response.body?.success === false) {
        throw new Error(`${kind} /api/spawn ${agentName} → ${response.status} ${JSON.stringify(response.body).slice(0, 300)}`)
      }
      return response.body
    },
    release: (agentName) => request("DELETE", `${url}/api/spawned/${encodeURIComponent(agentName)}`, { headers }),
    /** Broker RSS, agent (sink) RSS and other helper processes (upstream's per-agent wrappers). */
    memory: () => treeMemory(proc.pid, isSinkAgent),
    /** CPU ms used so far by the broker and its helpers (not the agents), or undefined without /proc. */
    cpuMs: () => treeCpuMs(proc.pid, isSinkAgent),
    /** Ours only: a full garbage collection in the broker (through its inspector), then its memory. */
    memoryAfterGc: async () => {
      if (kind !== "us") return treeMemory(proc.pid, isSinkAgent)
      await collectGarbage(proc)
      return treeMemory(proc.pid, isSinkAgent)
    },
    stop: () => proc.stop(5000)
  }
}
