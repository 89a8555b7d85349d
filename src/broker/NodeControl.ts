import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import { WebSocket } from "ws"
import { decodeServerFrame, encodeNodeFrame, type WireDecodeError } from "../wire/codec.js"
import type { Json } from "../wire/Json.js"
import {
  type ActionInvoke,
  AgentRegisterReplyData,
  type Deliver,
  type ErrorFrame,
  type FleetCapability,
  type NodeToServer,
  type Reply,
  type ServerToNode
} from "../wire/frames.js"
import { AgentRoster } from "./AgentRoster.js"
import { DeliveryBook } from "./DeliveryBook.js"
import * as Protocol from "./nodeProtocol.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { NodeRequestFailed, Unauthorized } from "./errors.js"
import { type NodeIdentity, TokenStore } from "./TokenStore.js"

export interface NodeStatus {
  readonly connected: boolean
  /** Epoch ms of the last change of `connected`, or null before the first attempt. */
  readonly since: number | null
  readonly lastError: string | null
  readonly reconnects: number
  readonly remints: number
  readonly tokenPresent: boolean
  readonly nodeId: string | null
  readonly nodeName: string
}

export interface AgentRegistration {
  readonly name: string
  readonly invocation_id?: string
  readonly session_ref?: string
}

/**
 * A `deliver` frame that failed to decode but names its agent and seq: Deliveries can dead-letter
 * and ack it, so the engine does not redeliver it forever and the agent's cursor moves on.
 */
export interface UndecodableDelivery {
  readonly agent: string
  readonly seq: number
  readonly msgId: string | undefined
  readonly reason: string
}

export class NodeControl extends Context.Tag("relay-broker/NodeControl")<NodeControl, {
  /** A frame that gets a `reply` (`agent.register`, `inventory.sync`): assigns an `id`, resolves with `reply.data`. */
  readonly request: (frame: NodeToServer) => Effect.Effect<Json, NodeRequestFailed>
  /** `agent.register` with its reply data decoded; a late success after a timeout is compensated with `agent.deregister`. */
  readonly registerAgent: (agent: AgentRegistration) => Effect.Effect<AgentRegisterReplyData, NodeRequestFailed>
  /** Fire and forget; queued (bounded) while disconnected, flushed in order after the next register. */
  readonly send: (frame: NodeToServer) => Effect.Effect<void>
  /** `inventory.sync` of the roster plus an immediate heartbeat: call after a local change. */
  readonly announce: Effect.Effect<void>
  /** Every `deliver` frame, in arrival order. One consumer (Deliveries). */
  readonly deliveries: Stream.Stream<Deliver>
  /** Every `action.invoke` frame, in arrival order. One consumer (Actions). */
  readonly invocations: Stream.Stream<ActionInvoke>
  /** A broadcast of every decoded inbound frame, for observers; frames before subscription are not replayed. */
  readonly inbound: Stream.Stream<ServerToNode>
  readonly status: Effect.Effect<NodeStatus>
  /** `deliver` frames that could not be decoded but name `agent` and `seq`, in arrival order. One consumer. */
  readonly undecodableDeliveries: Stream.Stream<UndecodableDelivery>
}>() {}

// ---------------------------------------------------------------------------------------------
// Policies

/** Exponential from 1 s, doubling, capped at 30 s, jittered (0.8x–1.2x). Reset after a healthy session. */
export const reconnectSchedule = Schedule.exponential("1 second", 2).pipe(
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.jittered
)

export interface NodeControlOptions {
  /** The delay between connection attempts. Default `reconnectSchedule`. */
  readonly reconnectSchedule?: Schedule.Schedule<unknown, unknown>
  /** A session that stayed up this long resets the backoff. Default 30 s. */
  readonly healthyAfter?: Duration.DurationInput
  /** Consecutive 401s answered with a remint before giving up re-minting. Default 5. */
  readonly maxConsecutiveRemints?: number
  /** Frames `send` keeps while disconnected; beyond it the oldest is dropped. Default 1024. */
  readonly outboxCapacity?: number
  /** Heartbeat intervals without any inbound byte (frame or pong) before the socket counts as dead. Default 4. */
  readonly idleHeartbeats?: number
  /** The WebSocket handshake limit. Default 10 s. */
  readonly connectTimeout?: Duration.DurationInput
  /**
   * Advertised in `node.register` and heartbeats, e.g. `spawn:<harness>` placement capabilities so
   * the engine can place spawns here; `handlers_live` is true when there are any. Default none.
   * (Never a bare `spawn`: it would become a workspace action pinned to this node.)
   */
  readonly capabilities?: ReadonlyArray<FleetCapability>
  /**
   * The protocol generation to start with. Default "provider" (relaycast 6: provider identity,
   * capability kinds, the delivery cursor); a v5 engine's refusal switches to "v5" by itself.
   */
  readonly dialect?: Protocol.Dialect
}

/** Undecodable or unknown inbound frames, by `kind` (invalid_json, not_an_object, unknown_type, invalid_frame). */
export const skippedFrames = Metric.counter("relay_broker_node_frames_skipped_total", {
  description: "Inbound node-control frames that were logged and skipped"
})

/** `ws(s)://<base>/v1/node/ws`, from the engine's http(s) base URL. */
export const nodeControlUrl = (baseUrl: string): string =>
  `${baseUrl.trim().replace(/\/+$/, "").replace(/^https:/i, "wss:").replace(/^http:/i, "ws:")}/v1/node/ws`

// ---------------------------------------------------------------------------------------------
// Internals

/** Why a session (or a connection attempt) ended, other than a 401. */
class SessionEnded extends Data.TaggedError("SessionEnded")<{ readonly detail: string }> {
  override get message(): string {
    return this.detail
  }
}

type SocketEvent =
  | { readonly _tag: "Text"; readonly text: string }
  | { readonly _tag: "Other" }
  | { readonly _tag: "Closed"; readonly code: number; readonly reason: string }
  | { readonly _tag: "Failed"; readonly message: string }

interface Connection {
  /** Writes an encoded frame; fails when the socket is no longer open. */
  readonly write: (text: string) => Effect.Effect<void, SessionEnded>
  /** Writes and waits until the bytes were handed to the OS (so a failed write can be retried). */
  readonly writeConfirmed: (text: string) => Effect.Effect<void, SessionEnded>
  readonly ping: Effect.Effect<void>
}

interface Pending {
  readonly type: NodeToServer["type"]
  readonly name: string | undefined
  readonly deferred: Deferred.Deferred<Json, NodeRequestFailed>
}

interface Abandoned {
  readonly name: string
  readonly at: number
}

/** A frame sent without a waiting caller whose `error` answer must still be reported. */
interface Tracked {
  readonly type: NodeToServer["type"]
}

const newId = (type: NodeToServer["type"]) => `${type.replace(/\./g, "_")}_${randomBytes(16).toString("hex")}`

const abandonedTtl = 300_000

const disconnected = (detail: string) => new NodeRequestFailed({ reason: "Disconnected", code: "node_control_disconnected", detail })

const openSocket = (url: string, token: Redacted.Redacted<string>, events: Queue.Queue<SocketEvent>, timeoutMs: number) =>
  Effect.async<WebSocket, Unauthorized | SessionEnded>((resume) => {
    let settled = false
    const settle = (effect: Effect.Effect<WebSocket, Unauthorized | SessionEnded>) => {
      if (settled) return
      settled = true
      resume(effect)
    }
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${Redacted.value(token).trim()}` },
      handshakeTimeout: timeoutMs
    })
    ws.on("unexpected-response", (_request, response) => {
      const status = response.statusCode ?? 0
      response.resume()
      ws.terminate()
      settle(Effect.fail(
        status === 401
          ? new Unauthorized({ detail: "HTTP 401 on the /v1/node/ws upgrade" })
          : new SessionEnded({ detail: `the /v1/node/ws upgrade was answered with HTTP ${status}` })
      ))
    })
    ws.on("open", () => settle(Effect.succeed(ws)))
    ws.on("error", (error) => {
      if (settled) Queue.unsafeOffer(events, { _tag: "Failed", message: error.message })
      else settle(Effect.fail(new SessionEnded({ detail: `cannot connect to ${url}: ${error.message}` })))
    })
    ws.on("message", (data, isBinary) => {
      Queue.unsafeOffer(events, isBinary ? { _tag: "Other" } : { _tag: "Text", text: data.toString() })
    })
    ws.on("pong", () => Queue.unsafeOffer(events, { _tag: "Other" }))
    ws.on("close", (code, reason) => Queue.unsafeOffer(events, { _tag: "Closed", code, reason: reason.toString() }))
    return Effect.sync(() => ws.terminate())
  })

const makeConnection = (ws: WebSocket): Connection => {
  const ensureOpen = Effect.suspend(() =>
    ws.readyState === WebSocket.OPEN ? Effect.void : Effect.fail(new SessionEnded({ detail: "the socket is closed" }))
  )
  return {
    write: (text) => Effect.zipRight(ensureOpen, Effect.sync(() => ws.send(text))),
    writeConfirmed: (text) =>
      Effect.zipRight(
        ensureOpen,
        Effect.async<void, SessionEnded>((resume) => {
          ws.send(text, (error) =>
            resume(error ? Effect.fail(new SessionEnded({ detail: `write failed: ${error.message}` })) : Effect.void))
        })
      ),
    ping: Effect.sync(() => {
      if (ws.readyState === WebSocket.OPEN) ws.ping()
    })
  }
}

/** Sends the last frames (then `node.deregister`), closes, and waits briefly for the close handshake. */
const closeGracefully = (ws: WebSocket, lastFrames: ReadonlyArray<string>) =>
  Effect.async<void>((resume) => {
    if (ws.readyState !== WebSocket.OPEN) {
      ws.terminate()
      return resume(Effect.void)
    }
    const timer = setTimeout(() => ws.terminate(), 2_000)
    ws.once("close", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    for (const text of lastFrames) ws.send(text)
    ws.close(1000, "shutdown")
  })

/** A readable agent name and seq from an undecodable `deliver` frame's text. */
const salvageDelivery = (text: string, error: WireDecodeError): Option.Option<UndecodableDelivery> => {
  if (error.frameType !== "deliver") return Option.none()
  try {
    const json = JSON.parse(text) as { agent?: unknown; seq?: unknown; msg_id?: unknown }
    if (typeof json.agent !== "string" || typeof json.seq !== "number" || !Number.isSafeInteger(json.seq) || json.seq < 0) {
      return Option.none()
    }
    return Option.some({
      agent: json.agent,
      seq: json.seq,
      msgId: typeof json.msg_id === "string" ? json.msg_id : undefined,
      reason: error.message
    })
  } catch {
    return Option.none()
  }
}

// ---------------------------------------------------------------------------------------------

export const makeWith = (options: NodeControlOptions = {}) =>
  Effect.gen(function*() {
    const config = yield* BrokerConfig
    const tokens = yield* TokenStore
    const roster = yield* AgentRoster

    const schedule = options.reconnectSchedule ?? reconnectSchedule
    const healthyAfter = Duration.toMillis(options.healthyAfter ?? "30 seconds")
    const maxRemints = options.maxConsecutiveRemints ?? 5
    const outboxCapacity = options.outboxCapacity ?? 1024
    const idleLimit = config.heartbeatInterval * (options.idleHeartbeats ?? 4)
    const connectTimeout = Duration.toMillis(options.connectTimeout ?? "10 seconds")
    const url = nodeControlUrl(config.baseUrl)
    const version = `relay-broker/${config.version}`
    const spawnCapabilities = options.capabilities ?? []
    const book = yield* Effect.serviceOption(DeliveryBook)
    // The protocol generation (provider until a v5 engine refuses it) and this connection's epoch.
    const manifest = yield* Ref.make<Protocol.Manifest>({
      dialect: options.dialect ?? "provider",
      provider: { name: Protocol.providerName, instance_id: Protocol.newInstanceId() },
      spawn: spawnCapabilities
    })

    const status = yield* Ref.make<NodeStatus>({
      connected: false,
      since: null,
      lastError: null,
      reconnects: 0,
      remints: 0,
      tokenPresent: false,
      nodeId: null,
      nodeName: config.nodeName
    })

    const deliveries = yield* Queue.unbounded<Deliver>()
    const invocations = yield* Queue.unbounded<ActionInvoke>()
    const undecodable = yield* Queue.sliding<UndecodableDelivery>(1024)
    const inbound = yield* PubSub.sliding<ServerToNode>(1024)
    const outbox = yield* Queue.sliding<string>(outboxCapacity)
    // The outbox frame being written; kept until the write is confirmed, so a drop re-sends it.
    const outboxHead = yield* Ref.make(Option.none<string>())

    const current = yield* Ref.make(Option.none<Connection>())
    const pending = yield* Ref.make(new Map<string, Pending>())
    const abandoned = yield* Ref.make(new Map<string, Abandoned>())
    const tracked = yield* Ref.make(new Map<string, Tracked>())
    const lastRead = yield* Ref.make(0)
    const identityRef = yield* Ref.make(Option.none<NodeIdentity>())

    const setLastError = (message: string) => Ref.update(status, (s) => ({ ...s, lastError: message }))

    // ---- outbound frames -----------------------------------------------------------------------

    const encode = (frame: NodeToServer) => encodeNodeFrame(frame)

    const registerFrame = (identity: NodeIdentity) =>
      Effect.map(Ref.get(manifest), (m) =>
        Protocol.registerFrame(m, { id: identity.nodeId, name: identity.nodeName, version, requestId: newId("node.register") }))

    const heartbeatFrame = (identity: NodeIdentity) =>
      Effect.zipWith(Ref.get(manifest), roster.list, (m, agents) =>
        Protocol.heartbeatFrame(m, { id: identity.nodeId, name: identity.nodeName, version, activeAgents: agents.length }))

    /** The registration a connection starts with: register, the roster, a heartbeat. */
    const introduce = (connection: Connection, identity: NodeIdentity) =>
      Effect.gen(function*() {
        yield* writeTracked(connection, yield* registerFrame(identity))
        yield* writeTracked(connection, yield* inventoryFrame)
        yield* connection.write(yield* encode(yield* heartbeatFrame(identity)).pipe(Effect.orDie))
      })

    const inventoryFrame = Effect.map(roster.list, (agents): NodeToServer => ({
      v: 1,
      type: "inventory.sync",
      id: newId("inventory.sync"),
      agents: [...agents]
    }))

    /** Writes a frame nobody waits for; an `error` answer to it is logged and kept as `lastError`. */
    const writeTracked = (connection: Connection, frame: NodeToServer) =>
      Effect.gen(function*() {
        const text = yield* encode(frame).pipe(Effect.orDie)
        if (frame.id !== undefined) yield* Ref.update(tracked, (m) => new Map(m).set(frame.id!, { type: frame.type }))
        yield* connection.write(text)
      })

    // ---- inbound frames ------------------------------------------------------------------------

    const take = <A>(ref: Ref.Ref<Map<string, A>>, id: string) =>
      Ref.modify(ref, (m): [Option.Option<A>, Map<string, A>] => {
        const found = m.get(id)
        if (found === undefined) return [Option.none(), m]
        const next = new Map(m)
        next.delete(id)
        return [Option.some(found), next]
      })

    /** The single entry whose name is `name`, if exactly one exists. */
    const takeUniqueByName = <A extends { readonly name: string | undefined }>(ref: Ref.Ref<Map<string, A>>, name: string) =>
      Ref.modify(ref, (m): [Option.Option<readonly [string, A]>, Map<string, A>] => {
        const matches = [...m.entries()].filter(([, entry]) => entry.name === name)
        if (matches.length !== 1) return [Option.none(), m]
        const next = new Map(m)
        next.delete(matches[0]![0])
        return [Option.some(matches[0]!), next]
      })

    const compensate = (requestId: string, late: Abandoned, data: Json) =>
      Effect.gen(function*() {
        const decoded = Schema.decodeUnknownOption(AgentRegisterReplyData)(data)
        if (Option.isNone(decoded)) return
        yield* Effect.logWarning(
          `agent.register for '${late.name}' succeeded after its caller gave up; deregistering ${decoded.value.agent_id}`
        )
        yield* send({ v: 1, type: "agent.deregister", id: requestId, agent_id: decoded.value.agent_id, name: late.name })
      })

    /**
     * The engine's `delivery_ack_seq` for an agent starts (or moves up) its cursor before any of the
     * frames replayed after this reply is handled: they come next on this socket.
     */
    const adoptServerCursor = (data: Json) =>
      Option.match(Protocol.serverCursor(data), {
        onNone: () => Effect.void,
        onSome: (cursor) =>
          Option.match(book, {
            onNone: () => Effect.void,
            onSome: (deliveryBook) =>
              deliveryBook.adoptServerCursor({ agentId: cursor.agentId, name: cursor.name ?? "" }, cursor.ackSeq).pipe(
                Effect.catchAll((error) => Effect.logWarning(`could not keep the engine's cursor for ${cursor.name ?? cursor.agentId}: ${error.message}`))
              )
          })
      })

    const onReply = (reply: Reply) =>
      Effect.gen(function*() {
        const byId = yield* take(pending, reply.id)
        if (Option.isSome(byId)) {
          if (byId.value.type === "agent.register") yield* adoptServerCursor(reply.data)
          return yield* Deferred.succeed(byId.value.deferred, reply.data)
        }
        const late = yield* take(abandoned, reply.id)
        if (Option.isSome(late)) return yield* compensate(reply.id, late.value, reply.data)
        const ours = yield* take(tracked, reply.id)
        if (Option.isSome(ours)) {
          if (ours.value.type !== "node.register") return
          const refused = Protocol.refusedCapabilities(reply.data)
          if (refused.length > 0) yield* Effect.logWarning(`the engine refused capabilities of this node: ${refused.join(", ")}`)
          return
        }
        // The engine may answer agent.register under a fresh id: match on the agent's name, if unambiguous.
        const name = Schema.decodeUnknownOption(AgentRegisterReplyData)(reply.data).pipe(Option.flatMapNullable((d) => d.name))
        if (Option.isSome(name)) {
          const waiting = yield* takeUniqueByName(pending, name.value)
          if (Option.isSome(waiting)) {
            yield* adoptServerCursor(reply.data)
            return yield* Deferred.succeed(waiting.value[1].deferred, reply.data)
          }
          const gaveUp = yield* takeUniqueByName(abandoned, name.value)
          if (Option.isSome(gaveUp)) return yield* compensate(gaveUp.value[0], gaveUp.value[1], reply.data)
        }
        yield* Effect.logDebug(`reply ${reply.id} matches no request`)
      })

    const onError = (frame: ErrorFrame) =>
      Effect.gen(function*() {
        const byId = yield* take(pending, frame.id)
        if (Option.isSome(byId)) {
          return yield* Deferred.fail(
            byId.value.deferred,
            new NodeRequestFailed({ reason: "Rejected", code: frame.code, detail: frame.message })
          )
        }
        if (Option.isSome(yield* take(abandoned, frame.id))) return
        const ours = yield* take(tracked, frame.id)
        if (Option.isSome(ours) && ours.value.type === "node.register" && Protocol.refusesProviders(yield* Ref.get(manifest), frame)) {
          return yield* fallBackToV5(frame)
        }
        const what = Option.match(ours, { onNone: () => "a frame", onSome: (t) => t.type })
        const line = `the engine rejected ${what}: ${frame.code}: ${frame.message}`
        yield* setLastError(line)
        yield* Option.isSome(ours) && ours.value.type === "node.register" ? Effect.logError(line) : Effect.logWarning(line)
      })

    /** A v5 engine refused the provider fields: speak v5 from now on and register again on this socket. */
    const fallBackToV5 = (frame: ErrorFrame) =>
      Effect.gen(function*() {
        yield* Ref.update(manifest, (m) => ({ ...m, dialect: "v5" as const }))
        yield* Effect.logWarning(`the engine speaks the v5 node protocol (${frame.code}: ${frame.message}); registering again without providers`)
        const connection = yield* Ref.get(current)
        const identity = yield* Ref.get(identityRef)
        if (Option.isNone(connection) || Option.isNone(identity)) return
        yield* introduce(connection.value, identity.value).pipe(Effect.catchTag("SessionEnded", () => Effect.void))
      })

    const onText = (text: string) =>
      decodeServerFrame(text).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            Effect.gen(function*() {
              yield* Effect.logWarning(`skipped an inbound frame: ${error.message}`)
              yield* Metric.increment(Metric.tagged(skippedFrames, "kind", error.kind))
              const salvaged = salvageDelivery(text, error)
              if (Option.isSome(salvaged)) yield* Queue.offer(undecodable, salvaged.value)
            }),
          onSuccess: (frame) =>
            Effect.gen(function*() {
              switch (frame.type) {
                case "ping":
                  return
                case "deliver":
                  yield* Queue.offer(deliveries, frame)
                  break
                case "action.invoke":
                  yield* Queue.offer(invocations, frame)
                  break
                case "reply":
                  yield* onReply(frame)
                  break
                case "error":
                  yield* onError(frame)
                  break
                case "context.update":
                  break
              }
              yield* PubSub.publish(inbound, frame)
            })
        })
      )

    // ---- one session -----------------------------------------------------------------------------

    const readLoop = (events: Queue.Queue<SocketEvent>) =>
      Effect.gen(function*() {
        while (true) {
          const event = yield* Queue.take(events)
          yield* Ref.set(lastRead, yield* Clock.currentTimeMillis)
          switch (event._tag) {
            case "Text":
              yield* onText(event.text)
              break
            case "Other":
              break
            case "Closed":
              return yield* new SessionEnded({
                detail: `the engine closed the connection (${event.code}${event.reason === "" ? "" : ` ${event.reason}`})`
              })
            case "Failed":
              return yield* new SessionEnded({ detail: `connection error: ${event.message}` })
          }
        }
      })

    const heartbeatLoop = (connection: Connection, identity: NodeIdentity) =>
      Effect.gen(function*() {
        while (true) {
          yield* Effect.sleep(config.heartbeatInterval)
          const now = yield* Clock.currentTimeMillis
          if (now - (yield* Ref.get(lastRead)) >= idleLimit) {
            return yield* new SessionEnded({
              detail: `nothing read from the engine for ${idleLimit} ms (${options.idleHeartbeats ?? 4} heartbeats): the connection counts as dead`
            })
          }
          yield* Ref.update(abandoned, (m) => new Map([...m].filter(([, entry]) => now - entry.at < abandonedTtl)))
          yield* connection.write(yield* encode(yield* heartbeatFrame(identity)).pipe(Effect.orDie))
          yield* connection.ping
        }
      })

    const writerLoop = (connection: Connection) =>
      Effect.gen(function*() {
        while (true) {
          const text = yield* Effect.uninterruptibleMask((restore) =>
            Effect.gen(function*() {
              const head = yield* Ref.get(outboxHead)
              if (Option.isSome(head)) return head.value
              const next = yield* restore(Queue.take(outbox))
              yield* Ref.set(outboxHead, Option.some(next))
              return next
            })
          )
          yield* connection.writeConfirmed(text)
          yield* Ref.set(outboxHead, Option.none())
        }
      })

    /** Whatever `send` queued and was not written yet (e.g. final acks at shutdown). */
    const drainOutbox = Effect.gen(function*() {
      const head = yield* Ref.getAndSet(outboxHead, Option.none())
      const rest = yield* Queue.takeAll(outbox)
      return [...Option.toArray(head), ...rest]
    })

    const endSession = (detail: string) =>
      Effect.gen(function*() {
        yield* Ref.set(current, Option.none())
        const waiting = yield* Ref.getAndSet(pending, new Map())
        for (const entry of waiting.values()) yield* Deferred.fail(entry.deferred, disconnected(detail))
        // Replies arrive on the socket that carried the request: nothing can answer these any more.
        yield* Ref.set(abandoned, new Map())
        yield* Ref.set(tracked, new Map())
        const now = yield* Clock.currentTimeMillis
        yield* Ref.update(status, (s) => ({ ...s, connected: false, since: now }))
      })

    /** One connection, from the upgrade to its end. Always fails: with the reason it ended. */
    const session = (identity: NodeIdentity, token: Redacted.Redacted<string>, connectedAt: Ref.Ref<Option.Option<number>>) =>
      Effect.scoped(
        Effect.gen(function*() {
          const events = yield* Queue.unbounded<SocketEvent>()
          // A new connection epoch: it replaces the previous attachment of the `broker` provider.
          yield* Ref.update(manifest, (m) => ({ ...m, provider: { ...m.provider, instance_id: Protocol.newInstanceId() } }))
          const ws = yield* Effect.acquireRelease(
            openSocket(url, token, events, connectTimeout),
            // A clean stop (interruption) says goodbye; a failed session just drops the socket.
            (socket, exit) =>
              Exit.isInterrupted(exit)
                ? Effect.gen(function*() {
                  const goodbye = yield* encode(Protocol.deregisterFrame(yield* Ref.get(manifest))).pipe(Effect.orDie)
                  yield* closeGracefully(socket, [...(yield* drainOutbox), goodbye])
                })
                : Effect.sync(() => socket.terminate())
          )
          const connection = makeConnection(ws)
          const now = yield* Clock.currentTimeMillis
          yield* Ref.set(connectedAt, Option.some(now))
          yield* Ref.set(lastRead, now)
          yield* Ref.update(status, (s) => ({ ...s, connected: true, since: now, tokenPresent: true }))
          yield* Effect.logInfo(`connected to ${url} as node ${identity.nodeId} (${identity.nodeName})`)
          yield* Effect.addFinalizer((exit) =>
            endSession(Exit.isInterrupted(exit) ? "node control is shutting down" : "the connection to the engine was lost")
          )

          yield* introduce(connection, identity)
          yield* Ref.set(current, Option.some(connection))

          return yield* Effect.raceFirst(
            readLoop(events),
            Effect.raceFirst(heartbeatLoop(connection, identity), writerLoop(connection))
          )
        })
      )

    // ---- the reconnect loop ----------------------------------------------------------------------

    const consecutiveUnauthorized = yield* Ref.make(0)

    const onUnauthorized = (error: Unauthorized) =>
      Effect.gen(function*() {
        const count = yield* Ref.updateAndGet(consecutiveUnauthorized, (n) => n + 1)
        if (count > maxRemints) {
          if (count === maxRemints + 1) {
            yield* Effect.logError(
              `NODE TOKEN REJECTED ${count} times in a row (${error.detail}); re-minted ${maxRemints} times without success. ` +
                "No more re-minting: reconnecting with backoff. Check the workspace key and the engine."
            )
          }
          return
        }
        yield* Effect.logWarning(`the engine refused the node token (${count}/${maxRemints}); minting a new one`)
        yield* tokens.remint.pipe(
          Effect.tap(() => Ref.update(status, (s) => ({ ...s, remints: s.remints + 1, tokenPresent: true }))),
          Effect.catchAll((mint) => Effect.logError(`re-minting the node token failed: ${mint.message}`))
        )
      })

    const attempt = (connectedAt: Ref.Ref<Option.Option<number>>) =>
      Effect.gen(function*() {
        const identity = yield* tokens.identity
        yield* Ref.set(identityRef, Option.some(identity))
        yield* Ref.update(status, (s) => ({ ...s, nodeId: identity.nodeId, nodeName: identity.nodeName }))
        const token = yield* tokens.token.pipe(
          Effect.tapError(() => Ref.update(status, (s) => ({ ...s, tokenPresent: false })))
        )
        yield* Ref.update(status, (s) => ({ ...s, tokenPresent: true }))
        return yield* session(identity, token, connectedAt)
      })

    const run = Effect.gen(function*() {
      const driver = yield* Schedule.driver(schedule)
      while (true) {
        const connectedAt = yield* Ref.make(Option.none<number>())
        const error = yield* Effect.flip(attempt(connectedAt))
        const previous = (yield* Ref.get(status)).lastError
        yield* setLastError(error.message)
        const failedAt = yield* Clock.currentTimeMillis
        yield* Ref.update(status, (s) => s.since === null ? { ...s, since: failedAt } : s)
        const started = yield* Ref.get(connectedAt)
        if (Option.isSome(started)) yield* Ref.set(consecutiveUnauthorized, 0)
        switch (error._tag) {
          case "Unauthorized":
            yield* onUnauthorized(error)
            break
          case "MintFailed":
            // No token: keep running (health shows it) and try again on the schedule.
            if (previous !== error.message) yield* Effect.logError(`NO NODE TOKEN: ${error.message}; realtime delivery is down, retrying`)
            break
          case "SessionEnded":
            yield* (Option.isSome(started) ? Effect.logWarning : Effect.logInfo)(`node control: ${error.detail}; reconnecting`)
            break
        }
        if (Option.isSome(started) && (yield* Clock.currentTimeMillis) - started.value >= healthyAfter) {
          yield* driver.reset
        }
        yield* Ref.update(status, (s) => ({ ...s, reconnects: s.reconnects + 1 }))
        yield* driver.next(error).pipe(Effect.ignore)
      }
    }).pipe(Effect.annotateLogs({ module: "NodeControl" }))

    // ---- the service -----------------------------------------------------------------------------

    const request = Effect.fn("NodeControl.request")(function*(frame: NodeToServer) {
      const connection = yield* Ref.get(current)
      if (Option.isNone(connection)) return yield* disconnected("not connected to the engine")
      const id = frame.id ?? newId(frame.type)
      const text = yield* encode({ ...frame, id }).pipe(
        Effect.mapError((error) => new NodeRequestFailed({ reason: "Rejected", code: "invalid_frame", detail: error.message }))
      )
      const deferred = yield* Deferred.make<Json, NodeRequestFailed>()
      const name = frame.type === "agent.register" ? frame.name : undefined
      yield* Ref.update(pending, (m) => new Map(m).set(id, { type: frame.type, name, deferred }))
      return yield* connection.value.write(text).pipe(
        Effect.mapError((error) => disconnected(error.detail)),
        Effect.zipRight(Deferred.await(deferred)),
        Effect.timeoutFail({
          duration: config.requestTimeout,
          onTimeout: () =>
            new NodeRequestFailed({
              reason: "Timeout",
              code: frame.type === "agent.register" ? "agent_register_timeout" : "request_timeout",
              detail: `no reply to ${frame.type} within ${config.requestTimeout} ms`
            })
        }),
        // The caller gave up (timeout or interruption) while the request was still pending.
        Effect.onExit(() =>
          Effect.gen(function*() {
            const left = yield* take(pending, id)
            if (Option.isSome(left) && name !== undefined) {
              const at = yield* Clock.currentTimeMillis
              yield* Ref.update(abandoned, (m) => new Map(m).set(id, { name, at }))
            }
          })
        )
      )
    })

    const registerAgent = Effect.fn("NodeControl.registerAgent")(function*(agent: AgentRegistration) {
      const data = yield* request({
        v: 1,
        type: "agent.register",
        name: agent.name,
        ...(agent.invocation_id === undefined ? {} : { invocation_id: agent.invocation_id }),
        ...(agent.session_ref === undefined ? {} : { session_ref: agent.session_ref, resumable: true })
      })
      return yield* Schema.decodeUnknown(AgentRegisterReplyData)(data).pipe(
        Effect.mapError((error) =>
          new NodeRequestFailed({ reason: "InvalidReply", code: "invalid_agent_register_reply_data", detail: error.message })
        )
      )
    })

    const send = Effect.fn("NodeControl.send")(function*(frame: NodeToServer) {
      const text = yield* encode(frame).pipe(Effect.either)
      if (Either.isLeft(text)) {
        // A caller bug; the engine would only answer invalid_message.
        return yield* Effect.logError(`not sending an invalid frame: ${text.left.message}`)
      }
      if ((yield* Queue.size(outbox)) >= outboxCapacity) {
        yield* Effect.logWarning(`the node-control outbox is full (${outboxCapacity}); the oldest frame is dropped`)
      }
      yield* Queue.offer(outbox, text.right)
    })

    const announce = Effect.gen(function*() {
      const connection = yield* Ref.get(current)
      const identity = yield* Ref.get(identityRef)
      // Disconnected: the next connection sends the roster anyway.
      if (Option.isNone(connection) || Option.isNone(identity)) return
      yield* writeTracked(connection.value, yield* inventoryFrame)
      yield* connection.value.write(yield* encode(yield* heartbeatFrame(identity.value)).pipe(Effect.orDie))
    }).pipe(Effect.catchTag("SessionEnded", () => Effect.void), Effect.withSpan("NodeControl.announce"))

    yield* Effect.forkScoped(run)

    return NodeControl.of({
      request,
      registerAgent,
      send,
      announce,
      deliveries: Stream.fromQueue(deliveries),
      invocations: Stream.fromQueue(invocations),
      inbound: Stream.fromPubSub(inbound),
      undecodableDeliveries: Stream.fromQueue(undecodable),
      status: Ref.get(status)
    })
  })

export const make = makeWith()

/** Needs BrokerConfig, TokenStore and AgentRoster. The connection lives as long as the layer. */
export const layer: Layer.Layer<NodeControl, never, BrokerConfig | TokenStore | AgentRoster> = Layer.scoped(NodeControl, make)

export const layerWith = (options: NodeControlOptions): Layer.Layer<NodeControl, never, BrokerConfig | TokenStore | AgentRoster> =>
  Layer.scoped(NodeControl, makeWith(options))
