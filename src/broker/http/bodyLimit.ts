import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import { failure } from "./responses.js"

/** The largest request body the control API reads (the engine's own limit is the same). */
export const maxBodyBytes = 1024 * 1024

/**
 * A body announced larger than `maxBytes` is answered 413 `payload_too_large` (not retryable: the
 * same request never fits) before any route runs, and the rest of it is read and discarded so the
 * client gets the answer instead of a reset connection.
 */
export const limitBodySize = (maxBytes: number = maxBodyBytes) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const announced = Number(request.headers["content-length"] ?? "0")
    if (!(announced > maxBytes)) return app
    return Effect.sync(() => {
      NodeHttpServerRequest.toIncomingMessage(request).resume()
      return failure(413, "payload_too_large", `the request body is ${announced} bytes; the limit is ${maxBytes}`, {
        retryable: false
      })
    })
  })
