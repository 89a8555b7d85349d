import { type Duration, Effect, type Scope } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import WebSocket from "ws"
import { EmbeddedEngine, type EngineOptions } from "../../src/engine/index.js"
import { exchange } from "../../src/http/plainExchange.js"

// Test helpers: an engine on an ephemeral port in a temp dir, a fetch-based HTTP caller, and a raw
// `ws` node client that records every frame.

export const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-engine-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

export const startEngine = (options: Partial<EngineOptions> & { readonly dataDir?: string } = {}) =>
  Effect.gen(function*() {
    const dataDir = options.dataDir ?? (yield* tempDir)
    const engine = yield* EmbeddedEngine.start({ ...options, dataDir })
    return { ...engine, dataDir }
  })

export interface HttpResult {
  readonly status: number
  readonly body: any
  readonly text: string
}

export const call = (
  url: string,
  method: string,
  path: string,
  options: { readonly token?: string; readonly body?: unknown; readonly rawBody?: string; readonly headers?: Record<string, string> } = {}
): Effect.Effect<HttpResult> =>
  Effect.promise(async () => {
    const headers: Record<string, string> = { ...options.headers }
    if (options.token !== undefined) headers["authorization"] = `Bearer ${options.token}`
    let payload: string | undefined
    if (options.rawBody !== undefined) payload = options.rawBody
    else if (options.body !== undefined) payload = JSON.stringify(options.body)
    if (payload !== undefined) headers["content-type"] = "application/json"
    // node:http with a connection per request: fetch's kept-alive sockets race the server's 5 s idle
    // close on a loaded machine ("fetch failed" when a request goes out on a socket being closed).
    let answer: { readonly status: number; readonly text: string }
    try {
      answer = await exchange(new URL(`${url}${path}`), { method, headers, ...(payload === undefined ? {} : { body: payload }) })
    } catch (error) {
      throw new Error(`${method} ${path} ${JSON.stringify(headers)} ${JSON.stringify(payload)}: ${String(error)}`)
    }
    const { status, text } = answer
    let body: any = undefined
    try {
      body = text === "" ? undefined : JSON.parse(text)
    } catch {
      body = undefined
    }
    return { status, body, text }
  })

/** `call` that expects a 2xx and returns `data`. */
export const data = (url: string, method: string, path: string, options: Parameters<typeof call>[3] = {}) =>
  Effect.flatMap(call(url, method, path, options), (result) =>
    result.status >= 200 && result.status < 300
      ? Effect.succeed(result.body?.data)
      : Effect.dieMessage(`${method} ${path} -> ${result.status} ${result.text}`))

export interface Workspace {
  readonly url: string
  readonly key: string
  readonly workspaceId: string
}

export const createWorkspace = (url: string, name = "test") =>
  Effect.map(data(url, "POST", "/v1/workspaces", { body: { name } }), (d): Workspace => ({
    url,
    key: d.api_key,
    workspaceId: d.workspace_id
  }))

export const createAgent = (ws: Workspace, name: string) =>
  Effect.map(data(ws.url, "POST", "/v1/agents", { token: ws.key, body: { name } }), (d) => ({
    id: d.id as string,
    name,
    token: d.token as string
  }))

export const enrollNode = (ws: Workspace, name: string, nodeId?: string) =>
  Effect.map(
    data(ws.url, "POST", "/v1/nodes", {
      token: ws.key,
      body: { name, ...(nodeId === undefined ? {} : { node_id: nodeId }), kind: "ws", role: "broker", version: "test/1" }
    }),
    (d) => ({ id: d.id as string, name, token: d.token as string })
  )

/** A raw node socket: every received frame is kept (as text and parsed) in arrival order. */
export class NodeClient {
  readonly texts: Array<string> = []
  readonly frames: Array<any> = []
  private waiters: Array<() => void> = []
  closed = false
  closeCode: number | undefined
  closeReason: string | undefined

  constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const text = data.toString()
      this.texts.push(text)
      this.frames.push(JSON.parse(text))
      this.wake()
    })
    ws.on("close", (code, reason) => {
      this.closed = true
      this.closeCode = code
      this.closeReason = reason.toString()
      this.wake()
    })
  }

  private wake() {
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) waiter()
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame))
  }

  /** Waits until `count` frames (in total) satisfy `predicate`; returns them. */
  waitFor(predicate: (frame: any) => boolean, count = 1, timeout: Duration.DurationInput = "10 seconds"): Effect.Effect<Array<any>> {
    return Effect.async<Array<any>>((resume) => {
      const check = () => {
        const found = this.frames.filter(predicate)
        if (found.length >= count) {
          resume(Effect.succeed(found))
          return
        }
        if (this.closed) {
          resume(Effect.dieMessage(`socket closed while waiting (${found.length}/${count} frames)`))
          return
        }
        this.waiters.push(check)
      }
      check()
    }).pipe(
      Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`timed out waiting for frames: ${JSON.stringify(this.frames).slice(0, 2000)}`) }),
      Effect.orDie
    )
  }

  /** Sends a frame with `id` and waits for the reply or error carrying that id. */
  request(frame: Record<string, unknown> & { readonly id: string }, timeout?: Duration.DurationInput): Effect.Effect<any> {
    this.send(frame)
    return Effect.map(this.waitFor((f) => (f.type === "reply" || f.type === "error") && f.id === frame.id, 1, timeout), (found) => found[0])
  }

  waitClosed(): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const check = () => (this.closed ? resume(Effect.void) : this.waiters.push(check))
      check()
    }).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("socket did not close") }), Effect.orDie)
  }

  delivers(agent?: string): Array<any> {
    return this.frames.filter((f) => f.type === "deliver" && (agent === undefined || f.agent === agent))
  }
}

export type ConnectResult = { readonly _tag: "Open"; readonly client: NodeClient } | { readonly _tag: "Rejected"; readonly status: number }

/** Opens `/v1/node/ws` with the token in the header (default) or the query; closed with the scope. */
export const tryConnect = (
  url: string,
  token: string | undefined,
  options: { readonly via?: "header" | "query"; readonly path?: string } = {}
): Effect.Effect<ConnectResult, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<ConnectResult>((resume) => {
      const base = url.replace(/^http/, "ws") + (options.path ?? "/v1/node/ws")
      const viaQuery = options.via === "query" && token !== undefined
      const target = viaQuery ? `${base}?token=${encodeURIComponent(token)}` : base
      const headers: Record<string, string> = {}
      if (!viaQuery && token !== undefined) headers["authorization"] = `Bearer ${token}`
      const ws = new WebSocket(target, { headers })
      const client = new NodeClient(ws)
      ws.once("open", () => resume(Effect.succeed({ _tag: "Open", client })))
      ws.once("unexpected-response", (_request, response) => {
        resume(Effect.succeed({ _tag: "Rejected", status: response.statusCode ?? 0 }))
        ws.terminate()
      })
      ws.once("error", () => undefined)
    }),
    (result) =>
      Effect.sync(() => {
        if (result._tag === "Open") result.client.ws.terminate()
      })
  )

export const connect = (url: string, token: string, options: { readonly via?: "header" | "query" } = {}) =>
  Effect.flatMap(tryConnect(url, token, options), (result) =>
    result._tag === "Open" ? Effect.succeed(result.client) : Effect.dieMessage(`upgrade rejected with ${result.status}`))

/** What the v5 broker sends first on every connect. */
export const registerFrame = (node: { readonly id: string; readonly name: string }, extra: Record<string, unknown> = {}) => ({
  v: 1,
  type: "node.register",
  name: node.name,
  node_id: node.id,
  capabilities: [],
  max_agents: 0,
  tags: [],
  version: "relay-broker/9.1.6",
  resume_cursor: null,
  ...extra
})

export const heartbeatFrame = (extra: Record<string, unknown> = {}) => ({
  v: 1,
  type: "node.heartbeat",
  load: 0,
  active_agents: 0,
  handlers_live: false,
  ...extra
})

/** Connects and registers the node; resolves after the `node.register` reply. */
export const connectNode = (url: string, node: { readonly id: string; readonly name: string; readonly token: string }, extra: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const client = yield* connect(url, node.token)
    const reply = yield* client.request({ ...registerFrame(node, extra), id: `reg_${Math.random().toString(16).slice(2)}` })
    if (reply.type !== "reply") return yield* Effect.dieMessage(`node.register failed: ${JSON.stringify(reply)}`)
    return client
  })

let requestCounter = 0
export const nextId = (prefix = "req") => `${prefix}_${++requestCounter}`

/** `agent.register` over the node socket; returns the reply data. */
export const registerAgent = (client: NodeClient, name: string) =>
  Effect.flatMap(client.request({ v: 1, type: "agent.register", id: nextId("agent_register"), name }), (reply) =>
    reply.type === "reply" ? Effect.succeed(reply.data as { agent_id: string; name: string; token: string }) : Effect.dieMessage(`agent.register failed: ${JSON.stringify(reply)}`))

const isInvalid = (f: any) => f.type === "error" && f.code === "invalid_message"

/**
 * Sends a frame that gets no answer, then an undecodable one: its `invalid_message` error proves the
 * first was handled (frames are handled in order), with no side effect.
 */
export const sendAndSettle = (client: NodeClient, frame: unknown) =>
  Effect.gen(function*() {
    const before = client.frames.filter(isInvalid).length
    client.send(frame)
    client.send({ v: 1, type: "settle.marker" })
    yield* client.waitFor(isInvalid, before + 1)
  })

// The shared real-time polling (15 s bound), so engine tests tolerate a busy machine like the rest.
export { eventually, realSleep } from "../support/polling.js"
