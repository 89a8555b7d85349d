import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { EngineConfig } from "./EngineConfig.js"
import { EngineStartError } from "./EngineError.js"
import { EngineHttp } from "./EngineHttp.js"
import { NodeGateway } from "./NodeGateway.js"

/** Where the running engine listens. */
export class EngineAddress extends Context.Tag("relay-broker/engine/EngineAddress")<EngineAddress, {
  readonly url: string
  readonly host: string
  readonly port: number
}>() {}

/**
 * One Node HTTP server: requests go to the /v1 HttpApp (through NodeHttpServer.makeHandler),
 * upgrades to the NodeGateway, which answers a bad node token with a plain HTTP 401.
 */
export const make = Effect.gen(function*() {
  const config = yield* EngineConfig
  const http = yield* EngineHttp
  const gateway = yield* NodeGateway
  const handler = yield* NodeHttpServer.makeHandler(http.app)
  const server = yield* Effect.acquireRelease(
    // A long keep-alive: the client side (undici: 4 s) always closes an idle connection first, so a
    // request never races the server's close of a reused socket (ECONNRESET).
    Effect.sync(() => createServer({ keepAliveTimeout: 65_000 })),
    (server) =>
      Effect.zipRight(
        gateway.closeAll,
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
      )
  )
  server.on("request", handler)
  server.on("upgrade", gateway.handleUpgrade)
  yield* Effect.async<void, EngineStartError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(new EngineStartError({ reason: "Listen", detail: `cannot listen on ${config.host}:${config.port}: ${cause.message}`, cause })))
    server.once("error", onError)
    server.listen({ port: config.port, host: config.host }, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })
  const { port } = server.address() as AddressInfo
  const urlHost = config.host.includes(":") ? `[${config.host}]` : config.host
  return EngineAddress.of({ url: `http://${urlHost}:${port}`, host: config.host, port })
})

export const layer: Layer.Layer<EngineAddress, EngineStartError, EngineConfig | EngineHttp | NodeGateway> =
  Layer.scoped(EngineAddress, make)
