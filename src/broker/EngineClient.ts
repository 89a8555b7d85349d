import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { Json } from "../wire/Json.js"
import { Json as JsonSchema } from "../wire/Json.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { EngineHttpFailed } from "./errors.js"

/** An engine credential: a workspace key (`rk_live_…`) or an agent token (`at_live_…`). */
export type Credential = Redacted.Redacted<string>

export interface CreatedWorkspace {
  readonly workspaceId: string
  readonly apiKey: Redacted.Redacted<string>
}

export interface CreatedAgent {
  readonly id: string
  readonly name: string
  readonly token: Redacted.Redacted<string>
}

export interface SentMessage {
  /** The engine's message id. */
  readonly id: string
  /** The engine's `data` as it answered, for callers that report it. */
  readonly data: Json
}

export class EngineClient extends Context.Tag("relay-broker/EngineClient")<EngineClient, {
  /** `POST /v1/workspaces` (no auth): a new workspace and its key. */
  readonly createWorkspace: (name: string) => Effect.Effect<CreatedWorkspace, EngineHttpFailed>
  /** `GET /v1/workspace` with the key: `{id, name}`. */
  readonly getWorkspace: (key: Credential) => Effect.Effect<{ readonly id: string; readonly name: string }, EngineHttpFailed>
  /** `POST /v1/agents` with the workspace key (`type` "agent" or "human"); 409 is `code: agent_already_exists`. */
  readonly createAgent: (
    key: Credential,
    agent: { readonly name: string; readonly type: "agent" | "human" }
  ) => Effect.Effect<CreatedAgent, EngineHttpFailed>
  /** `POST /v1/agents/:name/rotate-token` with the workspace key. */
  readonly rotateAgentToken: (key: Credential, name: string) => Effect.Effect<CreatedAgent, EngineHttpFailed>
  /** `POST /v1/nodes/:nodeName/agents {agent_name}` with the workspace key: the agent becomes `via_node`. */
  readonly bindAgentToNode: (key: Credential, nodeName: string, agentName: string) => Effect.Effect<void, EngineHttpFailed>
  /** `POST /v1/dm {to, text, mode?}` with an agent token. */
  readonly sendDm: (
    token: Credential,
    message: { readonly to: string; readonly text: string; readonly mode?: "wait" | "steer" }
  ) => Effect.Effect<SentMessage, EngineHttpFailed>
  /** `POST /v1/channels/:channel/messages {text, mode?}` with an agent token (`channel` without `#`). */
  readonly postToChannel: (
    token: Credential,
    message: { readonly channel: string; readonly text: string; readonly mode?: "wait" | "steer" }
  ) => Effect.Effect<SentMessage, EngineHttpFailed>
  /** `POST /v1/messages/:id/replies {text}` with an agent token. */
  readonly replyInThread: (
    token: Credential,
    message: { readonly threadId: string; readonly text: string }
  ) => Effect.Effect<SentMessage, EngineHttpFailed>
}>() {}

export interface EngineClientOptions {
  /** The engine's base URL, e.g. `http://127.0.0.1:4000` (a trailing `/` is ignored). */
  readonly baseUrl: string
  /** Per-request limit; default `defaultRequestTimeout`. */
  readonly timeout?: Duration.DurationInput
}

export const defaultRequestTimeout: Duration.DurationInput = "15 seconds"

// Credential-shaped substrings (workspace keys, agent and node tokens, broker API keys).
const secretPattern = /\b(?:rk|at|nt)_(?:live|test)_[A-Za-z0-9_-]+|\bbr_[0-9a-f]{16,}/g

/** Replaces every credential (the given ones, and anything shaped like one) with `<redacted>`. */
export const redactSecrets = (text: string, secrets: ReadonlyArray<Credential> = []): string => {
  let out = text
  for (const secret of secrets) {
    const value = Redacted.value(secret)
    if (value.length > 0) out = out.split(value).join("<redacted>")
  }
  return out.replace(secretPattern, "<redacted>")
}

const ErrorBody = Schema.Union(
  Schema.Struct({ error: Schema.Struct({ code: Schema.String, message: Schema.optional(Schema.String) }) }),
  Schema.Struct({ code: Schema.String, message: Schema.optional(Schema.String) }),
  Schema.Struct({ error: Schema.String })
)

const describeError = (body: unknown): { readonly code?: string; readonly message?: string } => {
  const decoded = Schema.decodeUnknownEither(ErrorBody)(body)
  if (Either.isLeft(decoded)) return {}
  const value = decoded.right
  if ("code" in value) return { code: value.code, ...(value.message === undefined ? {} : { message: value.message }) }
  if (typeof value.error === "string") return { message: value.error }
  return { code: value.error.code, ...(value.error.message === undefined ? {} : { message: value.error.message }) }
}

const WorkspaceCreated = Schema.Struct({ workspace_id: Schema.String, api_key: Schema.String })
const WorkspaceInfo = Schema.Struct({ id: Schema.String, name: Schema.String })
const AgentCreated = Schema.Struct({ id: Schema.String, name: Schema.String, token: Schema.String })
const TokenRotated = Schema.Struct({ id: Schema.optional(Schema.String), name: Schema.String, token: Schema.String })
const AgentDetail = Schema.Struct({ id: Schema.String, name: Schema.String })
// The DM answer carries the id twice (top level and `message`); either is enough.
const MessageCreated = Schema.Union(
  Schema.Struct({ id: Schema.String }),
  Schema.Struct({ message: Schema.Struct({ id: Schema.String }) })
)
const messageId = (data: typeof MessageCreated.Type): string => "id" in data ? data.id : data.message.id

const parseJson = (text: string): unknown => {
  if (text.length === 0) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** The client over `baseUrl`, for callers that have no BrokerConfig yet (workspace bootstrap). */
export const makeWith = (options: EngineClientOptions) =>
  Effect.gen(function*() {
    const base = options.baseUrl.replace(/\/+$/, "")
    const timeout = Duration.decode(options.timeout ?? defaultRequestTimeout)
    const client = yield* HttpClient.HttpClient

    /**
     * Runs one request and returns the envelope's `data` decoded with `schema`. Every failure is an
     * EngineHttpFailed with the status and the engine's error code; nothing secret reaches its text.
     */
    const call = <A, I>(
      operation: string,
      request: HttpClientRequest.HttpClientRequest,
      schema: Schema.Schema<A, I>,
      secrets: ReadonlyArray<Credential>
    ): Effect.Effect<{ readonly value: A; readonly data: Json }, EngineHttpFailed> =>
      Effect.gen(function*() {
        const fail = (fields: { status?: number; code?: string; detail: string }) =>
          new EngineHttpFailed({ operation, ...fields, detail: redactSecrets(fields.detail, secrets) })
        const response = yield* client.execute(HttpClientRequest.prependUrl(request, base)).pipe(
          Effect.mapError((error) => fail({ detail: error.message })),
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => fail({ detail: `no answer within ${Duration.format(timeout)}` })
          })
        )
        const status = response.status
        const text = yield* response.text.pipe(
          Effect.mapError((error) => fail({ status, detail: `reading the body: ${error.message}` }))
        )
        const body = parseJson(text)
        if (status < 200 || status >= 300) {
          const { code, message } = describeError(body)
          return yield* fail({
            status,
            ...(code === undefined ? {} : { code }),
            detail: message ?? (text.length > 0 ? text.slice(0, 500) : `HTTP ${status}`)
          })
        }
        const envelope = body as { readonly ok?: unknown; readonly data?: unknown } | undefined
        if (typeof envelope !== "object" || envelope === null || envelope.ok !== true) {
          return yield* fail({ status, code: "invalid_response", detail: `not an {ok:true} envelope: ${text.slice(0, 200)}` })
        }
        const data = envelope.data === undefined ? null : envelope.data
        const value = yield* Schema.decodeUnknown(schema)(data).pipe(
          Effect.mapError((error) =>
            fail({ status, code: "invalid_response", detail: ParseResult.TreeFormatter.formatErrorSync(error) })
          )
        )
        const json = Schema.is(JsonSchema)(data) ? data : null
        return { value, data: json }
      }).pipe(Effect.withSpan(`EngineClient.${operation}`))

    const post = (path: string, body: unknown, credential?: Credential) => {
      const request = HttpClientRequest.post(path).pipe(HttpClientRequest.bodyUnsafeJson(body))
      return credential === undefined
        ? request
        : HttpClientRequest.bearerToken(request, Redacted.value(credential))
    }
    const get = (path: string, credential: Credential) =>
      HttpClientRequest.get(path).pipe(HttpClientRequest.bearerToken(Redacted.value(credential)))
    const segment = encodeURIComponent

    const createWorkspace = Effect.fn("EngineClient.createWorkspace")(function*(name: string) {
      const { value } = yield* call("createWorkspace", post("/v1/workspaces", { name }), WorkspaceCreated, [])
      return { workspaceId: value.workspace_id, apiKey: Redacted.make(value.api_key) } satisfies CreatedWorkspace
    })

    const getWorkspace = Effect.fn("EngineClient.getWorkspace")(function*(key: Credential) {
      const { value } = yield* call("getWorkspace", get("/v1/workspace", key), WorkspaceInfo, [key])
      return { id: value.id, name: value.name }
    })

    const createAgent = Effect.fn("EngineClient.createAgent")(
      function*(key: Credential, agent: { readonly name: string; readonly type: "agent" | "human" }) {
        const { value } = yield* call(
          "createAgent",
          post("/v1/agents", { name: agent.name, type: agent.type }, key),
          AgentCreated,
          [key]
        )
        return { id: value.id, name: value.name, token: Redacted.make(value.token) } satisfies CreatedAgent
      }
    )

    const rotateAgentToken = Effect.fn("EngineClient.rotateAgentToken")(function*(key: Credential, name: string) {
      const { value } = yield* call(
        "rotateAgentToken",
        post(`/v1/agents/${segment(name)}/rotate-token`, {}, key),
        TokenRotated,
        [key]
      )
      const token = Redacted.make(value.token)
      // v5 answers `{name, token}` only: the id comes from the agent's detail.
      const id = value.id !== undefined
        ? value.id
        : (yield* call("getAgent", get(`/v1/agents/${segment(name)}`, key), AgentDetail, [key, token])).value.id
      return { id, name: value.name, token } satisfies CreatedAgent
    })

    const bindAgentToNode = Effect.fn("EngineClient.bindAgentToNode")(
      function*(key: Credential, nodeName: string, agentName: string) {
        yield* call(
          "bindAgentToNode",
          post(`/v1/nodes/${segment(nodeName)}/agents`, { agent_name: agentName }, key),
          Schema.Unknown,
          [key]
        )
      }
    )

    const sendDm = Effect.fn("EngineClient.sendDm")(
      function*(token: Credential, message: { readonly to: string; readonly text: string; readonly mode?: "wait" | "steer" }) {
        const body = { to: message.to, text: message.text, ...(message.mode === undefined ? {} : { mode: message.mode }) }
        const { value, data } = yield* call("sendDm", post("/v1/dm", body, token), MessageCreated, [token])
        return { id: messageId(value), data } satisfies SentMessage
      }
    )

    const postToChannel = Effect.fn("EngineClient.postToChannel")(
      function*(
        token: Credential,
        message: { readonly channel: string; readonly text: string; readonly mode?: "wait" | "steer" }
      ) {
        const channel = message.channel.replace(/^#/, "")
        const body = { text: message.text, ...(message.mode === undefined ? {} : { mode: message.mode }) }
        const { value, data } = yield* call(
          "postToChannel",
          post(`/v1/channels/${segment(channel)}/messages`, body, token),
          MessageCreated,
          [token]
        )
        return { id: messageId(value), data } satisfies SentMessage
      }
    )

    const replyInThread = Effect.fn("EngineClient.replyInThread")(
      function*(token: Credential, message: { readonly threadId: string; readonly text: string }) {
        const { value, data } = yield* call(
          "replyInThread",
          post(`/v1/messages/${segment(message.threadId)}/replies`, { text: message.text }, token),
          MessageCreated,
          [token]
        )
        return { id: messageId(value), data } satisfies SentMessage
      }
    )

    return EngineClient.of({
      createWorkspace,
      getWorkspace,
      createAgent,
      rotateAgentToken,
      bindAgentToNode,
      sendDm,
      postToChannel,
      replyInThread
    })
  })

/** The client over `BrokerConfig.baseUrl`. */
export const make = Effect.gen(function*() {
  const config = yield* BrokerConfig
  return yield* makeWith({ baseUrl: config.baseUrl })
})

/** Needs an `HttpClient` (e.g. `FetchHttpClient.layer`, see `layerFetch`). */
export const layer: Layer.Layer<EngineClient, never, BrokerConfig | HttpClient.HttpClient> = Layer.effect(
  EngineClient,
  make
)

/** `layer` over the global `fetch`. */
export const layerFetch: Layer.Layer<EngineClient, never, BrokerConfig> = layer.pipe(Layer.provide(FetchHttpClient.layer))
