import { assert, describe, it } from "@effect/vitest"
import { Effect, Queue, Ref, TestClock } from "effect"
import { PersistFailed } from "../../src/broker/errors.js"
import { type BrokerEvent, EventLog } from "../../src/broker/EventLog.js"
import * as DeliveryBook from "../../src/broker/DeliveryBook.js"
import { deliver, eventually, HarnessTag, noneLeft, takeAck, testLayer } from "./deliveriesFakes.js"

// The `/ws` events upstream clients wait for (control-api §3.4): delivery_ack once the ack is
// sent, delivery_failed / message_delivery_failed when a message cannot reach its agent, and
// delivery_dropped when not even its dead letter could be kept.

const eventsOf = (kind: string) =>
  Effect.flatMap(EventLog, (log) => Effect.map(log.recent, (events) => events.filter((event) => event.kind === kind)))

const fields = (event: BrokerEvent | undefined, ...names: ReadonlyArray<string>) => names.map((name) => event?.[name])

describe("delivery events on /ws", () => {
  it.scoped("delivery_ack {name, delivery_id, event_id} follows the ack of an injected message, not a dead-lettered one", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* Queue.offer(harness.frames, deliver("bob", 2, { type: "weird" }))
      yield* takeAck(harness)
      yield* takeAck(harness)
      const acks = yield* eventsOf("delivery_ack")
      assert.strictEqual(acks.length, 1)
      assert.deepStrictEqual(fields(acks[0], "name", "delivery_id", "event_id", "frame_seq"), ["bob", "del_bob_1", "msg_bob_1", 1])
      const kinds = (yield* Effect.flatMap(EventLog, (log) => log.recent)).map((event) => event.kind)
      assert.isTrue(kinds.indexOf("delivery_injected") < kinds.indexOf("delivery_ack"))
    }).pipe(Effect.provide(testLayer())))

  it.scoped("delivery_ack waits while the cursor cannot be saved, and comes with the ack once it is", () => {
    const broken = Ref.unsafeMake(true)
    const storage: DeliveryBook.BookStorage = {
      ...DeliveryBook.memoryStorage,
      write: () =>
        Effect.flatMap(Ref.get(broken), (failing) =>
          failing ? Effect.fail(new PersistFailed({ path: "cursors/agt_bob.json", detail: "disk full" })) : Effect.void)
    }
    return Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* eventually(eventsOf("delivery_injected"), (events) => events.length === 1, "seq 1 injected")
      yield* TestClock.adjust("1 second")
      assert.isTrue(yield* noneLeft(harness.acks))
      assert.deepStrictEqual(yield* eventsOf("delivery_ack"), [])
      yield* Ref.set(broken, false)
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 1 })
      const acks = yield* eventually(eventsOf("delivery_ack"), (events) => events.length === 1, "delivery_ack")
      assert.deepStrictEqual(fields(acks[0], "name", "event_id"), ["bob", "msg_bob_1"])
    }).pipe(Effect.provide(testLayer(undefined, storage)))
  })

  it.scoped("a recipient that is gone: message_delivery_failed {name, event_id, from, to, attempts, lastError}", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* Queue.offer(harness.frames, deliver("late", 1))
      yield* TestClock.adjust("10 seconds")
      yield* takeAck(harness)
      const [failed] = yield* eventsOf("message_delivery_failed")
      assert.deepStrictEqual(
        fields(failed, "name", "delivery_id", "event_id", "from", "to"),
        ["late", "del_late_1", "msg_late_1", "alice", "late"]
      )
      assert.isTrue(typeof failed?.["attempts"] === "number" && failed["attempts"] >= 1)
      assert.include(String(failed?.["lastError"]), "late")
      assert.deepStrictEqual(yield* eventsOf("delivery_ack"), [])
      assert.deepStrictEqual(yield* eventsOf("delivery_dropped"), [])
    }).pipe(Effect.provide(testLayer())))

  it.scoped("an injection that fails for good: delivery_failed with the reason and the attempts", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob", { failures: 6 })
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* TestClock.adjust("10 seconds")
      yield* takeAck(harness)
      const [failed] = yield* eventsOf("delivery_failed")
      assert.deepStrictEqual(fields(failed, "name", "delivery_id", "event_id", "attempts"), ["bob", "del_bob_1", "msg_bob_1", 6])
      assert.isString(failed?.["reason"])
      assert.deepStrictEqual(yield* eventsOf("message_delivery_failed"), [])
    }).pipe(Effect.provide(testLayer({ injectRetries: 5 }))))

  it.scoped("a dead letter that cannot be stored is given up: delivery_dropped {name, count, reason}", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1, { type: "weird" }))
      yield* takeAck(harness)
      const [dropped] = yield* eventsOf("delivery_dropped")
      assert.deepStrictEqual(fields(dropped, "name", "count"), ["bob", 1])
      assert.include(String(dropped?.["reason"]), "unsupported_type")
    }).pipe(Effect.provide(testLayer(undefined, DeliveryBook.memoryStorage, (book) => book, (letters) => ({
      ...letters,
      add: () => Effect.fail(new PersistFailed({ path: "dead-letters.json", detail: "disk full" }))
    })))))
})
