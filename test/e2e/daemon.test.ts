import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { freshMachineEnv, isAlive, launchScript, type LaunchedScript, stopChild } from "../support/processes.js"

// `node dist/main.js up` as a real child process, on the embedded engine, in a temp state dir.
// Build first: `npm run build` (npm test does it through scripts/ensure-ready.mjs).

const mainJs = fileURLToPath(new URL("../../dist/main.js", import.meta.url))
const listening = /^\[agent-relay\] API listening on (http:\/\/127\.0\.0\.1:(\d+))$/

type Daemon = LaunchedScript

const launch = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv): Daemon => launchScript(mainJs, ["up", ...args], env)

/** Resolves once `check` holds (re-checked on every stdout/stderr line and a short tick), or the process exits. */
const until = <A>(daemon: Daemon, check: () => A | undefined): Promise<A> =>
  new Promise((resolve, reject) => {
    let done = false
    const tick = () => {
      if (done) return
      const value = check()
      if (value !== undefined) {
        done = true
        return resolve(value)
      }
      if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) {
        done = true
        return reject(new Error(`the daemon exited (${daemon.child.exitCode ?? daemon.child.signalCode}):\n${daemon.stderr.join("\n")}`))
      }
      setTimeout(tick, 25)
    }
    tick()
  })

/** Starts a daemon and waits for its listening line; it is SIGKILLed at the end of the test if still alive. */
const startDaemon = (stateDir: string, env: NodeJS.ProcessEnv, args: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const daemon = launch(["--state-dir", stateDir, "--api-port", "0", "--name", "e2e-node", ...args], env)
      const match = await until(daemon, () => {
        const line = daemon.stdout[0]
        return line === undefined ? undefined : listening.exec(line) ?? { line }
      })
      return { ...daemon, match }
    }),
    (daemon) => stopChild(daemon.child, "SIGKILL")
  )

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-broker-daemon-"))),
  (root) => Effect.sync(() => rmSync(root, { recursive: true, force: true }))
)

const readJson = (path: string): any => JSON.parse(readFileSync(path, "utf8"))

/** Every descendant of `pid`, from /proc. */
const descendants = (pid: number): ReadonlyArray<number> => {
  const parentOf = new Map<number, number>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      // The command may contain spaces and parentheses: the fields after the last ")" are fixed.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      parentOf.set(Number(entry), Number(fields[1]))
    } catch {
      // The process ended while we looked.
    }
  }
  const found: Array<number> = []
  const queue = [pid]
  while (queue.length > 0) {
    const parent = queue.shift()!
    for (const [child, ppid] of parentOf) {
      if (ppid === parent) {
        found.push(child)
        queue.push(child)
      }
    }
  }
  return found
}

/** Processes other than this one whose environment holds `entry` (e.g. a daemon's unique HOME). */
const processesWithEnv = (entry: string): ReadonlyArray<number> =>
  readdirSync("/proc").flatMap((pid) => {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) return []
    try {
      return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(entry) ? [Number(pid)] : []
    } catch {
      return [] // ended while we looked, or not ours to read
    }
  })

const api = (url: string, key: string | undefined, method: string, path: string, body?: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { "content-type": "application/json", ...(key === undefined ? {} : { "x-api-key": key }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await response.text()
    return { status: response.status, body: text === "" ? null : JSON.parse(text) }
  })

describe("relay-broker up (daemon process)", () => {
  it.scopedLive("prints the listening line, writes connection.json (0600), and SIGTERM cleans up everything", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const stateDir = join(root, "state")
      const daemon = yield* startDaemon(stateDir, freshMachineEnv(root))
      assert.isTrue(Array.isArray(daemon.match), `unexpected first stdout line: ${JSON.stringify(daemon.match)}`)
      const [, url, port] = daemon.match as RegExpExecArray

      const connectionPath = join(stateDir, "connection.json")
      const connection = readJson(connectionPath)
      assert.strictEqual(statSync(connectionPath).mode & 0o777, 0o600)
      assert.deepStrictEqual(Object.keys(connection).sort(), ["api_key", "pid", "port", "url"])
      assert.strictEqual(connection.url, url)
      assert.strictEqual(connection.port, Number(port))
      assert.strictEqual(connection.pid, daemon.child.pid)
      assert.match(connection.api_key, /^br_[0-9a-f]{32}$/)
      // The local workspace's key is kept for the next start, private too.
      assert.strictEqual(statSync(join(stateDir, "workspace.json")).mode & 0o777, 0o600)
      // stdout is only the listening line; the how-to goes to stderr, without the key.
      assert.deepStrictEqual(daemon.stdout, [daemon.stdout[0]])
      const stderr = yield* Effect.promise(() => until(daemon, () => daemon.stderr.find((line) => line.includes("/api/spawn")) ? daemon.stderr : undefined))
      assert.isFalse(stderr.join("\n").includes(connection.api_key))

      const health = yield* api(url!, undefined, "GET", "/health")
      assert.strictEqual(health.status, 200)
      assert.strictEqual((yield* api(url!, undefined, "GET", "/api/spawned")).status, 401)

      // The node comes up on the embedded engine.
      yield* Effect.promise(() =>
        until(daemon, () => daemon.stderr.some((line) => line.includes("connected to ws://")) ? true : undefined)
      )
      const spawned = yield* api(url!, connection.api_key, "POST", "/api/spawn", { name: "sleeper", cli: "cat" })
      assert.strictEqual(spawned.status, 200, JSON.stringify(spawned.body))
      const agentPid: number = spawned.body.pid
      assert.isTrue(isAlive(agentPid))
      const children = descendants(daemon.child.pid!)
      assert.include(children, agentPid)
      const marker = `AGENT_RELAY_DATA_DIR=${join(root, "data")}`
      assert.includeMembers([...processesWithEnv(marker)], [daemon.child.pid!, agentPid])

      daemon.child.kill("SIGTERM")
      const code = yield* Effect.promise(() => daemon.exited)
      assert.strictEqual(code, 0, daemon.stderr.join("\n"))
      assert.isFalse(existsSync(connectionPath))
      assert.deepStrictEqual(children.filter(isAlive), [])
      assert.deepStrictEqual(processesWithEnv(marker), [])
    }))

  it.scopedLive("a restart reuses the local workspace and honours RELAY_BROKER_API_KEY; SIGINT and /api/shutdown exit 0", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const stateDir = join(root, "state")
      const env = freshMachineEnv(root, { RELAY_BROKER_API_KEY: "br_00000000000000000000000000000001" })
      const first = yield* startDaemon(stateDir, env)
      const workspace = readFileSync(join(stateDir, "workspace.json"), "utf8")
      assert.strictEqual(readJson(join(stateDir, "connection.json")).api_key, "br_00000000000000000000000000000001")
      first.child.kill("SIGINT")
      assert.strictEqual(yield* Effect.promise(() => first.exited), 0)

      const second = yield* startDaemon(stateDir, env)
      assert.strictEqual(readFileSync(join(stateDir, "workspace.json"), "utf8"), workspace)
      const url = (second.match as RegExpExecArray)[1]!
      const session = yield* api(url, "br_00000000000000000000000000000001", "GET", "/api/session")
      assert.strictEqual(session.status, 200)
      assert.strictEqual(session.body.workspace_key, JSON.parse(workspace).api_key)
      // POST /api/shutdown: answered, then the same clean exit as on a signal.
      const shutdown = yield* api(url, "br_00000000000000000000000000000001", "POST", "/api/shutdown")
      assert.deepStrictEqual(shutdown.body, { status: "shutting_down" })
      assert.strictEqual(yield* Effect.promise(() => second.exited), 0)
      assert.isFalse(existsSync(join(stateDir, "connection.json")))
    }))

  it.scopedLive("an API port that is taken: exit 1 with a clear error, no listening line, no connection.json", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const stateDir = join(root, "state")
      const blocker = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<Server>((resolve) => {
            const server = createServer()
            server.listen(0, "127.0.0.1", () => resolve(server))
          })
        ),
        (server) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
      )
      const port = (blocker.address() as { port: number }).port
      const daemon = launch(["--state-dir", stateDir, "--api-port", String(port)], freshMachineEnv(root))
      const code = yield* Effect.promise(() => daemon.exited)
      assert.strictEqual(code, 1)
      assert.deepStrictEqual(daemon.stdout, [])
      assert.match(daemon.stderr.join("\n"), new RegExp(`127\\.0\\.0\\.1:${port}.*already in use`))
      assert.isFalse(existsSync(join(stateDir, "connection.json")))
      // Nothing it started outlives it (an orphan is re-parented, so look for its environment).
      assert.deepStrictEqual(processesWithEnv(`AGENT_RELAY_DATA_DIR=${join(root, "data")}`), [])
    }))

  it.scopedLive("bad flags exit 2 with the usage", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const daemon = launch(["--api-port", "http"], freshMachineEnv(root))
      assert.strictEqual(yield* Effect.promise(() => daemon.exited), 2)
      assert.match(daemon.stderr.join("\n"), /--api-port/)
      const unknown = launch(["--frobnicate"], freshMachineEnv(root))
      assert.strictEqual(yield* Effect.promise(() => unknown.exited), 2)
      assert.match(unknown.stderr.join("\n"), /unknown argument '--frobnicate'/)
    }))
})
