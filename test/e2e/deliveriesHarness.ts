// Real processes for the delivery end-to-end tests: the engine (`relay-broker engine`), the broker
// (`relay-broker up`) pointed at it, optionally through a proxy that can slip extra frames into
// the node WebSocket, and helpers for the control API and the engine's HTTP API.
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs"
import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { join } from "node:path"
import { Duration, Effect, Schedule, type Scope } from "effect"
import { WebSocket, WebSocketServer } from "ws"
import { cleanEnv, ensureBuilt, root, tempDir } from "../cli/harness.js"
import { stopChild } from "../support/processes.js"

export { ensureBuilt, root, stopChild, tempDir }

const main = join(root, "dist", "main.js")

/** What each recorder session of `name` in `dir` had typed into it, one text per process. */
export const recordedSessions = (dir: string, name: string) =>
  readdirSync(dir)
    .filter((file) => file.startsWith(`${name}-`) && file.endsWith(".raw"))
    .map((file) => readFileSync(join(dir, file), "utf8"))

/** Kills recorder sessions that outlived their broker (by the pid in their file name). */
export const reapRecorders = (dir: string) =>
  Effect.sync(() => {
    for (const file of readdirSync(dir)) {
      const pid = Number(/-(\d+)\.raw$/.exec(file)?.[1])
      if (Number.isInteger(pid) && pid > 0) {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // already gone
        }
      }
    }
  })

export const recorderAgent = join(root, "test", "e2e", "recorder-agent.mjs")
export const echoAgent = join(root, "scripts", "echo-agent.mjs")

/** Polls `check` every 100 ms until it returns a value (not undefined), for at most `seconds`. */
export const waitFor = <A>(label: string, check: () => Promise<A | undefined> | A | undefined, seconds = 30) =>
  Effect.tryPromise(async () => {
    const value = await check()
    if (value === undefined) throw new Error("not yet")
    return value
  }).pipe(
    Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.intersect(Schedule.recurs(seconds * 10)))),
    Effect.mapError(() => new Error(`timed out waiting for ${label}`))
  )

interface Child {
  readonly child: ChildProcess
  readonly output: () => string
}

const startChild = (args: ReadonlyArray<string>, options: { readonly cwd: string; readonly env: Record<string, string> }) =>
  Effect.acquireRelease(
    Effect.sync((): Child => {
      const child = spawn("node", [main, ...args], { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] })
      let output = ""
      child.stdout?.on("data", (chunk) => (output += String(chunk)))
      child.stderr?.on("data", (chunk) => (output += String(chunk)))
      return { child, output: () => output }
    }),
    ({ child }) => stopChild(child)
  )

// ---------------------------------------------------------------------------------------------
// Engine

export interface Engine {
  readonly url: string
  readonly workspaceKey: string
}

/** `relay-broker engine` on an OS-assigned port, with a fresh workspace. */
export const startEngine = (home: string): Effect.Effect<Engine, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const dataDir = join(home, "engine")
    mkdirSync(dataDir, { recursive: true })
    const engine = yield* startChild(["engine", "--port", "0", "--data", dataDir], { cwd: home, env: cleanEnv() })
    const url = yield* waitFor("the engine's listening line", () => {
      if (engine.child.exitCode !== null) throw new Error(`the engine exited:\n${engine.output()}`)
      return /engine listening on (http:\/\/\S+)/.exec(engine.output())?.[1]
    })
    const created = yield* engineCall(url, "POST", "/v1/workspaces", { name: "deliveries-e2e" })
    const workspaceKey = (created.data as { api_key: string }).api_key
    return { url, workspaceKey }
  })

export interface EngineResponse {
  readonly status: number
  readonly data: unknown
  readonly body: unknown
}

export const engineCall = (url: string, method: string, path: string, body?: unknown, token?: string) =>
  Effect.tryPromise({
    try: async (): Promise<EngineResponse> => {
      const response = await fetch(`${url}${path}`, {
        method,
        headers: {
          "content-type": "application/json",
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
      const json = await response.json().catch(() => null) as { data?: unknown } | null
      return { status: response.status, data: json?.data, body: json }
    },
    catch: (cause) => new Error(`engine ${method} ${path}: ${String(cause)}`)
  })

/** An HTTP identity in the workspace (a sender the test controls), with its token. */
export const createEngineAgent = (engine: Engine, name: string) =>
  Effect.map(
    engineCall(engine.url, "POST", "/v1/agents", { name, type: "agent" }, engine.workspaceKey),
    (response) => (response.data as { token: string }).token
  )

// ---------------------------------------------------------------------------------------------
// Broker

export interface Broker {
  readonly child: ChildProcess
  readonly pid: number
  readonly url: string
  readonly apiKey: string
  readonly stateDir: string
  readonly output: () => string
}

/**
 * `relay-broker up` against `baseUrl` with a fixed home (so a restart finds its node identity,
 * state dir and cursors). Ready once connection.json names this very process.
 */
export const startBroker = (options: {
  readonly home: string
  readonly baseUrl: string
  readonly workspaceKey: string
  /** More environment for the broker (e.g. RELAY_READY_TIMEOUT_MS). */
  readonly env?: Record<string, string>
}): Effect.Effect<Broker, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const stateDir = join(options.home, "state")
    const broker = yield* startChild(["up", "--state-dir", stateDir, "--api-port", "0", "--name", "e2e-node"], {
      cwd: options.home,
      env: cleanEnv({
        RELAY_BASE_URL: options.baseUrl,
        RELAY_WORKSPACE_KEY: options.workspaceKey,
        XDG_DATA_HOME: join(options.home, "data"),
        HOME: options.home,
        // Keep the gap grace short so a test that makes gaps does not wait long.
        RELAY_DELIVERY_GAP_GRACE_MS: "500",
        ...options.env
      })
    })
    const connectionFile = join(stateDir, "connection.json")
    const connection = yield* waitFor("the broker's connection.json", () => {
      if (broker.child.exitCode !== null || broker.child.signalCode !== null) {
        throw new Error(`the broker exited:\n${broker.output()}`)
      }
      if (!existsSync(connectionFile)) return undefined
      const parsed = JSON.parse(readFileSync(connectionFile, "utf8")) as { pid: number; url: string; api_key: string }
      return parsed.pid === broker.child.pid ? parsed : undefined
    }, 60).pipe(Effect.mapError((error) => new Error(`${error.message}\n${broker.output()}`)))
    const ready: Broker = {
      child: broker.child,
      pid: connection.pid,
      url: connection.url,
      apiKey: connection.api_key,
      stateDir,
      output: broker.output
    }
    // Agents bind over the node session: wait until it is up.
    yield* waitFor("the broker's node session", async () => {
      const report = await Effect.runPromise(api(ready, "GET", "/api/node-delivery"))
      return (report.body["node"] as { connected?: boolean } | undefined)?.connected === true ? true : undefined
    }, 60).pipe(Effect.mapError((error) => new Error(`${error.message}\n${broker.output()}`)))
    return ready
  })

export interface ApiResponse {
  readonly status: number
  readonly body: Record<string, unknown>
}

export const api = (broker: Broker, method: string, path: string, body?: unknown) =>
  Effect.tryPromise({
    try: async (): Promise<ApiResponse> => {
      const response = await fetch(`${broker.url}${path}`, {
        method,
        headers: { "content-type": "application/json", "x-api-key": broker.apiKey },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
      const json = await response.json().catch(() => ({})) as Record<string, unknown>
      return { status: response.status, body: json }
    },
    catch: (cause) => new Error(`broker ${method} ${path}: ${String(cause)}`)
  })

export const spawnAgent = (broker: Broker, name: string, script: string, cwd: string) =>
  Effect.gen(function*() {
    const response = yield* api(broker, "POST", "/api/spawn", { name, cli: "node", args: [script], cwd })
    if (response.status !== 200) {
      return yield* Effect.fail(new Error(`spawn ${name}: ${response.status} ${JSON.stringify(response.body)}`))
    }
    return response.body as { name: string; agent_id: string; pid: number }
  })

/** The agent's screen as plain text. */
export const screen = (broker: Broker, name: string) =>
  Effect.map(api(broker, "GET", `/api/spawned/${name}/snapshot?format=plain`), (response) =>
    typeof response.body["screen"] === "string" ? response.body["screen"] as string : "")

export const waitForScreen = (broker: Broker, name: string, needle: string | RegExp, seconds = 30) =>
  waitFor(`${name}'s screen to show ${String(needle)}`, async () => {
    const text = await Effect.runPromise(screen(broker, name))
    return (typeof needle === "string" ? text.includes(needle) : needle.test(text)) ? text : undefined
  }, seconds)

export const deadLetters = (broker: Broker) =>
  Effect.map(api(broker, "GET", "/api/dead-letters"), (response) =>
    response.body["dead_letters"] as ReadonlyArray<Record<string, unknown>>)

// ---------------------------------------------------------------------------------------------
// A proxy between the broker and the engine: HTTP and the node WebSocket are passed through; the
// test can send extra frames to the broker and sees every frame the broker sent.

export interface NodeProxy {
  readonly url: string
  /** Sends a raw text frame to the broker on the current node connection. */
  readonly inject: (text: string) => Effect.Effect<void, Error>
  /** Every frame the broker sent to the engine, parsed. */
  readonly fromNode: () => ReadonlyArray<Record<string, unknown>>
  /** Every frame the engine sent to the broker, as text (to send again with `inject`). */
  readonly toNode: () => ReadonlyArray<string>
}

export const startProxy = (engineUrl: string): Effect.Effect<NodeProxy, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const fromNode: Array<Record<string, unknown>> = []
    const toNode: Array<string> = []
    let toBroker: WebSocket | undefined
    const sockets = new Set<Socket>()
    const wss = new WebSocketServer({ noServer: true })
    const server = createServer(async (req, res) => {
      try {
        const chunks: Array<Buffer> = []
        for await (const chunk of req) chunks.push(chunk as Buffer)
        const headers = Object.fromEntries(
          Object.entries(req.headers).filter(([key, value]) =>
            typeof value === "string" && !["host", "connection", "content-length"].includes(key)
          )
        ) as Record<string, string>
        const method = req.method ?? "GET"
        const response = await fetch(`${engineUrl}${req.url ?? "/"}`, {
          method,
          headers,
          ...(method === "GET" || method === "HEAD" ? {} : { body: Buffer.concat(chunks) })
        })
        const body = Buffer.from(await response.arrayBuffer())
        res.writeHead(response.status, { "content-type": response.headers.get("content-type") ?? "application/json" })
        res.end(body)
      } catch (error) {
        res.writeHead(502)
        res.end(String(error))
      }
    })
    server.on("connection", (socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })
    server.on("upgrade", (req: IncomingMessage, socket, head) => {
      const upstream = new WebSocket(`${engineUrl.replace(/^http/, "ws")}${req.url ?? ""}`, {
        headers: typeof req.headers.authorization === "string" ? { authorization: req.headers.authorization } : {}
      })
      upstream.on("unexpected-response", (_request, response) => {
        socket.end(`HTTP/1.1 ${response.statusCode} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
      })
      upstream.on("error", () => socket.destroy())
      upstream.on("open", () => {
        wss.handleUpgrade(req, socket, head, (client) => {
          toBroker = client
          client.on("message", (data) => {
            const text = data.toString()
            try {
              fromNode.push(JSON.parse(text) as Record<string, unknown>)
            } catch {
              fromNode.push({ type: "<unparsable>", text })
            }
            if (upstream.readyState === WebSocket.OPEN) upstream.send(text)
          })
          upstream.on("message", (data) => {
            toNode.push(data.toString())
            if (client.readyState === WebSocket.OPEN) client.send(data.toString())
          })
          client.on("close", () => upstream.close())
          upstream.on("close", () => client.close())
        })
      })
    })
    yield* Effect.acquireRelease(
      Effect.async<void, Error>((resume) => {
        server.once("error", (error) => resume(Effect.fail(error)))
        server.listen(0, "127.0.0.1", () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const client of wss.clients) client.terminate()
          for (const socket of sockets) socket.destroy()
          server.close(() => resume(Effect.void))
        })
    )
    const port = (server.address() as AddressInfo).port
    return {
      url: `http://127.0.0.1:${port}`,
      inject: (text) =>
        toBroker === undefined || toBroker.readyState !== WebSocket.OPEN
          ? Effect.fail(new Error("no node connection to inject into"))
          : Effect.sync(() => toBroker?.send(text)),
      fromNode: () => [...fromNode],
      toNode: () => [...toNode]
    }
  })
