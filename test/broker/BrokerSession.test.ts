import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, TestClock } from "effect"
import * as BrokerSession from "../../src/broker/BrokerSession.js"

// The ephemeral lease of `relay-broker init` (no --persist): 120 s, renewed by POST /api/session/renew.

describe("BrokerSession", () => {
  it.effect("an ephemeral session expires 120 s after its last renewal", () =>
    Effect.gen(function*() {
      const session = yield* BrokerSession.make({ mode: "ephemeral", channels: ["general"] })
      const expiry = yield* Effect.fork(session.expired)
      yield* TestClock.adjust("60 seconds")
      assert.deepStrictEqual(yield* session.renew, { renewed: true, expires_in_secs: 120, persist: false })
      // 119 s after the renewal: still alive.
      yield* TestClock.adjust("119 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.poll(expiry)))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(expiry)
    }))

  it.effect("without renewals the lease runs out after 120 s, not before", () =>
    Effect.gen(function*() {
      const session = yield* BrokerSession.make({ mode: "ephemeral", channels: [] })
      const expiry = yield* Effect.fork(session.expired)
      yield* TestClock.adjust("119 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.poll(expiry)))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(expiry)
    }))

  it.effect("a persistent session never expires; renewing it says persist", () =>
    Effect.gen(function*() {
      const session = yield* BrokerSession.make(BrokerSession.persistent)
      const expiry = yield* Effect.fork(session.expired)
      yield* TestClock.adjust("1 day")
      assert.isTrue(Option.isNone(yield* Fiber.poll(expiry)))
      assert.deepStrictEqual(yield* session.renew, { renewed: true, expires_in_secs: 120, persist: true })
      assert.strictEqual(session.mode, "persist")
    }))
})
