import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import * as EventLog from "../../src/broker/EventLog.js"

// The `/ws` event log: a bounded replay buffer, `replay_gap` for a `sinceSeq` older than it, and a
// subscription that misses nothing between the replay and the live tail.

const publishMany = (log: EventLog.EventLog["Type"], count: number) =>
  Effect.forEach(Array.from({ length: count }, (_, i) => i + 1), (n) => log.publish("agent_spawned", { n }), { discard: true })

/** The next `count` events; a subscription that yields fewer fails the test instead of hanging it. */
const take = (subscription: EventLog.EventSubscription, count: number) =>
  Stream.runCollect(Stream.take(subscription.events, count)).pipe(
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`fewer than ${count} events`) }),
    Effect.orDie,
    Effect.map(Chunk.toReadonlyArray)
  )

describe("EventLog", () => {
  it.scopedLive("keeps the newest replayCapacity events; a too-old sinceSeq gets replay_gap with what was dropped, then the buffer", () =>
    Effect.gen(function*() {
      const log = yield* EventLog.EventLog
      const total = EventLog.replayCapacity + 250
      yield* publishMany(log, total)
      const recent = yield* log.recent
      assert.strictEqual(recent.length, EventLog.replayCapacity)
      assert.deepStrictEqual([recent[0]?.seq, recent.at(-1)?.seq], [251, total])

      const subscription = yield* log.subscribe(100)
      const [gap, first, ...rest] = yield* take(subscription, EventLog.replayCapacity + 1)
      assert.deepStrictEqual(gap, {
        kind: "replay_gap",
        requestedSinceSeq: 100,
        oldestAvailable: 251,
        droppedCount: 150
      })
      assert.strictEqual(first?.seq, 251)
      assert.strictEqual(rest.at(-1)?.seq, total)
    }).pipe(Effect.provide(EventLog.layer)))

  it.scopedLive("a sinceSeq inside the buffer replays exactly what came after it, without a gap, then the live tail", () =>
    Effect.gen(function*() {
      const log = yield* EventLog.EventLog
      yield* publishMany(log, 10)
      const subscription = yield* log.subscribe(7)
      yield* log.publish("agent_released", { n: 11 })
      const events = yield* take(subscription, 4)
      assert.deepStrictEqual(events.map((event) => [event.kind, event.seq]), [
        ["agent_spawned", 8],
        ["agent_spawned", 9],
        ["agent_spawned", 10],
        ["agent_released", 11]
      ])
    }).pipe(Effect.provide(EventLog.layer)))

  it.scopedLive("the oldest buffered seq itself is no gap; ephemeral kinds are broadcast without a seq and never replayed", () =>
    Effect.gen(function*() {
      const log = yield* EventLog.EventLog
      yield* publishMany(log, EventLog.replayCapacity + 1)
      // Events 2.. are buffered: since 1 asks for exactly them.
      const [first] = yield* take(yield* log.subscribe(1), 1)
      assert.deepStrictEqual([first?.kind, first?.seq], ["agent_spawned", 2])
      const live = yield* log.subscribe()
      yield* log.publish("worker_stream", { chunk: "hi" })
      yield* log.publish("agent_exit", { n: 0 })
      const [stream, exit] = yield* take(live, 2)
      assert.deepStrictEqual([stream?.kind, stream?.seq], ["worker_stream", undefined])
      assert.deepStrictEqual([exit?.kind, exit?.seq], ["agent_exit", EventLog.replayCapacity + 2])
      assert.isFalse((yield* log.recent).some((event) => event.kind === "worker_stream"))
    }).pipe(Effect.provide(EventLog.layer)))
})
