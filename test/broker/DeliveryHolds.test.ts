import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Ref } from "effect"
import { DeliveryHolds, type HeldFrame, layerWith } from "../../src/broker/DeliveryHolds.js"
import * as EventLog from "../../src/broker/EventLog.js"

const frame = (seq: number): HeldFrame => ({
  agent: "bob",
  msg_id: `m${seq}`,
  seq,
  mode: "wait",
  payload: { type: "message.created", message: { text: `note ${seq}`, agent_name: "alice" } }
})

const holdsLayer = layerWith({ capacity: 2 })

const setup = Effect.gen(function*() {
  const holds = yield* DeliveryHolds
  const forwarded = yield* Ref.make<ReadonlyArray<number>>([])
  const admit = (seq: number) => holds.admit(frame(seq), Ref.update(forwarded, (list) => [...list, seq]))
  return { holds, forwarded, admit }
})

describe("DeliveryHolds", () => {
  it.scoped("auto_inject forwards at once; manual_flush holds in order, refuses past the bound, never evicts", () =>
    Effect.gen(function*() {
      const { admit, forwarded, holds } = yield* setup
      yield* admit(1)
      assert.deepStrictEqual(yield* Ref.get(forwarded), [1])
      const change = yield* holds.setMode("bob", "manual_flush")
      assert.deepStrictEqual(change, { mode: "manual_flush", previous_mode: "auto_inject", matched: true, flushed: 0 })
      yield* admit(2)
      yield* admit(3)
      yield* admit(4)
      assert.deepStrictEqual(yield* Ref.get(forwarded), [1])
      const pending = yield* holds.pending("bob")
      assert.deepStrictEqual(pending.map((entry) => entry.event_id), ["m2", "m3"])
      assert.strictEqual(pending[0]!.body, "note 2")
      assert.strictEqual(pending[0]!.from, "alice")
      // A flush hands them on in order and resolves once the worker has handled them.
      const flushing = yield* Effect.fork(holds.flush("bob"))
      yield* Effect.yieldNow()
      assert.deepStrictEqual(yield* Ref.get(forwarded), [1, 2, 3])
      yield* holds.settled("bob", "m2")
      yield* holds.settled("bob", "m3")
      assert.strictEqual(yield* Fiber.join(flushing), 2)
      assert.deepStrictEqual(yield* holds.pending("bob"), [])
      assert.strictEqual(yield* holds.mode("bob"), "manual_flush")
    }).pipe(Effect.provide(holdsLayer), Effect.provide(EventLog.layer)))

  it.scoped("leaving manual_flush flushes; expected_mode that does not match changes nothing", () =>
    Effect.gen(function*() {
      const { admit, forwarded, holds } = yield* setup
      yield* holds.setMode("bob", "manual_flush")
      yield* admit(5)
      const refused = yield* holds.setMode("bob", "auto_inject", "auto_inject")
      assert.deepStrictEqual(refused, { mode: "manual_flush", previous_mode: "manual_flush", matched: false, flushed: 0 })
      const leaving = yield* Effect.fork(holds.setMode("bob", "auto_inject", "manual_flush"))
      yield* Effect.yieldNow()
      yield* holds.settled("bob", "m5")
      assert.deepStrictEqual(yield* Fiber.join(leaving), { mode: "auto_inject", previous_mode: "manual_flush", matched: true, flushed: 1 })
      assert.deepStrictEqual(yield* Ref.get(forwarded), [5])
      yield* admit(6)
      assert.deepStrictEqual(yield* Ref.get(forwarded), [5, 6])
    }).pipe(Effect.provide(holdsLayer), Effect.provide(EventLog.layer)))
})
