/**
 * The embedded relaycast engine (`relay-broker/engine`): the /v1 HTTP API and the /v1/node/ws node
 * protocol of relaycast v5, persisted in SQLite under a data dir.
 *
 * ```ts
 * const { url } = yield* EmbeddedEngine.start({ dataDir })   // stops when the scope closes
 * ```
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Actions from "./Actions.js"
import * as Dispatcher from "./Dispatcher.js"
import * as EngineConfig from "./EngineConfig.js"
import { EngineStartError } from "./EngineError.js"
import * as EngineHttp from "./EngineHttp.js"
import * as EngineServer from "./EngineServer.js"
import * as EngineStore from "./EngineStore.js"
import * as NodeGateway from "./NodeGateway.js"
import * as NodeSockets from "./NodeSockets.js"
import * as Sweeper from "./Sweeper.js"

export type { EngineOptions } from "./EngineConfig.js"
export { EngineStartError } from "./EngineError.js"
export { EngineAddress } from "./EngineServer.js"
export { Actions, Dispatcher, EngineConfig, EngineHttp, EngineServer, EngineStore, NodeGateway, NodeSockets, Sweeper }

export interface RunningEngine {
  /** `http://<host>:<port>`. */
  readonly url: string
  readonly port: number
}

/** The whole engine as one layer: it listens while the layer is alive; closing it closes SQLite too. */
export const layer = (options: EngineConfig.EngineOptions): Layer.Layer<EngineServer.EngineAddress, EngineStartError> => {
  const config = EngineConfig.layer(options)
  const storage = Layer.mergeAll(EngineStore.layer, NodeSockets.layer).pipe(Layer.provideMerge(config))
  const dispatch = Actions.layer.pipe(Layer.provideMerge(Dispatcher.layer), Layer.provideMerge(storage))
  const services = Layer.mergeAll(NodeGateway.layer, EngineHttp.layer, Sweeper.layer).pipe(Layer.provideMerge(dispatch))
  return EngineServer.layer.pipe(Layer.provide(services))
}

export const EmbeddedEngine = {
  /** Starts the engine in this process; it stops when the scope closes. */
  start: (options: EngineConfig.EngineOptions): Effect.Effect<RunningEngine, EngineStartError, Scope.Scope> =>
    Effect.gen(function*() {
      const context = yield* Layer.build(layer(options))
      const address = Context.get(context, EngineServer.EngineAddress)
      return { url: address.url, port: address.port }
    })
}
