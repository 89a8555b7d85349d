import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { encodeNodeFrame } from "../wire/codec.js"
import type { Json } from "../wire/Json.js"
import {
  type ActionInvoke,
  AgentRegisterReplyData,
  type Deliver,
  type ErrorFrame,
  type NodeToServer,
  type ServerToNode
} from "../wire/frames.js"
import { AgentRoster } from "./AgentRoster.js"
import { DeliveryBook } from "./DeliveryBook.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { NodeRequestFailed } from "./errors.js"
import { type NodeControlOptions, nodeControlUrl, reconnectSchedule } from "./nodeControlPolicy.js"
import { SidecarHandlers } from "./SidecarHandlers.js"
import type { UndecodableDelivery } from "./nodeFrames.js"
import { makeInbound } from "./nodeInbound.js"
import { makeOutbox } from "./nodeOutbox.js"
import { makeReconnectLoop } from "./nodeReconnect.js"
import * as Protocol from "./nodeProtocol.js"
import { type Abandoned, abandonedTtl, disconnected, makeReplyRouting, makeRequest, newId, type Pending, type Tracked } from "./nodeRequests.js"
import { closeGracefully, type Connection, makeConnection, openSocket, SessionEnded, type SocketEvent } from "./nodeSocket.js"
import { type NodeIdentity, TokenStore } from "./TokenStore.js"

// The node's one WebSocket to the engine: the session (register, heartbeats, the writer) and the
// service. Policy and options: nodeControlPolicy.ts; the socket: nodeSocket.ts; request/reply
// correlation: nodeRequests.ts; the outbox: nodeOutbox.ts; the read loop and where inbound frames go:
// nodeInbound.ts; the reconnect loop: nodeReconnect.ts.

export { type NodeControlOptions, nodeControlUrl, reconnectSchedule, skippedFrames } from "./nodeControlPolicy.js"
export type { UndecodableDelivery } from "./nodeFrames.js"

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
    const sidecars = yield* Effect.serviceOption(SidecarHandlers)
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
    const outbox = yield* makeOutbox(outboxCapacity)
    const { writerLoop, drainOutbox } = outbox

    const current = yield* Ref.make(Option.none<Connection>())
    const pending = yield* Ref.make(new Map<string, Pending>())
    const abandoned = yield* Ref.make(new Map<string, Abandoned>())
    const tracked = yield* Ref.make(new Map<string, Tracked>())
    const lastRead = yield* Ref.make(0)
    const identityRef = yield* Ref.make(Option.none<NodeIdentity>())

    const setLastError = (message: string) => Ref.update(status, (s) => ({ ...s, lastError: message }))

    // ---- outbound frames -----------------------------------------------------------------------

    const encode = (frame: NodeToServer) => encodeNodeFrame(frame)

    /** The manifest with the connected sidecars' handlers of this moment. */
    const currentManifest = Option.isNone(sidecars)
      ? Ref.get(manifest)
      : Effect.zipWith(Ref.get(manifest), sidecars.value.capabilities, (m, handlers): Protocol.Manifest => ({ ...m, handlers }))

    const registerFrame = (identity: NodeIdentity) =>
      Effect.map(currentManifest, (m) =>
        Protocol.registerFrame(m, { id: identity.nodeId, name: identity.nodeName, version, requestId: newId("node.register") }))

    const heartbeatFrame = (identity: NodeIdentity) =>
      Effect.zipWith(currentManifest, roster.list, (m, agents) =>
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

    const { take, onReply, onError } = makeReplyRouting({
      pending, abandoned, tracked, manifest, book, setLastError, fallBackToV5, send: (frame) => send(frame)
    })

    const { readLoop } = makeInbound({ deliveries, invocations, undecodable, inbound, lastRead, onReply, onError })

    // ---- one session -----------------------------------------------------------------------------

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

    const run = yield* makeReconnectLoop({ tokens, status, identityRef, setLastError, schedule, healthyAfter, maxRemints, session })

    // ---- the service -----------------------------------------------------------------------------
    const request = makeRequest({ current, pending, abandoned, take, encode, requestTimeout: config.requestTimeout })

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
      yield* outbox.enqueue(frame.type === "delivery.ack"
        ? { text: text.right, ack: { agent: frame.agent, upToSeq: frame.up_to_seq } }
        : { text: text.right })
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
    // A sidecar's handlers come and go: the engine learns them from the next heartbeat, sent now.
    if (Option.isSome(sidecars)) {
      yield* sidecars.value.capabilityChanges.pipe(
        Stream.drop(1),
        Stream.runForEach(() => announce),
        Effect.forkScoped
      )
    }

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