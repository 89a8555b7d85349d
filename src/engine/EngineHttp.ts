import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { Actions } from "./Actions.js"
import { Dispatcher } from "./Dispatcher.js"
import { EngineConfig } from "./EngineConfig.js"
import { EngineStore } from "./EngineStore.js"
import * as ActionRoutes from "./http/actions.js"
import * as AgentRoutes from "./http/agents.js"
import * as AgentUpdateRoutes from "./http/agentUpdates.js"
import * as ChannelAdminRoutes from "./http/channelAdmin.js"
import * as ChannelRoutes from "./http/channels.js"
import * as MessageDeliveryRoutes from "./http/messageDeliveries.js"
import * as MessageRoutes from "./http/messages.js"
import * as NodeRoutes from "./http/nodes.js"
import * as SearchRoutes from "./http/search.js"
import { errorResponse } from "./http/support.js"
import * as WorkspaceRoutes from "./http/workspaces.js"

export const engineVersion = "5.0.7-embedded"

const maxBodyBytes = 1024 * 1024

/** The `/v1` HTTP API (spec §2) as one HttpApp with its services provided. */
export class EngineHttp extends Context.Tag("relay-broker/engine/EngineHttp")<EngineHttp, {
  readonly app: HttpApp.Default
}>() {}

const health = Effect.succeed(HttpServerResponse.unsafeJson({ ok: true, version: engineVersion, build: "relay-broker" }))

export const router = HttpRouter.empty.pipe(
  HttpRouter.get("/health", health),
  HttpRouter.concat(WorkspaceRoutes.routes),
  HttpRouter.concat(ActionRoutes.routes),
  HttpRouter.concat(AgentRoutes.routes),
  HttpRouter.concat(AgentUpdateRoutes.routes),
  HttpRouter.concat(NodeRoutes.routes),
  HttpRouter.concat(ChannelRoutes.routes),
  HttpRouter.concat(ChannelAdminRoutes.routes),
  HttpRouter.concat(SearchRoutes.routes),
  HttpRouter.concat(MessageRoutes.routes),
  HttpRouter.concat(MessageDeliveryRoutes.routes)
)

/**
 * A body announced larger than the limit is answered 413 at once, and the rest of it is read and
 * discarded so the client gets the answer instead of a reset connection.
 */
const limitBodySize = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const announced = Number(request.headers["content-length"] ?? "0")
    if (!(announced > maxBodyBytes)) return app
    return Effect.sync(() => {
      NodeHttpServerRequest.toIncomingMessage(request).resume()
      return errorResponse(413, "payload_too_large", `the request body is ${announced} bytes; the limit is ${maxBodyBytes}`)
    })
  })

export const make = Effect.gen(function*() {
  const context = yield* Effect.context<EngineStore | Dispatcher | Actions | EngineConfig>()
  const app: HttpApp.Default = limitBodySize(router).pipe(
    Effect.catchTag("RouteNotFound", () => Effect.succeed(errorResponse(404, "not_found", "Route not found"))),
    Effect.catchAllCause(() => Effect.succeed(errorResponse(500, "internal_error", "Internal server error"))),
    HttpServerRequest.withMaxBodySize(Option.some(maxBodyBytes)),
    Effect.provide(context)
  )
  return EngineHttp.of({ app })
})

export const layer: Layer.Layer<EngineHttp, never, EngineStore | Dispatcher | Actions | EngineConfig> = Layer.effect(EngineHttp, make)
