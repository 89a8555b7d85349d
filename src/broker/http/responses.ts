import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { engineStatusMayPass } from "../retryable.js"

// Response helpers for the control API. Error bodies carry both of upstream's envelopes at once:
// the legacy `{success:false, error}` and the structured `{code, message}`, so either kind of client
// reads them.

export const json = (body: unknown, status = 200): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(body, { status })

export const failure = (
  status: number,
  code: string,
  message: string,
  extra: { readonly [field: string]: unknown } = {}
): HttpServerResponse.HttpServerResponse =>
  json({
    success: false,
    ...extra,
    error: message,
    code,
    message,
    // True only where the same request can succeed later; a caller may say so itself.
    retryable: typeof extra["retryable"] === "boolean" ? extra["retryable"] : retryableStatus(status)
  }, status)

/** A server-side failure may pass; 501 (not implemented) never does, whatever the caller waits. */
export const retryableStatus = (status: number): boolean => status >= 500 && status !== 501

/**
 * An engine call's failure as the daemon answers it: the status for the daemon's caller and whether
 * the same request can succeed later. Unreachable (no status), timeouts, 429 and 5xx may pass; what
 * the engine refused (4xx) and 501 stay so. 404, 409, 413, 422 and 429 keep their status.
 */
export const engineFailureStatus = (status: number | undefined): { readonly status: number; readonly retryable: boolean } => {
  const retryable = engineStatusMayPass(status)
  if (status === undefined || status === 0) return { status: 502, retryable }
  if (status === 408) return { status: 504, retryable }
  if (status === 404 || status === 409 || status === 413 || status === 422 || status === 429) return { status, retryable }
  return { status: status < 500 ? 400 : 502, retryable }
}

/** Upstream's exact 401 body. */
export const unauthorized: HttpServerResponse.HttpServerResponse = json({
  error: { code: "unauthorized", message: "Missing or invalid API key", retryable: false, statusCode: 401 }
}, 401)

export const agentNotFound = (agent: string): HttpServerResponse.HttpServerResponse =>
  failure(404, "agent_not_found", `unknown worker '${agent}'`, { name: agent })

/** A request the API cannot accept; answered with 400 and `message`, which names the offending field. */
export class BadRequest extends Data.TaggedError("BadRequest")<{ readonly message: string }> {}

export const badRequest = (error: BadRequest): HttpServerResponse.HttpServerResponse =>
  failure(400, "invalid_request", error.message)

const describeParseError = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .map((issue) => `${issue.path.length === 0 ? "body" : issue.path.join(".")}: ${issue.message}`)
    .join("; ")

/** The JSON body decoded with `schema`; a non-JSON body or a bad field is a BadRequest naming it. */
export const decodeBody = <A, I>(schema: Schema.Schema<A, I>) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const text = yield* request.text.pipe(
      Effect.mapError(() => new BadRequest({ message: "could not read the request body" }))
    )
    let body: unknown
    try {
      body = text.trim() === "" ? {} : JSON.parse(text)
    } catch {
      return yield* new BadRequest({ message: "the request body is not valid JSON" })
    }
    return yield* Schema.decodeUnknown(schema, { errors: "all" })(body).pipe(
      Effect.mapError((error) => new BadRequest({ message: `invalid request body: ${describeParseError(error)}` }))
    )
  })

/** The request's path, without its query string. */
export const pathOf = (url: string): string => {
  const query = url.indexOf("?")
  return query === -1 ? url : url.slice(0, query)
}

/** A query parameter of the request, if present. */
export const queryParam = (url: string, name: string): string | undefined =>
  new URL(url, "http://localhost").searchParams.get(name) ?? undefined
