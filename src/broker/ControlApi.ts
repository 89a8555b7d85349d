import * as HttpRouter from "@effect/platform/HttpRouter"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import { createServer } from "node:http"
import type { AgentRegistry } from "./AgentRegistry.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { AgentTools } from "../mcp/AgentTools.js"
import { agentToolRoutesIfPresent } from "../mcp/routes.js"
import { ListenFailed } from "./errors.js"
import type { EventLog } from "./EventLog.js"
import { agentRoutes, type TerminalSizes } from "./http/agentRoutes.js"
import { requireApiKey } from "./http/auth.js"
import { limitBodySize } from "./http/bodyLimit.js"
import * as Connections from "./http/Connections.js"
import { brokerRoutes } from "./http/brokerRoutes.js"
import { deliveryRoutesIfPresent } from "./http/deliveryRoutes.js"
import { eventsRoute } from "./http/eventsRoute.js"
import { fleetRoutes } from "./http/fleetRoute.js"
import { observabilityRoutes } from "./http/observabilityRoutes.js"
import { channelRoutes } from "./http/channelRoutes.js"
import { compatRoutes } from "./http/compatRoutes.js"
import { sessionRoutes } from "./http/sessionRoutes.js"
import { holdRoutes } from "./http/holdRoutes.js"
import { inputStreamRoutes } from "./http/inputStreamRoute.js"
import { failure } from "./http/responses.js"
import type { Shutdown } from "./http/Shutdown.js"
import type { NodeControl } from "./NodeControl.js"
import type { TokenStore } from "./TokenStore.js"

// The broker's local control API (HTTP + the `/ws` event stream), upstream-compatible for the
// routes real clients use (see shared/reference/control-api.md). Every route but `/health` needs
// the broker API key. It listens for the lifetime of the layer.

export class ControlApi extends Context.Tag("relay-broker/ControlApi")<ControlApi, {
  /** `http://<bind>:<port>`, as printed on the listening line and written to connection.json. */
  readonly url: string
  readonly host: string
  /** The bound port (the real one when the configured port is 0). */
  readonly port: number
}>() {}

/** The services the routes use. Deliveries and DeadLetters are read when present, not required. */
export type ControlApiDeps = BrokerConfig | AgentRegistry | EventLog | NodeControl | TokenStore | Shutdown

/** All the API's routes, unauthenticated (the key check wraps the whole app). */
export const router = (state: {
  readonly startedAt: number
  readonly sizes: TerminalSizes
  readonly eventSockets: Ref.Ref<number>
}) =>
  HttpRouter.concatAll(
    brokerRoutes({ startedAt: state.startedAt, eventSockets: state.eventSockets }),
    agentRoutes(state.sizes),
    sessionRoutes,
    channelRoutes,
    observabilityRoutes(state.startedAt),
    compatRoutes,
    fleetRoutes,
    HttpRouter.empty.pipe(HttpRouter.get("/ws", eventsRoute(state.eventSockets))),
    inputStreamRoutes,
    holdRoutes,
    // Dead letters, redelivery, node-delivery diagnostics and /api/send; each answers 503 when
    // the delivery services are not composed in.
    deliveryRoutesIfPresent,
    // /mcp, the agents' own routes and /api/agent-result; 503 without the agent tools.
    agentToolRoutesIfPresent
  )

export const formatUrl = (host: string, port: number): string =>
  host.includes(":") ? `http://[${host}]:${port}` : `http://${host}:${port}`

const listenFailed = (address: string, cause: unknown) => {
  const error = cause as { readonly code?: unknown; readonly message?: unknown } | undefined
  const detail = error?.code === "EADDRINUSE"
    ? "the address is already in use"
    : error?.code === "EADDRNOTAVAIL"
    ? "the address is not available on this machine"
    : error?.code === "EACCES"
    ? "permission denied"
    : typeof error?.message === "string"
    ? error.message
    : String(cause)
  return new ListenFailed({ address, detail })
}

/** How long open connections get to close cleanly when the API stops, before they are cut. */
const stopGraceMillis = 250

export const make = Effect.gen(function*() {
  const config = yield* BrokerConfig
  const context = yield* Effect.context<ControlApiDeps>()
  const state = {
    startedAt: yield* Clock.currentTimeMillis,
    sizes: yield* Ref.make<ReadonlyMap<string, { readonly rows: number; readonly cols: number }>>(new Map()),
    eventSockets: yield* Ref.make(0)
  }
  const routes = yield* HttpRouter.toHttpApp(router(state))
  // The server lives in its own scope, closed after every connection has been ended (see Connections).
  const serverScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
  const httpServer = createServer()
  const connections = yield* Connections.track(httpServer)
  const app = routes.pipe(
    Effect.catchTag("RouteNotFound", () =>
      Effect.succeed(failure(404, "not_found", "no such route"))),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause)
        : Effect.logError("control API request failed", Cause.pretty(cause)).pipe(
          // A defect answers the same request the same way again: not retryable.
          Effect.as(failure(500, "internal_error", "internal error", { retryable: false }))
        )
    ),
    limitBodySize(),
    requireApiKey(config.brokerApiKey),
    Effect.provide(context),
    Effect.provideService(Connections.ApiClosing, { closing: connections.closing }),
    Effect.annotateLogs({ module: "ControlApi" })
  )
  const address = `${config.apiBind}:${config.apiPort}`
  const server = yield* NodeHttpServer.make(() => httpServer, { host: config.apiBind, port: config.apiPort }).pipe(
    Effect.mapError((error) => listenFailed(address, error.cause)),
    Scope.extend(serverScope)
  )
  yield* server.serve(app).pipe(Scope.extend(serverScope))
  yield* Effect.addFinalizer(() => connections.closeAll(stopGraceMillis))
  const port = server.address._tag === "TcpAddress" ? server.address.port : config.apiPort
  const url = formatUrl(config.apiBind, port)
  // Spawned agents reach /mcp and their routes here.
  yield* Effect.serviceOption(AgentTools).pipe(Effect.flatMap(Option.match({
    onNone: () => Effect.void,
    onSome: (tools) => tools.setApiUrl(url)
  })))
  yield* Effect.logInfo("control API listening").pipe(Effect.annotateLogs({ url }))
  return ControlApi.of({ url, host: config.apiBind, port })
})

/** Listens until the layer's scope closes; fails with ListenFailed when the address cannot be bound. */
export const layer: Layer.Layer<ControlApi, ListenFailed, ControlApiDeps> = Layer.scoped(ControlApi, make)
