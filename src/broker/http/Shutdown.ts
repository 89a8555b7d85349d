import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * A graceful-shutdown request from inside the broker (`POST /api/shutdown`). The program that runs
 * the broker waits on `requested` and then closes its scope, exactly as it does on SIGTERM.
 */
export class Shutdown extends Context.Tag("relay-broker/Shutdown")<Shutdown, {
  readonly request: Effect.Effect<void>
  /** Completes once a shutdown has been requested. */
  readonly requested: Effect.Effect<void>
}>() {}

export const make = Effect.gen(function*() {
  const signal = yield* Deferred.make<void>()
  return Shutdown.of({
    request: Deferred.succeed(signal, undefined).pipe(Effect.asVoid),
    requested: Deferred.await(signal)
  })
})

export const layer: Layer.Layer<Shutdown> = Layer.effect(Shutdown, make)
