import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import type { WireEncodeError } from "../wire/codec.js"
import type { Json } from "../wire/Json.js"
import { AgentRegisterReplyData, type ErrorFrame, type NodeToServer, type Reply } from "../wire/frames.js"
import type { DeliveryBook } from "./DeliveryBook.js"
import { NodeRequestFailed } from "./errors.js"
import * as Protocol from "./nodeProtocol.js"
import type { Connection } from "./nodeSocket.js"

// NodeControl's request correlation: the callers waiting on a reply (`pending`), the callers that
// gave up (`abandoned`: a late agent.register success is compensated), the frames sent without a
// caller whose error must still be reported (`tracked`), and the routing of `reply` / `error` frames.

export interface Pending {
  readonly type: NodeToServer["type"]
  readonly name: string | undefined
  readonly deferred: Deferred.Deferred<Json, NodeRequestFailed>
}

export interface Abandoned {
  readonly name: string
  readonly at: number
}

/** A frame sent without a waiting caller whose `error` answer must still be reported. */
export interface Tracked {
  readonly type: NodeToServer["type"]
}

export const newId = (type: NodeToServer["type"]) => `${type.replace(/\./g, "_")}_${randomBytes(16).toString("hex")}`

export const abandonedTtl = 300_000

export const disconnected = (detail: string) => new NodeRequestFailed({ reason: "Disconnected", code: "node_control_disconnected", detail })

export interface ReplyRoutingServices {
  readonly pending: Ref.Ref<Map<string, Pending>>
  readonly abandoned: Ref.Ref<Map<string, Abandoned>>
  readonly tracked: Ref.Ref<Map<string, Tracked>>
  readonly manifest: Ref.Ref<Protocol.Manifest>
  readonly book: Option.Option<DeliveryBook["Type"]>
  readonly setLastError: (message: string) => Effect.Effect<void>
  /** Queues a frame to the engine (the compensating `agent.deregister`). */
  readonly send: (frame: NodeToServer) => Effect.Effect<void>
  /** A v5 engine refused the provider fields of `node.register`. */
  readonly fallBackToV5: (frame: ErrorFrame) => Effect.Effect<void>
}

export const makeReplyRouting = ({ pending, abandoned, tracked, manifest, book, setLastError, send, fallBackToV5 }: ReplyRoutingServices) => {
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

  return { take, onReply, onError }
}

export interface RequestServices {
  readonly current: Ref.Ref<Option.Option<Connection>>
  readonly pending: Ref.Ref<Map<string, Pending>>
  readonly abandoned: Ref.Ref<Map<string, Abandoned>>
  readonly take: <A>(ref: Ref.Ref<Map<string, A>>, id: string) => Effect.Effect<Option.Option<A>>
  readonly encode: (frame: NodeToServer) => Effect.Effect<string, WireEncodeError>
  readonly requestTimeout: number
}

/** Sends a frame and waits for its `reply` (or `error`), within the request timeout. */
export const makeRequest = ({ current, pending, abandoned, take, encode, requestTimeout }: RequestServices) =>
  Effect.fn("NodeControl.request")(function*(frame: NodeToServer) {
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
        duration: requestTimeout,
        onTimeout: () =>
          new NodeRequestFailed({
            reason: "Timeout",
            code: frame.type === "agent.register" ? "agent_register_timeout" : "request_timeout",
            detail: `no reply to ${frame.type} within ${requestTimeout} ms`
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
