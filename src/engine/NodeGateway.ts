import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type { IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import { type WebSocket, WebSocketServer } from "ws"
import type { Json } from "../wire/Json.js"
import { decodeNodeFrame, type NodeToServer } from "../wire/index.js"
import { Actions } from "./Actions.js"
import { Dispatcher } from "./Dispatcher.js"
import { EngineConfig } from "./EngineConfig.js"
import type { EngineError } from "./EngineError.js"
import { EngineStore } from "./EngineStore.js"
import { sha256Hex, snowflake } from "./ids.js"
import * as Control from "./nodeControl.js"
import * as Registration from "./nodeRegistration.js"
import { type NodeSession, NodeSockets } from "./NodeSockets.js"
import type { NodeRow } from "./rows.js"

/**
 * The `/v1/node/ws` endpoint: authenticates the upgrade with the node token (a plain HTTP 401 when
 * it is missing or unknown), then runs one session per socket whose frames are handled strictly in
 * order, each under the engine lock (spec §1.3, §3).
 */
export class NodeGateway extends Context.Tag("relay-broker/engine/NodeGateway")<NodeGateway, {
  /** The HTTP server's `upgrade` listener. */
  readonly handleUpgrade: (request: IncomingMessage, socket: Duplex, head: Buffer) => void
  /** Drops every node socket (engine shutdown). */
  readonly closeAll: Effect.Effect<void>
}>() {}

const maxFrameBytes = 4 * 1024 * 1024

/** The terminal control socket of provider-era brokers (provider-protocol.md §3). */
export const terminalPath = "/v1/node/terminal/ws"

/** `?token=` (non-empty) wins over `Authorization: Bearer` (case-insensitive here, spec §1.3). */
export const upgradeToken = (request: IncomingMessage, url: URL): string | undefined => {
  const query = url.searchParams.get("token")
  if (query !== null && query !== "") return query
  const header = request.headers["authorization"]
  const match = typeof header === "string" ? /^bearer\s+(.+)$/i.exec(header.trim()) : null
  return match?.[1]?.trim() || undefined
}

const rejectUpgrade = (socket: Duplex, status: string) => {
  if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`)
  socket.destroy()
}

/** What a handled frame asks the session to do: reply, then maybe more (replay). */
interface Outcome<R> {
  readonly reply?: Json | undefined
  readonly after?: Effect.Effect<unknown, unknown, R> | undefined
}

const Closed = Symbol("Closed")

export const make = Effect.gen(function*() {
  const store = yield* EngineStore
  const sockets = yield* NodeSockets
  const dispatcher = yield* Dispatcher
  const actions = yield* Actions
  const config = yield* EngineConfig
  const context = yield* Effect.context<EngineStore | NodeSockets | Dispatcher | Actions | EngineConfig>()
  const runFork = yield* FiberSet.makeRuntime<never>()
  let nextSessionId = 1

  const wss = yield* Effect.acquireRelease(
    Effect.sync(() => new WebSocketServer({ noServer: true, maxPayload: maxFrameBytes })),
    (server) =>
      Effect.async<void>((resume) => {
        for (const client of server.clients) client.terminate()
        server.close(() => resume(Effect.void))
      })
  )

  const sendError = (session: NodeSession, id: string, code: string, message: string) =>
    sockets.sendTo(session, { v: 1, type: "error", id, ok: false, code, message })

  const dispatch = (session: NodeSession, frame: NodeToServer): Effect.Effect<Outcome<never>, unknown> => {
    const run = <A, E>(effect: Effect.Effect<A, E, EngineStore | NodeSockets | Dispatcher | Actions | EngineConfig>) =>
      Effect.provide(effect, context)
    // A socket that speaks without registering a provider first is the node's `default` one.
    const asDefault = <A, E>(effect: Effect.Effect<A, E, EngineStore | NodeSockets | Dispatcher | Actions | EngineConfig>) =>
      run(Effect.zipRight(Registration.claimDefault(session), effect))
    const hosting = <A, E>(effect: Effect.Effect<A, E, EngineStore | NodeSockets | Dispatcher | Actions | EngineConfig>) =>
      asDefault(Effect.tap(effect, () => sockets.setHost(session)))
    switch (frame.type) {
      case "node.register":
        return run(Effect.map(Registration.registerNode(session, frame), (node): Outcome<never> => ({
          reply: node,
          // A cursor-capable broker gets an agent's backlog only once it knows where that agent's
          // acks stand: after its `agent.register` reply or its `inventory.sync` (6.x: replay scoped by
          // readiness, engine-spec.md §7). Replayed here, a frame for an agent it has not
          // registered yet would set the agent's cursor before the engine's `delivery_ack_seq` could.
          after: run(Effect.zipRight(
            actions.drain(session.nodeId),
            session.cursorCapable ? Effect.void : dispatcher.replayNode(session.nodeId)
          ))
        })))
      case "node.heartbeat":
        return run(Effect.as(Effect.zipRight(Registration.heartbeat(session, frame), actions.drain(session.nodeId)), {}))
      case "node.deregister":
        return frame.provider === undefined
          ? asDefault(Effect.as(Control.nodeOffline(session.nodeId), {}))
          : run(Effect.flatMap(Registration.deregisterProvider(session, frame), (empty) =>
            Effect.as(empty ? Control.nodeOffline(session.nodeId) : Effect.void, {})))
      case "node.spawn":
        return asDefault(Effect.map(Registration.spawnOnOwnNode(session, frame), (reply): Outcome<never> => ({ reply })))
      case "agent.register":
        return hosting(Effect.map(Control.registerAgent(session, frame), ({ agentId, data }): Outcome<never> => ({
          reply: data,
          after: run(dispatcher.replayAgent(agentId))
        })))
      case "agent.deregister":
        return asDefault(Effect.as(Control.deregisterAgent(session, frame), {}))
      case "delivery.ack":
        return asDefault(Effect.as(dispatcher.ackMany(session.nodeId, [[frame.agent, frame.up_to_seq]]), {}))
      case "inventory.sync":
        return hosting(Effect.map(Control.syncInventory(session, frame), ({ reply, rebound }): Outcome<never> => ({
          reply,
          after: session.cursorCapable ? run(Effect.forEach(rebound, dispatcher.replayAgent, { discard: true })) : undefined
        })))
      case "action.result":
        return asDefault(Effect.as(actions.onResult(session.nodeId, frame), {}))
    }
  }

  const handleFrame = (session: NodeSession, frame: NodeToServer) =>
    Effect.gen(function*() {
      const id = frame.id ?? snowflake()
      const outcome = yield* Effect.exit(dispatch(session, frame))
      if (Exit.isFailure(outcome)) {
        const failure = Cause.failureOption(outcome.cause)
        const error = Option.isSome(failure) && isEngineError(failure.value) ? failure.value : undefined
        if (error === undefined) yield* Effect.logWarning("node frame failed", { type: frame.type, cause: Cause.pretty(outcome.cause) })
        yield* sendError(session, id, error?.code ?? "node_control_failed", error?.message ?? "Node control operation failed")
        return
      }
      if (outcome.value.reply !== undefined) {
        yield* sockets.sendTo(session, { v: 1, type: "reply", id, ok: true, data: outcome.value.reply })
      }
      if (outcome.value.after !== undefined) yield* outcome.value.after
    }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("node frame handling failed", cause)))

  /**
   * A session's pending `delivery.ack`s, merged per agent to the highest `up_to_seq`: acks are
   * cumulative and answer nothing, so one flush (one transaction of a few statements, acks.ts) has
   * the same outcome as one transaction per frame. A flush happens before any other frame (order is
   * kept), and once per tick: when the session's inbox has nothing more to hand over.
   */
  const makeAckBuffer = (session: NodeSession) => {
    const acks = new Map<string, number>()
    const add = (agent: string, upToSeq: number) => acks.set(agent, Math.max(acks.get(agent) ?? 0, upToSeq))
    const flush = Effect.suspend(() => {
      if (acks.size === 0) return Effect.void
      const merged = [...acks]
      acks.clear()
      return dispatcher.ackMany(session.nodeId, merged).pipe(
        Effect.catchAllCause((cause) => Effect.logWarning("delivery.ack failed", cause))
      )
    })
    return { add, flush, isEmpty: () => acks.size === 0 }
  }
  type AckBuffer = ReturnType<typeof makeAckBuffer>

  /** Handles frames that arrived together, in order, under one lock; their acks go to `acks`. */
  const handleBatch = (session: NodeSession, texts: ReadonlyArray<string>, acks: AckBuffer) =>
    Effect.gen(function*() {
      for (const text of texts) {
        const decoded = yield* Effect.either(decodeNodeFrame(text))
        if (Either.isLeft(decoded)) {
          yield* acks.flush
          yield* sendError(session, requestIdOf(text) ?? snowflake(), "invalid_message", decoded.left.message).pipe(Effect.ignore)
          continue
        }
        const frame = decoded.right
        const legacy = config.nodeProtocol === "v5" ? v5Refusal(frame) : undefined
        if (legacy !== undefined) {
          yield* acks.flush
          yield* sendError(session, requestIdOf(text) ?? snowflake(), "invalid_message", legacy).pipe(Effect.ignore)
          continue
        }
        if (frame.type === "delivery.ack") {
          acks.add(frame.agent, frame.up_to_seq)
          continue
        }
        yield* acks.flush
        yield* handleFrame(session, frame)
      }
    }).pipe(store.exclusive)

  const maxBatch = 256
  // Acks wait for the end of a tick, but never behind more than this many frames.
  const maxFramesBeforeAckFlush = 4 * maxBatch

  const runSession = (session: NodeSession, inbox: Queue.Queue<string | typeof Closed>) =>
    Effect.gen(function*() {
      // A socket claims its provider when it registers (or speaks); a node with no other socket gets
      // what was queued for it at once (spec §3.2).
      yield* store.exclusive(Effect.zipRight(sockets.attach(session), actions.drain(session.nodeId)))
      const acks = makeAckBuffer(session)
      let framesSinceFlush = 0
      let open = true
      while (open) {
        const first = yield* Queue.take(inbox)
        const batch: Array<string | typeof Closed> = [first]
        if (first !== Closed) batch.push(...(yield* Queue.takeUpTo(inbox, maxBatch - 1)))
        const closedAt = batch.indexOf(Closed)
        if (closedAt >= 0) open = false
        const texts = (closedAt >= 0 ? batch.slice(0, closedAt) : batch) as Array<string>
        if (texts.length > 0) yield* handleBatch(session, texts, acks)
        framesSinceFlush += texts.length
        if (!acks.isEmpty() && (!open || framesSinceFlush >= maxFramesBeforeAckFlush || (yield* Queue.size(inbox)) === 0)) {
          yield* store.exclusive(acks.flush)
          framesSinceFlush = 0
        }
      }
      yield* store.exclusive(Effect.gen(function*() {
        const gone = yield* sockets.detach(session)
        if (gone.provider === undefined) return
        yield* Effect.provide(
          gone.nodeEmpty ? Control.nodeOffline(session.nodeId) : Registration.providerLost(session.nodeId, gone.provider, gone.wasHost),
          context
        )
      }))
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("node session failed", cause)),
      Effect.ensuring(Effect.sync(() => session.ws.terminate())),
      Effect.annotateLogs({ module: "NodeGateway", node: session.nodeId })
    )

  const accept = (ws: WebSocket, node: NodeRow) => {
    // Listeners go on synchronously, so no frame sent right after the handshake is missed.
    const inbox = Effect.runSync(Queue.unbounded<string | typeof Closed>())
    const session: NodeSession = {
      id: nextSessionId++,
      nodeId: node.id,
      workspaceId: node.workspace_id,
      ws,
      provider: undefined,
      instanceId: undefined,
      cursorCapable: false
    }
    ws.on("message", (data) => {
      const text = Array.isArray(data) ? Buffer.concat(data).toString("utf8") : Buffer.from(data as ArrayBuffer).toString("utf8")
      Queue.unsafeOffer(inbox, text)
    })
    ws.on("close", () => Queue.unsafeOffer(inbox, Closed))
    ws.on("error", () => undefined)
    runFork(runSession(session, inbox))
  }

  /**
   * `/v1/node/terminal/ws` (broker 12.4.1 opens it at start and redials a refusal every ~1.5 s):
   * accepted and left idle. The engine never sends `terminal.open`, so no terminal is driven through
   * it; whatever the node sends is read and dropped. The socket closes with the engine.
   */
  const acceptTerminal = (ws: WebSocket, node: NodeRow) => {
    ws.on("message", () => undefined)
    ws.on("error", () => undefined)
    runFork(Effect.logDebug("terminal control socket accepted (idle: the engine opens no terminals)").pipe(
      Effect.annotateLogs({ module: "NodeGateway", node: node.id })
    ))
  }

  const lookupNode = (token: string) =>
    store.sql<NodeRow>`SELECT * FROM nodes WHERE token_hash = ${sha256Hex(token)}`.pipe(
      Effect.map((rows) => rows[0]),
      Effect.orElseSucceed(() => undefined)
    )

  const handleUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => undefined)
    let url: URL
    try {
      url = new URL(request.url ?? "/", "http://engine.local")
    } catch {
      return rejectUpgrade(socket, "400 Bad Request")
    }
    const terminal = url.pathname === terminalPath
    if (url.pathname !== "/v1/node/ws" && !terminal) return rejectUpgrade(socket, "426 Upgrade Required")
    const token = upgradeToken(request, url)
    if (token === undefined || !token.startsWith("nt_live_")) return rejectUpgrade(socket, "401 Unauthorized")
    runFork(Effect.flatMap(lookupNode(token), (node) =>
      Effect.sync(() => {
        if (node === undefined) return rejectUpgrade(socket, "401 Unauthorized")
        wss.handleUpgrade(request, socket, head, (ws) => (terminal ? acceptTerminal(ws, node) : accept(ws, node)))
      })))
  }

  const closeAll = Effect.sync(() => {
    for (const client of wss.clients) client.terminate()
  })

  return NodeGateway.of({ handleUpgrade, closeAll })
})

/** What a strict v5 engine says about a provider-era frame (relaycast 5.0.7 `.strict()` schemas), if anything. */
export const v5Refusal = (frame: NodeToServer): string | undefined => {
  if (frame.type === "node.spawn") return "unknown frame type \"node.spawn\""
  const fields = frame as { readonly provider?: unknown; readonly machine_id?: unknown; readonly capabilities?: ReadonlyArray<{ readonly global?: unknown; readonly queue?: unknown }> }
  if (fields.provider !== undefined) return "\"provider\" is unexpected"
  if (fields.machine_id !== undefined) return "\"machine_id\" is unexpected"
  if (fields.capabilities?.some((c) => c.global !== undefined || c.queue !== undefined)) return "capability \"global\"/\"queue\" is unexpected"
  return undefined
}

/** The `id` of a frame that failed to decode, so its `error` answers the request (provider-protocol.md §2). */
export const requestIdOf = (text: string): string | undefined => {
  try {
    const json = JSON.parse(text) as { readonly id?: unknown } | null
    return typeof json === "object" && json !== null && typeof json.id === "string" && json.id !== "" ? json.id : undefined
  } catch {
    return undefined
  }
}

const isEngineError = (error: unknown): error is EngineError =>
  typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "EngineError"

export const layer: Layer.Layer<NodeGateway, never, EngineStore | NodeSockets | Dispatcher | Actions | EngineConfig> =
  Layer.scoped(NodeGateway, make)
