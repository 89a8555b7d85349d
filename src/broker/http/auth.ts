import type * as Headers from "@effect/platform/Headers"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { createHash, timingSafeEqual } from "node:crypto"
import { isAgentToolPath } from "../../mcp/routes.js"
import { pathOf, unauthorized } from "./responses.js"

// The control API's key check: `X-API-Key: <key>` or `Authorization: Bearer <key>`.
// Only `/health` is open, and the agent tools' paths, which check the agent's own token.

const openPaths: ReadonlySet<string> = new Set(["/health"])

const digest = (value: string) => createHash("sha256").update(value).digest()

/** Compares digests so the comparison takes the same time whatever the length of the guess. */
const sameKey = (given: string, expected: string): boolean => timingSafeEqual(digest(given), digest(expected))

export const presentedKey = (headers: Headers.Headers): string | undefined => {
  const apiKey = headers["x-api-key"]
  if (typeof apiKey === "string" && apiKey.trim() !== "") return apiKey.trim()
  const authorization = headers["authorization"]
  const bearer = typeof authorization === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null
  return bearer?.[1]
}

export const isAuthorized = (headers: Headers.Headers, key: Redacted.Redacted<string>): boolean => {
  const given = presentedKey(headers)
  return given !== undefined && sameKey(given, Redacted.value(key))
}

/** Answers 401 (upstream's body) before the app runs, unless the path is open or the key matches. */
export const requireApiKey = (key: Redacted.Redacted<string>) =>
<E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R | HttpServerRequest.HttpServerRequest>
): Effect.Effect<HttpServerResponse.HttpServerResponse, E, R | HttpServerRequest.HttpServerRequest> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    openPaths.has(pathOf(request.url)) || isAgentToolPath(pathOf(request.url)) || isAuthorized(request.headers, key) ? app : Effect.succeed(unauthorized))
