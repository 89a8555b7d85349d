import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"

// How this broker was launched, as upstream's clients see it: `persist` (`relay-broker up`, or
// `init --persist`) runs until it is stopped; `ephemeral` (`init` without --persist, what
// harness-driver's spawn() starts) lives on a lease its owner renews with `POST /api/session/renew`
// and stops once the lease runs out. The default channels (`init --channels`) are joined by every
// agent spawned here.

export type SessionMode = "persist" | "ephemeral"

export interface SessionOptions {
  readonly mode: SessionMode
  /** Channels every spawned agent joins (`--channels general,…`). */
  readonly channels: ReadonlyArray<string>
  /** An ephemeral broker stops when not renewed for this long. Default: upstream's 120 s. */
  readonly lease?: Duration.DurationInput
}

export interface Renewal {
  readonly renewed: true
  readonly expires_in_secs: number
  readonly persist: boolean
}

export class BrokerSession extends Context.Tag("relay-broker/BrokerSession")<BrokerSession, {
  readonly mode: SessionMode
  readonly channels: ReadonlyArray<string>
  /** Pushes the lease's end out by a full lease (a no-op for a persistent broker). */
  readonly renew: Effect.Effect<Renewal>
  /** Completes when an ephemeral broker's lease has run out; never for a persistent one. */
  readonly expired: Effect.Effect<void>
}>() {}

export const defaultLease: Duration.DurationInput = "120 seconds"

export const persistent: SessionOptions = { mode: "persist", channels: [] }

export const make = (options: SessionOptions) =>
  Effect.gen(function*() {
    const leaseMillis = Duration.toMillis(Duration.decode(options.lease ?? defaultLease))
    const deadline = yield* Ref.make((yield* Clock.currentTimeMillis) + leaseMillis)
    const persist = options.mode === "persist"

    const renew = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (!persist) yield* Ref.set(deadline, now + leaseMillis)
      return { renewed: true, expires_in_secs: Math.round(leaseMillis / 1000), persist } satisfies Renewal
    })

    // Sleeps until the current deadline, then checks again: a renewal meanwhile moved it.
    const expired: Effect.Effect<void> = persist ? Effect.never : Effect.gen(function*() {
      while (true) {
        const remaining = (yield* Ref.get(deadline)) - (yield* Clock.currentTimeMillis)
        if (remaining <= 0) {
          yield* Effect.logWarning(
            `the session lease was not renewed for ${Math.round(leaseMillis / 1000)} s (ephemeral broker): stopping`
          )
          return
        }
        yield* Effect.sleep(Duration.millis(remaining))
      }
    })

    return BrokerSession.of({ mode: options.mode, channels: options.channels, renew, expired })
  })

export const layer = (options: SessionOptions = persistent): Layer.Layer<BrokerSession> =>
  Layer.effect(BrokerSession, make(options))
