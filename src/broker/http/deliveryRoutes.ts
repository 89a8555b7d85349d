import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { Json } from "../../wire/Json.js"
import { AgentRegistry } from "../AgentRegistry.js"
import { BrokerIdentity } from "../BrokerIdentity.js"
import { capacity as deadLetterCapacity, DeadLetters } from "../DeadLetters.js"
import { Deliveries } from "../Deliveries.js"
import { type Credential, EngineClient, type SentMessage } from "../EngineClient.js"
import type { EngineHttpFailed } from "../errors.js"
import { NodeControl } from "../NodeControl.js"
import { sendDelivery } from "../../mcp/delivery.js"
import { engineFailureStatus, retryableStatus } from "./responses.js"

// The delivery routes of the control API:
//   GET  /api/dead-letters                 the dead letters (?agent= filters), oldest first
//   POST /api/dead-letters/redeliver       {id} or {all: true}: re-surface them to live agents
//   GET  /api/node-delivery                per agent: cursor, held seqs, last frame, last ack, counts,
//                                          worker state (stalled and why), cursor durability
//   POST /api/send                         {to, text, from?, thread?, mode?}: publish through the engine
// Auth is not checked here: the control API mounts this router behind its API-key check.

const json = (body: unknown, status = 200) => HttpServerResponse.unsafeJson(body, { status })

/** Both of upstream's error envelopes at once: `{success:false, error}` and `{code, message}`. */
const failure = (status: number, code: string, message: string, extra: Record<string, unknown> = {}) =>
  json({ success: false, ...extra, error: message, code, message, retryable: retryableStatus(status), ...retryableOf(extra) }, status)

const retryableOf = (extra: Record<string, unknown>) =>
  typeof extra["retryable"] === "boolean" ? { retryable: extra["retryable"] } : {}

class BadRequest extends Data.TaggedError("BadRequest")<{ readonly field: string; readonly message: string }> {}

const firstIssue = (error: ParseResult.ParseError): BadRequest => {
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
  const field = issue === undefined || issue.path.length === 0 ? "body" : issue.path.join(".")
  return new BadRequest({ field, message: `${field}: ${issue?.message ?? "invalid"}` })
}

/** The JSON body decoded with `schema`; anything wrong is a BadRequest naming the field. */
const decodeBody = <A, I>(schema: Schema.Schema<A, I>) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const text = yield* Effect.orElseSucceed(request.text, () => "")
    let body: unknown = {}
    if (text.trim() !== "") {
      try {
        body = JSON.parse(text)
      } catch {
        return yield* new BadRequest({ field: "body", message: "body: not valid JSON" })
      }
    }
    return yield* Either.match(Schema.decodeUnknownEither(schema, { errors: "all" })(body), {
      onLeft: (error) => Effect.fail(firstIssue(error)),
      onRight: Effect.succeed
    })
  })

const badRequest = (error: BadRequest) => failure(400, "invalid_request", error.message, { field: error.field })

const queryParam = (url: string, name: string): string | undefined =>
  new URL(url, "http://localhost").searchParams.get(name) ?? undefined

// ---------------------------------------------------------------------------------------------
// Bodies

const NonEmpty = Schema.Trim.pipe(Schema.nonEmptyString({ message: () => "must be a non-empty string" }))
const optional = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))
const Mode = Schema.Literal("wait", "steer")

export const RedeliverBody = Schema.Struct({
  id: optional(NonEmpty),
  all: optional(Schema.Boolean)
})

/** `text` also under upstream's aliases `message` / `body` / `content`; `thread` as `thread_id` / `threadId`. */
export const SendBody = Schema.Struct({
  to: NonEmpty,
  text: optional(Schema.String),
  message: optional(Schema.String),
  body: optional(Schema.String),
  content: optional(Schema.String),
  from: optional(Schema.String),
  thread: optional(NonEmpty),
  thread_id: optional(NonEmpty),
  threadId: optional(NonEmpty),
  mode: optional(Mode),
  injectionMode: optional(Mode),
  injection_mode: optional(Mode)
})
export type SendBody = typeof SendBody.Type

const firstPresent = <A>(...values: ReadonlyArray<A | null | undefined>): A | undefined =>
  values.find((value): value is A => value !== null && value !== undefined)

// ---------------------------------------------------------------------------------------------
// Handlers

const listDeadLetters = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const agent = queryParam(request.url, "agent")
  const all = yield* Effect.flatMap(DeadLetters, (letters) => letters.list)
  const entries = agent === undefined ? all : all.filter((entry) => entry.agent === agent)
  return json({ dead_letters: entries, count: entries.length, capacity: deadLetterCapacity })
})

const redeliver = Effect.gen(function*() {
  const body = yield* decodeBody(RedeliverBody)
  const hasId = body.id !== undefined && body.id !== null
  if (hasId === (body.all === true)) {
    return yield* new BadRequest({ field: "id", message: "id: give either an id or all: true" })
  }
  const deliveries = yield* Deliveries
  const report = yield* deliveries.redeliver(hasId ? { id: body.id as string } : "all")
  return json({ success: report.failed.length === 0, ...report })
}).pipe(
  Effect.catchTags({
    BadRequest: (error) => Effect.succeed(badRequest(error)),
    NoSuchDeadLetter: (error) => Effect.succeed(failure(404, "dead_letter_not_found", error.message, { id: error.id }))
  })
)

const nodeDelivery = Effect.gen(function*() {
  const status = yield* Effect.flatMap(NodeControl, (node) => node.status)
  const agents = yield* Effect.flatMap(Deliveries, (deliveries) => deliveries.report)
  const deadLetterCount = yield* Effect.flatMap(DeadLetters, (letters) => letters.count)
  const health = yield* Effect.flatMap(Deliveries, (deliveries) => deliveries.health)
  return json({
    node: {
      connected: status.connected,
      since: status.since,
      last_error: status.lastError,
      reconnects: status.reconnects,
      node_id: status.nodeId,
      node_name: status.nodeName
    },
    dead_letter_count: deadLetterCount,
    stalled_count: health.stalled.length,
    failing_cursor_saves: health.failingSaves.length,
    worker_restarts: health.workerRestarts,
    agents
  })
})

type Sender = { readonly name: string; readonly token: Credential; readonly own: boolean }

/** The agent named by `from` when it is one of this broker's agents; otherwise the broker itself. */
const senderFor = (from: string | undefined) =>
  Effect.gen(function*() {
    const identity = yield* BrokerIdentity
    if (from !== undefined && from.trim() !== "") {
      const local = yield* Effect.flatMap(AgentRegistry, (registry) => registry.lookup(from.trim())).pipe(Effect.option)
      if (Option.isSome(local) && local.value.status === "running") {
        return { name: local.value.name, token: local.value.token, own: false } satisfies Sender
      }
    }
    const broker = yield* identity.identity
    return { name: broker.name, token: broker.token, own: true } satisfies Sender
  })

type Target =
  | { readonly _tag: "thread"; readonly threadId: string }
  | { readonly _tag: "channel"; readonly channel: string }
  | { readonly _tag: "dm"; readonly to: string }

const publish = (sender: Sender, target: Target, text: string, mode: "wait" | "steer" | undefined) =>
  Effect.gen(function*() {
    const engine = yield* EngineClient
    const withMode = mode === undefined ? {} : { mode }
    switch (target._tag) {
      case "thread":
        return yield* engine.replyInThread(sender.token, { threadId: target.threadId, text })
      case "channel":
        return yield* engine.postToChannel(sender.token, { channel: target.channel, text, ...withMode })
      case "dm":
        return yield* engine.sendDm(sender.token, { to: target.to, text, ...withMode })
    }
  })

const field = (data: Json, key: string): Json | undefined =>
  typeof data === "object" && data !== null && !Array.isArray(data) ? (data as Record<string, Json>)[key] : undefined

const strings = (value: Json | undefined): ReadonlyArray<string> | undefined =>
  Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : undefined

const engineFailure = (error: EngineHttpFailed) => {
  const { status, retryable } = engineFailureStatus(error.status)
  return failure(status, error.code ?? "relay_error", error.message, { engine_status: error.status ?? null, retryable })
}

const send = Effect.gen(function*() {
  const body = yield* decodeBody(SendBody)
  const text = firstPresent(body.text, body.message, body.body, body.content)
  if (text === undefined || text.trim() === "") {
    return yield* new BadRequest({ field: "text", message: "text: is required (a non-empty string)" })
  }
  const threadId = firstPresent(body.thread, body.thread_id, body.threadId)
  const mode = firstPresent(body.mode, body.injectionMode, body.injection_mode)
  const target: Target = threadId !== undefined
    ? { _tag: "thread", threadId }
    : body.to.startsWith("#")
    ? { _tag: "channel", channel: body.to.slice(1) }
    : { _tag: "dm", to: body.to }
  if (target._tag === "channel" && target.channel.trim() === "") {
    return yield* new BadRequest({ field: "to", message: "to: a channel needs a name after #" })
  }
  const from = firstPresent(body.from)
  let sender = yield* senderFor(from)
  let sent: SentMessage
  const attempt = publish(sender, target, text, mode)
  const first = yield* Effect.either(attempt)
  if (Either.isRight(first)) {
    sent = first.right
  } else if (first.left.status === 401 && sender.own) {
    // The stored broker token is stale (e.g. a reset engine): register again, once.
    const fresh = yield* Effect.flatMap(BrokerIdentity, (identity) => identity.refresh)
    sender = { name: fresh.name, token: fresh.token, own: true }
    sent = yield* publish(sender, target, text, mode)
  } else {
    return yield* Effect.fail(first.left)
  }
  const mentions = strings(field(sent.data, "mentions"))
  const reported = strings(field(sent.data, "recipients"))
  const dmTo = field(sent.data, "to")
  // Per recipient, what is known at once: injected / queued / offline / failed.
  const delivery = yield* sendDelivery(sent.id, 2_000)
  const recipients = reported ??
    (target._tag === "dm" ? [typeof dmTo === "string" ? dmTo : target.to] : null)
  return json({
    success: true,
    event_id: sent.id,
    message_id: sent.id,
    target_type: target._tag,
    to: target._tag === "thread" ? body.to : target._tag === "channel" ? `#${target.channel}` : target.to,
    thread_id: threadId ?? null,
    from: sender.name,
    ...(from !== undefined && sender.own && from.trim() !== "" && from.trim() !== sender.name
      ? { warning: `'${from}' is not an agent of this broker; sent as ${sender.name}` }
      : {}),
    // A DM has one recipient; for channels and threads the engine does not list them (they arrive
    // as node deliveries, visible in /api/node-delivery and the event stream).
    recipients,
    // Upstream's name for the same list (harness-driver reads `targets`).
    targets: recipients ?? [],
    ...(mentions === undefined ? {} : { mentions }),
    delivery,
    local: false,
    relaycast_published: true
  })
}).pipe(
  Effect.catchTags({
    BadRequest: (error) => Effect.succeed(badRequest(error)),
    EngineHttpFailed: (error) => Effect.succeed(engineFailure(error))
  })
)

/** Requires the services below; the control API provides them and mounts the router behind its API-key check. */
export type DeliveryRoutesRequirements =
  | Deliveries
  | DeadLetters
  | NodeControl
  | AgentRegistry
  | EngineClient
  | BrokerIdentity

export const deliveryRoutes: HttpRouter.HttpRouter<never, DeliveryRoutesRequirements> = HttpRouter.empty.pipe(
  HttpRouter.get("/api/dead-letters", listDeadLetters),
  HttpRouter.post("/api/dead-letters/redeliver", redeliver),
  HttpRouter.get("/api/node-delivery", nodeDelivery),
  HttpRouter.post("/api/send", send)
)

// ---------------------------------------------------------------------------------------------
// The same routes for a composition that may run without deliveries: each route answers 503 when
// a service it needs is absent (the control API's own tests build it without them).

const unavailable = (what: string) =>
  // This broker's composition does not change while it runs: the same request never succeeds here.
  failure(503, "service_unavailable", `${what} is not running in this broker`, { retryable: false })

const withOptional = <I, S, A, E, R>(
  tag: Context.Tag<I, S>,
  what: string,
  handler: Effect.Effect<A, E, R>
): Effect.Effect<A | HttpServerResponse.HttpServerResponse, E, Exclude<R, I>> =>
  Effect.flatMap(Effect.serviceOption(tag), (service) =>
    Option.isNone(service)
      ? Effect.succeed<A | HttpServerResponse.HttpServerResponse>(unavailable(what))
      : Effect.provideService(handler, tag, service.value))

const needDeliveries = <A, E, R>(handler: Effect.Effect<A, E, R>) =>
  withOptional(Deliveries, "delivery", withOptional(DeadLetters, "the dead-letter store", handler))

const needEngine = <A, E, R>(handler: Effect.Effect<A, E, R>) =>
  withOptional(EngineClient, "the engine client", withOptional(BrokerIdentity, "the broker identity", handler))

/** `deliveryRoutes` without static requirements beyond what the control API always has. */
export const deliveryRoutesIfPresent: HttpRouter.HttpRouter<never, NodeControl | AgentRegistry> = HttpRouter.empty.pipe(
  HttpRouter.get("/api/dead-letters", withOptional(DeadLetters, "the dead-letter store", listDeadLetters)),
  HttpRouter.post("/api/dead-letters/redeliver", needDeliveries(redeliver)),
  HttpRouter.get("/api/node-delivery", needDeliveries(nodeDelivery)),
  HttpRouter.post("/api/send", needEngine(send))
)
