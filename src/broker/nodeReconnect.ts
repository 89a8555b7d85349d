import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type { MintFailed, Unauthorized } from "./errors.js"
import type { NodeStatus } from "./NodeControl.js"
import type { SessionEnded } from "./nodeSocket.js"
import type { NodeIdentity, TokenStore } from "./TokenStore.js"

// NodeControl's reconnect loop: one session after another, on the reconnect schedule (reset after a
// healthy session), re-minting the node token when the engine refuses it (at most `maxRemints` times
// in a row), keeping `status` up to date.

export interface ReconnectServices {
  readonly tokens: TokenStore["Type"]
  readonly status: Ref.Ref<NodeStatus>
  readonly identityRef: Ref.Ref<Option.Option<NodeIdentity>>
  readonly setLastError: (message: string) => Effect.Effect<void>
  readonly schedule: Schedule.Schedule<unknown, unknown>
  /** A session that lasted this long (ms) resets the schedule. */
  readonly healthyAfter: number
  readonly maxRemints: number
  /** One connection until it ends; sets `connectedAt` once connected. Always fails. */
  readonly session: (
    identity: NodeIdentity,
    token: Redacted.Redacted<string>,
    connectedAt: Ref.Ref<Option.Option<number>>
  ) => Effect.Effect<never, SessionEnded | Unauthorized>
}

export const makeReconnectLoop = (services: ReconnectServices) =>
  Effect.gen(function*() {
    const { healthyAfter, identityRef, maxRemints, setLastError, status, tokens } = services
    const consecutiveUnauthorized = yield* Ref.make(0)

    const onUnauthorized = (error: Unauthorized) =>
      Effect.gen(function*() {
        const count = yield* Ref.updateAndGet(consecutiveUnauthorized, (n) => n + 1)
        if (count > maxRemints) {
          if (count === maxRemints + 1) {
            yield* Effect.logError(
              `NODE TOKEN REJECTED ${count} times in a row (${error.detail}); re-minted ${maxRemints} times without success. ` +
                "No more re-minting: reconnecting with backoff. Check the workspace key and the engine."
            )
          }
          return
        }
        yield* Effect.logWarning(`the engine refused the node token (${count}/${maxRemints}); minting a new one`)
        yield* tokens.remint.pipe(
          Effect.tap(() => Ref.update(status, (s) => ({ ...s, remints: s.remints + 1, tokenPresent: true }))),
          Effect.catchAll((mint) => Effect.logError(`re-minting the node token failed: ${mint.message}`))
        )
      })

    const attempt = (connectedAt: Ref.Ref<Option.Option<number>>): Effect.Effect<never, SessionEnded | Unauthorized | MintFailed> =>
      Effect.gen(function*() {
        const identity = yield* tokens.identity
        yield* Ref.set(identityRef, Option.some(identity))
        yield* Ref.update(status, (s) => ({ ...s, nodeId: identity.nodeId, nodeName: identity.nodeName }))
        const token = yield* tokens.token.pipe(
          Effect.tapError(() => Ref.update(status, (s) => ({ ...s, tokenPresent: false })))
        )
        yield* Ref.update(status, (s) => ({ ...s, tokenPresent: true }))
        return yield* services.session(identity, token, connectedAt)
      })

    return Effect.gen(function*() {
      const driver = yield* Schedule.driver(services.schedule)
      while (true) {
        const connectedAt = yield* Ref.make(Option.none<number>())
        const error = yield* Effect.flip(attempt(connectedAt))
        const previous = (yield* Ref.get(status)).lastError
        yield* setLastError(error.message)
        const failedAt = yield* Clock.currentTimeMillis
        yield* Ref.update(status, (s) => s.since === null ? { ...s, since: failedAt } : s)
        const started = yield* Ref.get(connectedAt)
        if (Option.isSome(started)) yield* Ref.set(consecutiveUnauthorized, 0)
        switch (error._tag) {
          case "Unauthorized":
            yield* onUnauthorized(error)
            break
          case "MintFailed":
            // No token: keep running (health shows it) and try again on the schedule.
            if (previous !== error.message) yield* Effect.logError(`NO NODE TOKEN: ${error.message}; realtime delivery is down, retrying`)
            break
          case "SessionEnded":
            yield* (Option.isSome(started) ? Effect.logWarning : Effect.logInfo)(`node control: ${error.detail}; reconnecting`)
            break
        }
        if (Option.isSome(started) && (yield* Clock.currentTimeMillis) - started.value >= healthyAfter) {
          yield* driver.reset
        }
        yield* Ref.update(status, (s) => ({ ...s, reconnects: s.reconnects + 1 }))
        yield* driver.next(error).pipe(Effect.ignore)
      }
    }).pipe(Effect.annotateLogs({ module: "NodeControl" }))
  })
