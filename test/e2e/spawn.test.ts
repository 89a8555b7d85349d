import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createServer, request as httpRequest, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import WebSocket, { WebSocketServer } from "ws"
import { freshMachineEnv, isAlive, launchScript, type LaunchedScript, stopChild } from "../support/processes.js"
import { installStandin } from "../support/standins.js"

// Agents through a real daemon (`node dist/main.js up`, child process) on a real engine: spawn,
// terminal I/O, release, and the failures the API reports. Build first: `npm run build`.

const mainJs = fileURLToPath(new URL("../../dist/main.js", import.meta.url))

type Proc = LaunchedScript

/** Polls `check` until it yields a value; fails (with the process's stderr) if the process exits first. */
const until = <A>(proc: Proc, check: () => A | undefined | Promise<A | undefined>): Effect.Effect<A> =>
  Effect.promise(async () => {
    for (;;) {
      const value = await check()
      if (value !== undefined) return value
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
        throw new Error(`the process exited (${proc.child.exitCode ?? proc.child.signalCode}):\n${proc.stderr.join("\n")}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })

/** A child process that is SIGKILLed at the end of the test if it is still running. */
const started = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv) =>
  Effect.acquireRelease(Effect.sync(() => launchScript(mainJs, args, env)), (proc) => stopChild(proc.child, "SIGKILL"))

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-broker-spawn-"))),
  (root) => Effect.sync(() => rmSync(root, { recursive: true, force: true }))
)

interface Answer {
  readonly status: number
  readonly body: any
}

const http = (url: string, method: string, headers: Record<string, string>, body?: unknown): Promise<Answer> =>
  fetch(url, {
    method,
    headers: { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
  }).then(async (response) => {
    const text = await response.text()
    return { status: response.status, body: text === "" ? null : JSON.parse(text) }
  })

interface RunningDaemon {
  readonly proc: Proc
  readonly url: string
  readonly key: string
  readonly call: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Effect.Effect<Answer>
  /** The engine as the daemon uses it: its URL and workspace key (from /api/session). */
  readonly engine: (method: string, path: string, body?: unknown) => Effect.Effect<Answer>
}

/** `relay-broker engine` on a free port; resolves with its URL. */
const startEngine = (root: string) =>
  Effect.gen(function*() {
    const engine = yield* started(["engine", "--port", "0", "--data", join(root, "engine")], freshMachineEnv(root))
    const url = yield* until(engine, () => /engine listening on (\S+)$/.exec(engine.stdout[0] ?? "")?.[1])
    return { engine, url }
  })

interface NodeProxy {
  readonly url: string
  /** Every frame the node sent, parsed, in order. */
  readonly fromNode: Array<any>
  /** Every frame the engine sent to the node, parsed, in order. */
  readonly toNode: Array<any>
  /** Writes a frame to the node as if the engine had sent it. */
  readonly inject: (frame: unknown) => void
}

/**
 * A pass-through between the daemon and the engine: HTTP is forwarded as it is; the node WebSocket
 * is bridged frame by frame and recorded both ways, and frames can be slipped in towards the node.
 */
const startProxy = (engineUrl: string) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ readonly server: Server; readonly proxy: NodeProxy }>((resolve) => {
        const target = new URL(engineUrl)
        const fromNode: Array<any> = []
        const toNode: Array<any> = []
        const nodeSockets: Array<WebSocket> = []
        const wss = new WebSocketServer({ noServer: true })
        const server = createServer((req, res) => {
          const upstream = httpRequest(
            { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
            (answer) => {
              res.writeHead(answer.statusCode ?? 502, answer.headers)
              answer.pipe(res)
            }
          )
          upstream.on("error", () => res.writeHead(502).end())
          req.pipe(upstream)
        })
        server.on("upgrade", (req, socket, head) => {
          const headers: Record<string, string> = {}
          if (typeof req.headers.authorization === "string") headers["authorization"] = req.headers.authorization
          const upstream = new WebSocket(`${engineUrl.replace("http", "ws")}${req.url}`, { headers })
          upstream.on("unexpected-response", (_request, answer) => {
            socket.end(`HTTP/1.1 ${answer.statusCode} Refused\r\nconnection: close\r\n\r\n`)
          })
          upstream.on("error", () => socket.destroy())
          upstream.on("open", () =>
            wss.handleUpgrade(req, socket, head, (node) => {
              nodeSockets.push(node)
              node.on("message", (data) => {
                fromNode.push(JSON.parse(data.toString()))
                upstream.send(data.toString())
              })
              upstream.on("message", (data) => {
                toNode.push(JSON.parse(data.toString()))
                node.send(data.toString())
              })
              node.on("close", () => upstream.close())
              upstream.on("close", () => node.close())
            }))
        })
        server.listen(0, "127.0.0.1", () => {
          const port = (server.address() as AddressInfo).port
          const inject = (frame: unknown) => {
            for (const node of nodeSockets) if (node.readyState === WebSocket.OPEN) node.send(JSON.stringify(frame))
          }
          resolve({ server, proxy: { url: `http://127.0.0.1:${port}`, fromNode, toNode, inject } })
        })
      })
    ),
    ({ server }) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          server.closeAllConnections()
          server.close(() => resolve())
        })
      )
  ).pipe(Effect.map(({ proxy }) => proxy))

/** `relay-broker up` in `root`, once its node is connected to the engine. */
const startDaemon = (root: string, env: NodeJS.ProcessEnv) =>
  Effect.gen(function*() {
    const stateDir = join(root, "state")
    const proc = yield* started(["up", "--state-dir", stateDir, "--api-port", "0", "--name", "spawn-e2e"], env)
    const url = yield* until(proc, () => /API listening on (\S+)$/.exec(proc.stdout[0] ?? "")?.[1])
    const key: string = JSON.parse(readFileSync(join(stateDir, "connection.json"), "utf8")).api_key
    const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = { "x-api-key": key }) =>
      Effect.promise(() => http(`${url}${path}`, method, headers, body))
    yield* until(proc, async () => (await http(`${url}/health`, "GET", {})).body.nodeConnected === true ? true : undefined)
    const session = (yield* call("GET", "/api/session")).body
    const engine = (method: string, path: string, body?: unknown) =>
      Effect.promise(() =>
        http(`${session.relay_base_url}${path}`, method, { authorization: `Bearer ${session.workspace_key}` }, body)
      )
    return { proc, url, key, call, engine } satisfies RunningDaemon
  })

const childrenOf = (pid: number): ReadonlyArray<number> =>
  readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).flatMap((entry) => {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid ? [Number(entry)] : []
    } catch {
      return []
    }
  })

/** Waits until the agent's snapshot contains `text`. */
const screenShows = (daemon: RunningDaemon, name: string, text: string) =>
  until(daemon.proc, async () => {
    const snapshot = await http(`${daemon.url}/api/spawned/${name}/snapshot`, "GET", { "x-api-key": daemon.key })
    return typeof snapshot.body?.screen === "string" && snapshot.body.screen.includes(text) ? snapshot.body : undefined
  })

describe("spawn through the daemon's API", () => {
  it.scopedLive("a bash agent: listed, answers input, shows it in its snapshot; release kills it and the engine sees it go", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const daemon = yield* startDaemon(root, freshMachineEnv(root))

      const spawned = yield* daemon.call("POST", "/api/spawn", { name: "basher", cli: "bash", args: ["--norc", "--noprofile"] })
      assert.strictEqual(spawned.status, 200, JSON.stringify(spawned.body))
      assert.strictEqual(spawned.body.success, true)
      const pid: number = spawned.body.pid
      assert.isTrue(isAlive(pid))
      assert.include(childrenOf(daemon.proc.child.pid!), pid)

      const listed = yield* daemon.call("GET", "/api/spawned")
      assert.deepStrictEqual(listed.body.agents.map((agent: any) => [agent.name, agent.pid]), [["basher", pid]])
      const bound = yield* daemon.engine("GET", "/v1/agents/basher")
      assert.strictEqual(bound.status, 200)
      assert.strictEqual(bound.body.data.status, "active")

      const input = yield* daemon.call("POST", "/api/input/basher", { data: "echo $((6 * 7))-done\r" })
      assert.deepStrictEqual(input.body, { name: "basher", bytes_written: 21 })
      yield* screenShows(daemon, "basher", "42-done")

      const released = yield* daemon.call("DELETE", "/api/spawned/basher")
      assert.deepStrictEqual([released.status, released.body], [200, { success: true, name: "basher" }])
      assert.isFalse(isAlive(pid))
      assert.deepStrictEqual((yield* daemon.call("GET", "/api/spawned")).body.agents, [])
      const offline = yield* until(daemon.proc, () =>
        Effect.runPromise(daemon.engine("GET", "/v1/agents/basher")).then((answer) =>
          answer.body.data.status === "offline" ? answer.body.data : undefined
        ))
      assert.strictEqual(offline.name, "basher")
      // Released twice: the name is unknown now.
      assert.strictEqual((yield* daemon.call("DELETE", "/api/spawned/basher")).status, 404)
    }))

  it.scopedLive("a cat agent echoes what is typed; a taken name is 409; the events stream saw it all", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const daemon = yield* startDaemon(root, freshMachineEnv(root))
      const spawned = yield* daemon.call("POST", "/api/spawn", { name: "kitty", cli: "cat" })
      assert.strictEqual(spawned.status, 200, JSON.stringify(spawned.body))
      yield* daemon.call("POST", "/api/input/kitty", { data: "meow-1\r" })
      const screen = yield* screenShows(daemon, "kitty", "meow-1\nmeow-1")
      assert.strictEqual(screen.format, "plain")

      const again = yield* daemon.call("POST", "/api/spawn", { name: "kitty", cli: "cat" })
      assert.deepStrictEqual([again.status, again.body.code], [409, "name_taken"])
      const resized = yield* daemon.call("POST", "/api/resize/kitty", { rows: 30, cols: 100 })
      assert.strictEqual(resized.status, 200)

      const released = yield* daemon.call("DELETE", "/api/spawned/kitty")
      assert.strictEqual(released.status, 200)

      // The event stream replays what happened since seq 0: the spawn, the release.
      const kinds: Array<string> = []
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const socket = new WebSocket(`${daemon.url.replace("http", "ws")}/ws?sinceSeq=0`, { headers: { "x-api-key": daemon.key } })
          socket.on("message", (data) => {
            const event = JSON.parse(data.toString())
            if (event.name === "kitty") kinds.push(event.kind)
          })
          return socket
        }),
        (socket) => Effect.sync(() => socket.close())
      )
      yield* until(daemon.proc, () => (kinds.includes("agent_released") ? true : undefined))
      assert.strictEqual(kinds[0], "agent_spawned")
    }))

  it.scopedLive("failures: missing command, bad bodies, unknown names, no key; none starts a process", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const daemon = yield* startDaemon(root, freshMachineEnv(root))
      const before = childrenOf(daemon.proc.child.pid!)

      const missing = yield* daemon.call("POST", "/api/spawn", { name: "ghost", cli: "no-such-command-4242" })
      assert.deepStrictEqual([missing.status, missing.body.success, missing.body.code], [400, false, "cli_not_found"])
      assert.match(missing.body.error, /no-such-command-4242/)

      for (const body of [{}, { name: 7, cli: "bash" }, { name: "x", args: "not-an-array" }, "{oops"]) {
        const answer = yield* daemon.call("POST", "/api/spawn", body)
        assert.strictEqual(answer.status, 400, JSON.stringify(body))
      }
      const badName = yield* daemon.call("POST", "/api/spawn", { name: "bad/name", cli: "bash" })
      assert.strictEqual(badName.status, 400)
      assert.strictEqual((yield* daemon.call("POST", "/api/input/nobody", { data: "x" })).status, 404)
      assert.strictEqual((yield* daemon.call("GET", "/api/spawned/nobody/snapshot")).status, 404)
      assert.strictEqual((yield* daemon.call("DELETE", "/api/spawned/nobody")).status, 404)
      const noKey = yield* daemon.call("POST", "/api/spawn", { name: "w", cli: "bash" }, {})
      assert.strictEqual(noKey.status, 401)
      const wrongKey = yield* daemon.call("GET", "/api/spawned", undefined, { authorization: "Bearer br_nope" })
      assert.strictEqual(wrongKey.status, 401)

      assert.deepStrictEqual((yield* daemon.call("GET", "/api/spawned")).body.agents, [])
      assert.deepStrictEqual(childrenOf(daemon.proc.child.pid!), before)
    }))

  it.scopedLive("bind failure (the engine is gone): 502 bind_failed (retryable) and no process is started", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const { engine, url: engineUrl } = yield* startEngine(root)
      // A short request timeout so the bind gives up quickly once the engine stops answering.
      const daemon = yield* startDaemon(
        root,
        freshMachineEnv(root, { RELAY_BASE_URL: engineUrl, RELAY_BROKER_REQUEST_TIMEOUT_MS: "1500" })
      )
      const ok = yield* daemon.call("POST", "/api/spawn", { name: "before", cli: "cat" })
      assert.strictEqual(ok.status, 200, JSON.stringify(ok.body))

      engine.child.kill("SIGKILL")
      yield* Effect.promise(() => engine.exited)
      const before = childrenOf(daemon.proc.child.pid!)
      const failed = yield* daemon.call("POST", "/api/spawn", { name: "after", cli: "cat" })
      assert.deepStrictEqual([failed.status, failed.body.code, failed.body.retryable], [502, "bind_failed", true], JSON.stringify(failed.body))
      assert.deepStrictEqual(childrenOf(daemon.proc.child.pid!), before)
      assert.deepStrictEqual((yield* daemon.call("GET", "/api/spawned")).body.agents.map((agent: any) => agent.name), ["before"])
    }))
})

describe("spawn through the engine (action.invoke)", () => {
  it.scopedLive("spawn:claude from the engine starts the agent once; a repeated invocation id starts nothing", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      // A stand-in `claude` TUI on the daemon's PATH: the node advertises spawn:claude for it.
      const bin = installStandin(join(root, "bin"), "claude")
      const { url: engineUrl } = yield* startEngine(root)
      const proxy = yield* startProxy(engineUrl)
      const daemon = yield* startDaemon(
        root,
        freshMachineEnv(root, { RELAY_BASE_URL: proxy.url, PATH: `${bin}:${process.env["PATH"] ?? ""}`, STANDIN_DEAF_MS: "300", STANDIN_DIR: root })
      )
      const register = proxy.fromNode.find((frame) => frame.type === "node.register")
      assert.deepStrictEqual(register?.capabilities, [
        { name: "spawn:claude", kind: "capacity" },
        { name: "release", kind: "capacity" },
        { name: "relay:delivery-cursor-v1", kind: "capacity" }
      ])
      assert.strictEqual(register?.provider?.name, "broker")

      const resultsFor = (invocationId: string) =>
        proxy.fromNode.filter((frame) => frame.type === "action.result" && frame.invocation_id === invocationId)

      const invocation = yield* daemon.engine("POST", "/v1/agents/spawn", {
        name: "from-engine",
        cli: "claude",
        task: "hello from the engine"
      })
      assert.strictEqual(invocation.status, 201, JSON.stringify(invocation.body))
      const invocationId: string = invocation.body.data.invocation_id
      const [result] = yield* until(daemon.proc, () => resultsFor(invocationId).length >= 1 ? resultsFor(invocationId) : undefined)
      assert.strictEqual(result.output.spawned, true)
      assert.strictEqual(result.output.name, "from-engine")
      const pid: number = result.output.pid
      assert.isTrue(isAlive(pid))
      const invoke = proxy.toNode.find((frame) => frame.type === "action.invoke" && frame.invocation_id === invocationId)
      assert.strictEqual(invoke?.action, "spawn:claude")
      // The task arrives as the agent's first message.
      yield* screenShows(daemon, "from-engine", "hello from the engine")

      // The engine re-sends the same invocation (as after a dispatch timeout): the recorded result, nothing new.
      const childrenBefore = childrenOf(daemon.proc.child.pid!)
      const answered = resultsFor(invocationId).length
      proxy.inject(invoke)
      const repeated = yield* until(daemon.proc, () =>
        resultsFor(invocationId).length > answered ? resultsFor(invocationId) : undefined)
      for (const again of repeated) assert.deepStrictEqual(again, result)
      assert.deepStrictEqual(childrenOf(daemon.proc.child.pid!), childrenBefore)
      const listed = yield* daemon.call("GET", "/api/spawned")
      assert.deepStrictEqual(listed.body.agents.map((agent: any) => [agent.name, agent.pid]), [["from-engine", pid]])

      // Errors the engine's own validation would not let through, slipped in directly.
      proxy.inject({ v: 1, type: "action.invoke", invocation_id: "inv_nocli", action: "spawn", input: { name: "x" } })
      proxy.inject({ v: 1, type: "action.invoke", invocation_id: "inv_review", action: "review", input: {} })
      proxy.inject({ v: 1, type: "action.invoke", invocation_id: "inv_ghost", action: "release", input: { name: "ghost" } })
      const errors = yield* until(daemon.proc, () => {
        const all = ["inv_nocli", "inv_review", "inv_ghost"].map((id) => resultsFor(id)[0]?.error)
        return all.every((error) => error !== undefined) ? all : undefined
      })
      assert.match(errors[0], /^spawn_missing_cli: /)
      assert.strictEqual(errors[1], "unsupported_action: review")
      assert.strictEqual(errors[2], "unknown_agent: ghost")

      // Release through the engine. (The engine may dispatch it twice: our inventory.sync after the
      // release reschedules the still-open invocation; the repeat gets the recorded result.)
      const release = yield* daemon.engine("POST", "/v1/agents/release", { name: "from-engine" })
      assert.strictEqual(release.status, 201, JSON.stringify(release.body))
      const releaseId: string = release.body.data.invocation_id
      const [released] = yield* until(daemon.proc, () => resultsFor(releaseId).length >= 1 ? resultsFor(releaseId) : undefined)
      assert.deepStrictEqual(released.output, { released: true, name: "from-engine" })
      assert.isFalse(isAlive(pid))
      assert.deepStrictEqual((yield* daemon.call("GET", "/api/spawned")).body.agents, [])
    }))
})
