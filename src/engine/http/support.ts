import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { agentByToken, workspaceById, workspaceByKey } from "../directory.js"
import { EngineStore, now } from "../EngineStore.js"
import { badRequest, EngineError, fail, unauthorized } from "../EngineError.js"
import type { AgentRow, WorkspaceRow } from "../rows.js"

// Envelopes, auth guards, body decoding and the per-route wrapper of the /v1 API (spec §1.2, §2.0).

export const ok = (data: unknown, status = 200) => HttpServerResponse.unsafeJson({ ok: true, data }, { status })
export const created = (data: unknown) => ok(data, 201)
export const okBare = () => HttpServerResponse.unsafeJson({ ok: true })
export const noContent = () => HttpServerResponse.empty({ status: 204 })
export const errorResponse = (status: number, code: string, message: string) =>
  HttpServerResponse.unsafeJson({ ok: false, error: { code, message } }, { status })

export interface Caller {
  readonly workspace: WorkspaceRow
  /** Set when the caller used an agent token. */
  readonly agent: AgentRow | undefined
}

export type Guard = "workspace" | "agent" | "any"

const agentSeenDebounceMs = 30_000

/** `Authorization: Bearer <rk_live_…|at_live_…>` per route guard; every failure is a 401 (spec §1.2). */
export const authenticate = (guard: Guard) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const header = request.headers["authorization"]
    if (typeof header !== "string" || !header.startsWith("Bearer ") || header.slice(7).trim() === "") {
      return yield* Effect.fail(unauthorized("Missing or invalid Authorization header"))
    }
    const token = header.slice(7).trim()
    const kind = token.startsWith("rk_live_") ? "workspace"
      : token.startsWith("at_live_") ? "agent"
      : token.startsWith("nt_live_") ? "node"
      : token.startsWith("ot_live_") ? "observer"
      : undefined
    if (kind === undefined) return yield* Effect.fail(unauthorized("Invalid token format"))
    if (kind === "node") return yield* Effect.fail(unauthorized("Node token cannot perform this operation", "node_token_forbidden"))
    if (kind === "observer" || (guard !== "any" && kind !== guard)) {
      return yield* Effect.fail(unauthorized(
        guard === "agent" ? "Agent token required (at_live_...)" : "Workspace key required (rk_live_...)"
      ))
    }
    if (kind === "workspace") {
      const workspace = yield* workspaceByKey(token)
      if (workspace === undefined) return yield* Effect.fail(unauthorized("Invalid API key"))
      return { workspace, agent: undefined } satisfies Caller
    }
    const agent = yield* agentByToken(token)
    const workspace = agent === undefined ? undefined : yield* workspaceById(agent.workspace_id)
    if (agent === undefined || workspace === undefined) {
      return yield* Effect.fail(unauthorized("Invalid agent token", "agent_token_invalid"))
    }
    // Any authenticated agent call refreshes presence (debounced), never routing (spec §2.2).
    const at = yield* now
    if (agent.status !== "active" || agent.last_seen === null || at - agent.last_seen >= agentSeenDebounceMs) {
      const { sql } = yield* EngineStore
      yield* sql`UPDATE agents SET status = 'active', last_seen = ${at} WHERE id = ${agent.id}`
    }
    return { workspace, agent } satisfies Caller
  })

/** The caller's agent, or 403 `agent_token_required` for a workspace key (spec §1.2). */
export const requireCallerAgent = (caller: Caller) =>
  caller.agent === undefined
    ? Effect.fail(fail(403, "agent_token_required", "This operation requires an agent token"))
    : Effect.succeed(caller.agent)

// ---------------------------------------------------------------------------------------------
// bodies

const describeIssue = (issue: ParseResult.ArrayFormatterIssue): string => {
  const path = issue.path.map(String).join(".")
  if (path === "") return "request body must be a JSON object"
  if (issue._tag === "Missing") return `${path} is required`
  if (/^(is|must) /.test(issue.message)) return `${path} ${issue.message}`
  return `${path}: ${issue.message}`
}

/** The JSON body decoded with `schema`: 400 `invalid_json` / `invalid_request` naming the field. */
export const body = <A, I>(schema: Schema.Schema<A, I>) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const text = yield* Effect.mapError(request.text, () => badRequest("Could not read the request body"))
    let json: unknown = {}
    if (text.trim() !== "") {
      try {
        json = JSON.parse(text)
      } catch {
        return yield* Effect.fail(badRequest("Invalid JSON body", "invalid_json"))
      }
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      return yield* Effect.fail(badRequest("request body must be a JSON object"))
    }
    const decoded = Schema.decodeUnknownEither(schema, { errors: "first" })(json)
    if (Either.isRight(decoded)) return decoded.right
    const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
    return yield* Effect.fail(badRequest(issues[0] === undefined ? "invalid request body" : describeIssue(issues[0])))
  })

/** A non-empty string; a failure reads "<field> is required". */
export const Required = Schema.String.pipe(Schema.minLength(1, { message: () => "is required" }))

export const optional = <S extends Schema.Schema.All>(schema: S) => Schema.optional(schema)

// ---------------------------------------------------------------------------------------------
// params and query

export const param = (name: string) =>
  Effect.map(HttpRouter.params, (params) => params[name] ?? "")

export const query = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
  try {
    return new URL(request.url, "http://engine.local").searchParams
  } catch {
    return new URLSearchParams()
  }
})

export const intQuery = (params: URLSearchParams, name: string, fallback: number, max: number) => {
  const raw = params.get(name)
  const value = raw === null ? Number.NaN : Number.parseInt(raw, 10)
  return Number.isFinite(value) && value > 0 ? Math.min(value, max) : fallback
}

// ---------------------------------------------------------------------------------------------
// the route wrapper

/**
 * Runs a route under the engine lock (after the body is read, so a slow client holds nothing) and
 * turns every failure into the error envelope: EngineError as is, anything else a 500.
 */
export const handle = <E, R>(effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    yield* Effect.ignore(request.text)
    const store = yield* EngineStore
    return yield* store.exclusive(effect)
  }).pipe(
    Effect.catchAllCause((cause) => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "Some" && failure.value instanceof EngineError) {
        return Effect.succeed(errorResponse(failure.value.status, failure.value.code, failure.value.message))
      }
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
      return Effect.as(
        Effect.logWarning("engine route failed", Cause.pretty(cause)),
        errorResponse(500, "internal_error", "Internal server error")
      )
    })
  )
