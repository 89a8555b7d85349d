import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Option, Queue, Ref, TestClock } from "effect"
import { DeadLetters } from "../../src/broker/DeadLetters.js"
import { Deliveries } from "../../src/broker/Deliveries.js"
import { DeliveryBook } from "../../src/broker/DeliveryBook.js"
import { EventLog } from "../../src/broker/EventLog.js"
import type { Deliver } from "../../src/wire/frames.js"
import { deliver, eventually, type Harness, HarnessTag, noneLeft, takeAck, testLayer } from "./deliveriesFakes.js"

const injectedTexts = Effect.gen(function*() {
  const harness = yield* HarnessTag
  return (yield* Ref.get(harness.injections)).map((injection) => injection.text)
})

const deadLetterReasons = Effect.map(
  Effect.flatMap(DeadLetters, (letters) => letters.list),
  (entries) => entries.map((entry) => entry.reason)
)

const reportFor = (agent: string) =>
  Effect.flatMap(Deliveries, (deliveries) =>
    Effect.map(deliveries.report, (reports) => reports.find((report) => report.agent === agent)))

/** bob, with seq 1 delivered and acked. */
const bobPastSeq1 = Effect.gen(function*() {
  const harness = yield* HarnessTag
  yield* harness.addAgent("bob")
  yield* Queue.offer(harness.frames, deliver("bob", 1))
  yield* takeAck(harness)
  return harness
})

/** Offers the frames one after another, as NodeControl would. */
const offerFrames = (harness: Harness, ...frames: ReadonlyArray<Deliver>) =>
  Effect.forEach(frames, (frame) => Queue.offer(harness.frames, frame), { discard: true })

/** The `up_to_seq` of the next `count` acks, in order. */
const ackedSeqs = (harness: Harness, count: number) =>
  Effect.map(Effect.all(Array.from({ length: count }, () => takeAck(harness))), (acks) => acks.map((ack) => ack.up_to_seq))

describe("Deliveries pipeline", () => {
  it.scoped("injects a message, then persists the cursor, then acks", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 1 })
      assert.deepStrictEqual(yield* Ref.get(harness.steps), ["inject:bob", "persist:bob:1", "ack:bob:1"])
      const [injection] = yield* Ref.get(harness.injections)
      assert.deepStrictEqual(injection?.mode, { input: "type", steer: false, delivery: { deliveryId: "del_bob_1", eventId: "msg_bob_1" } })
      // The first delivery to an agent session carries the reminder, then the relay line.
      assert.isTrue(injection?.text.startsWith("<system-reminder>\n"))
      assert.isTrue(injection?.text.endsWith("\nRelay message from alice [ws_test / msg_bob_1]: message 1"))
      const book = yield* DeliveryBook
      assert.strictEqual(Option.map(yield* book.get("agt_bob"), (cursor) => cursor.upToSeq).pipe(Option.getOrNull), 1)
    }).pipe(Effect.provide(testLayer())))

  it.scoped("later deliveries have no reminder; steer and the agent's input mode reach the terminal", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("cody", { injectMode: "paste", cli: "claude" })
      yield* Queue.offer(harness.frames, deliver("cody", 1))
      yield* Queue.offer(harness.frames, deliver("cody", 2, {
        type: "message.created",
        data: { text: "look", agent_name: "alice", channel_name: "dev", thread_id: "thr_1" }
      }, { mode: "steer" }))
      yield* takeAck(harness)
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "cody", up_to_seq: 2 })
      const injections = yield* Ref.get(harness.injections)
      assert.deepStrictEqual(injections[1]?.mode, {
        input: "paste",
        steer: true,
        delivery: { deliveryId: "del_cody_2", eventId: "msg_cody_2" }
      })
      assert.strictEqual(
        injections[1]?.text,
        "Relay message from alice in #dev (reply in thread thr_1) [ws_test / msg_cody_2]: look"
      )
    }).pipe(Effect.provide(testLayer())))

  it.scoped("acks duplicates and stale frames at the cursor without injecting them", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* offerFrames(
        harness,
        deliver("bob", 1),
        deliver("bob", 2),
        deliver("bob", 2),
        deliver("bob", 1, undefined, { msg_id: "other" })
      )
      assert.deepStrictEqual(yield* ackedSeqs(harness, 4), [1, 2, 2, 2])
      assert.strictEqual((yield* injectedTexts).length, 2)
      const report = yield* reportFor("bob")
      assert.strictEqual(report?.counts.duplicate, 1)
      assert.strictEqual(report?.counts.stale, 1)
      assert.strictEqual(report?.counts.injected, 2)
      assert.strictEqual(report?.cursor, 2)
      assert.deepStrictEqual(report?.last_ack?.up_to_seq, 2)
    }).pipe(Effect.provide(testLayer())))

  it.scoped("holds a frame behind a gap and surfaces in order when the missing one arrives", () =>
    Effect.gen(function*() {
      const harness = yield* bobPastSeq1
      yield* Queue.offer(harness.frames, deliver("bob", 3))
      yield* eventually(reportFor("bob"), (report) => report?.held.length === 1, "seq 3 held")
      assert.isTrue(yield* noneLeft(harness.acks))
      yield* Queue.offer(harness.frames, deliver("bob", 2))
      assert.deepStrictEqual(yield* ackedSeqs(harness, 2), [2, 3])
      const texts = yield* injectedTexts
      assert.isTrue(texts[1]?.endsWith("message 2"))
      assert.isTrue(texts[2]?.endsWith("message 3"))
      assert.deepStrictEqual(yield* deadLetterReasons, [])
    }).pipe(Effect.provide(testLayer())))

  it.scoped("after the grace period surfaces held frames in order and records the gap as a dead letter", () =>
    Effect.gen(function*() {
      const harness = yield* bobPastSeq1
      yield* offerFrames(harness, deliver("bob", 4), deliver("bob", 6))
      yield* eventually(reportFor("bob"), (report) => report?.held.length === 2, "seqs 4 and 6 held")
      yield* TestClock.adjust("1999 millis")
      yield* Effect.yieldNow()
      assert.isTrue(yield* noneLeft(harness.acks))
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* ackedSeqs(harness, 2), [4, 6])
      const letters = yield* Effect.flatMap(DeadLetters, (dl) => dl.list)
      assert.deepStrictEqual(letters.map((letter) => [letter.reason, letter.gap]), [
        ["missing_upstream", { from: 2, to: 3 }],
        ["missing_upstream", { from: 5, to: 5 }]
      ])
      const report = yield* reportFor("bob")
      assert.strictEqual(report?.counts.gaps, 2)
      assert.strictEqual(report?.counts.missing_seqs, 3)
      assert.deepStrictEqual(report?.held, [])
    }).pipe(Effect.provide(testLayer())))

  it.scoped("the grace period is configurable", () =>
    Effect.gen(function*() {
      const harness = yield* bobPastSeq1
      yield* Queue.offer(harness.frames, deliver("bob", 3))
      yield* eventually(reportFor("bob"), (report) => report?.held.length === 1, "seq 3 held")
      yield* TestClock.adjust("100 millis")
      assert.strictEqual((yield* takeAck(harness)).up_to_seq, 3)
    }).pipe(Effect.provide(testLayer({ gapGrace: Duration.millis(100) }))))

  it.scoped("an unknown agent is acked and dead-lettered as unknown_agent", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* Queue.offer(harness.frames, deliver("ghost", 5))
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "ghost", up_to_seq: 5 })
      const [letter] = yield* Effect.flatMap(DeadLetters, (dl) => dl.list)
      assert.strictEqual(letter?.reason, "unknown_agent")
      assert.strictEqual(letter?.msg_id, "msg_ghost_5")
      assert.deepStrictEqual(letter?.payload, deliver("ghost", 5).payload)
      // The next frame for the same absent agent does not wait for the retries again.
      yield* Queue.offer(harness.frames, deliver("ghost", 6))
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "ghost", up_to_seq: 6 })
      assert.deepStrictEqual(yield* deadLetterReasons, ["unknown_agent", "unknown_agent"])
    }).pipe(Effect.provide(testLayer())))

  it.scoped("an agent whose process exited counts as gone", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob", { status: "exited" })
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 1 })
      assert.deepStrictEqual(yield* deadLetterReasons, ["unknown_agent"])
      assert.deepStrictEqual(yield* injectedTexts, [])
    }).pipe(Effect.provide(testLayer())))

  it.scoped("unsupported and undecodable payloads are acked and dead-lettered; receipts are acked only", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* offerFrames(
        harness,
        deliver("bob", 1, { type: "agent.online", data: {} }),
        deliver("bob", 2, "just a string"),
        deliver("bob", 0, { type: "message.read", data: {} }, { msg_id: "m_read" }),
        deliver("bob", 3, { type: 12 })
      )
      assert.deepStrictEqual(yield* ackedSeqs(harness, 4), [1, 2, 2, 3])
      assert.deepStrictEqual(yield* deadLetterReasons, ["unsupported_type", "undecodable", "undecodable"])
      assert.deepStrictEqual(yield* injectedTexts, [])
      const report = yield* reportFor("bob")
      assert.strictEqual(report?.counts.ack_only, 1)
      assert.strictEqual(report?.counts.dead_lettered, 3)
      assert.strictEqual(report?.cursor, 3)
    }).pipe(Effect.provide(testLayer())))

  it.scoped("a frame NodeControl could not decode is dead-lettered and acked in the agent's order", () =>
    Effect.gen(function*() {
      const harness = yield* bobPastSeq1
      yield* Queue.offer(harness.undecodable, { agent: "bob", seq: 2, msgId: "msg_bad", reason: "mode: expected wait|steer" })
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 2 })
      const [letter] = yield* Effect.flatMap(DeadLetters, (dl) => dl.list)
      assert.deepStrictEqual(
        [letter?.reason, letter?.msg_id, letter?.seq, letter?.agent_id, letter?.payload, letter?.detail],
        ["undecodable", "msg_bad", 2, "agt_bob", null, "mode: expected wait|steer"]
      )
      yield* Queue.offer(harness.frames, deliver("bob", 3))
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 3 })
      const report = yield* reportFor("bob")
      assert.strictEqual(report?.cursor, 3)
      assert.strictEqual(report?.counts.dead_lettered, 1)
    }).pipe(Effect.provide(testLayer())))

  it.scoped("retries a transient injection failure locally, keeping later frames behind it", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob", { failures: 2 })
      yield* offerFrames(harness, deliver("bob", 1), deliver("bob", 2))
      // The first attempt failed and the retry waits on the clock, with seq 2 behind it.
      yield* eventually(Ref.get(harness.attempts), (attempts) => attempts === 1, "the first attempt")
      yield* Effect.yieldNow()
      assert.isTrue(yield* noneLeft(harness.acks))
      assert.deepStrictEqual(yield* injectedTexts, [])
      yield* TestClock.adjust("1 seconds")
      assert.deepStrictEqual(yield* ackedSeqs(harness, 2), [1, 2])
      assert.strictEqual(yield* Ref.get(harness.attempts), 4)
      const texts = yield* injectedTexts
      assert.strictEqual(texts.length, 2)
      assert.isTrue(texts[0]?.endsWith("message 1"))
      assert.isTrue(texts[1]?.endsWith("message 2"))
      assert.deepStrictEqual(yield* deadLetterReasons, [])
    }).pipe(Effect.provide(testLayer())))

  it.scoped("dead-letters a frame as inject_failed when the retries run out, acks it, and moves on", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob", { failures: 6 })
      yield* offerFrames(harness, deliver("bob", 1), deliver("bob", 2))
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(yield* ackedSeqs(harness, 2), [1, 2])
      assert.deepStrictEqual(yield* deadLetterReasons, ["inject_failed"])
      const texts = yield* injectedTexts
      assert.strictEqual(texts.length, 1)
      assert.isTrue(texts[0]?.endsWith("message 2"))
      // The reminder was never seen by the agent, so the first successful delivery carries it.
      assert.isTrue(texts[0]?.startsWith("<system-reminder>"))
    }).pipe(Effect.provide(testLayer({ injectRetries: 5 }))))

  it.scoped("agents are served in parallel: a stuck terminal does not hold up another agent", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      const gate = yield* Deferred.make<void>()
      yield* harness.addAgent("slow", { gate })
      yield* harness.addAgent("fast")
      yield* offerFrames(harness, deliver("slow", 1), deliver("fast", 1))
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "fast", up_to_seq: 1 })
      assert.isTrue(yield* noneLeft(harness.acks))
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "slow", up_to_seq: 1 })
    }).pipe(Effect.provide(testLayer())))

  it.scoped("a forgotten agent (released, respawned) adopts the next seq as its baseline instead of going deaf", () =>
    Effect.gen(function*() {
      const harness = yield* bobPastSeq1
      const book = yield* DeliveryBook
      yield* book.forget({ name: "bob", agentId: "agt_bob" })
      assert.isTrue(Option.isNone(yield* book.get("agt_bob")))
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 40))
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 40 })
      const texts = yield* injectedTexts
      assert.strictEqual(texts.length, 2)
      // A new session (new pid) gets the reminder again.
      assert.isTrue(texts[1]?.startsWith("<system-reminder>"))
    }).pipe(Effect.provide(testLayer())))

  it.scoped("publishes delivery_queued, relay_inbound, delivery_injected and delivery_dead_lettered", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1, {
        type: "message.created",
        data: { text: "hi", agent_name: "alice", channel_name: "general" }
      }))
      yield* Queue.offer(harness.frames, deliver("bob", 2, { type: "weird" }))
      yield* takeAck(harness)
      yield* takeAck(harness)
      const events = yield* Effect.flatMap(EventLog, (log) => log.recent)
      const kinds = events.map((event) => event.kind)
      assert.deepStrictEqual(kinds.filter((kind) => kind !== "delivery_queued"), [
        "relay_inbound",
        "delivery_injected",
        "delivery_ack",
        "delivery_dead_lettered"
      ])
      assert.strictEqual(kinds.filter((kind) => kind === "delivery_queued").length, 2)
      const inbound = events.find((event) => event.kind === "relay_inbound")
      assert.deepStrictEqual(
        [inbound?.["event_id"], inbound?.["from"], inbound?.["target"], inbound?.["body"], inbound?.["name"]],
        ["msg_bob_1", "alice", "#general", "hi", "bob"]
      )
      const dead = events.find((event) => event.kind === "delivery_dead_lettered")
      assert.strictEqual(dead?.["reason"], "unsupported_type")
      assert.strictEqual(dead?.["dead_letter_id"], "dl_1")
    }).pipe(Effect.provide(testLayer())))

  it.scoped("redelivers a dead letter to an agent that is now live, and reports what cannot be redelivered", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      const deliveries = yield* Deliveries
      yield* Queue.offer(harness.frames, deliver("late", 1))
      yield* TestClock.adjust("10 seconds")
      yield* takeAck(harness)
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* takeAck(harness)
      yield* Queue.offer(harness.frames, deliver("bob", 3))
      yield* eventually(reportFor("bob"), (report) => report?.held.length === 1, "seq 3 held")
      yield* TestClock.adjust("2 seconds")
      yield* takeAck(harness)
      assert.deepStrictEqual(yield* deadLetterReasons, ["unknown_agent", "missing_upstream"])

      const missing = yield* Effect.either(deliveries.redeliver({ id: "dl_99" }))
      assert.isTrue(missing._tag === "Left" && missing.left._tag === "NoSuchDeadLetter")

      // Still not live: the entry stays, with its attempt counted.
      const notYet = yield* deliveries.redeliver({ id: "dl_1" })
      assert.deepStrictEqual(notYet.redelivered, [])
      assert.strictEqual(notYet.failed[0]?.id, "dl_1")
      yield* harness.addAgent("late")
      const result = yield* deliveries.redeliver("all")
      assert.deepStrictEqual(result.redelivered.map((entry) => entry.id), ["dl_1"])
      assert.deepStrictEqual(result.failed.map((entry) => entry.id), ["dl_2"])
      assert.include(result.failed[0]?.error ?? "", "no payload")
      assert.deepStrictEqual(yield* deadLetterReasons, ["missing_upstream"])
      const texts = (yield* Ref.get(harness.injections)).filter((injection) => injection.agent === "late")
      assert.strictEqual(texts.length, 1)
      assert.isTrue(texts[0]?.text.endsWith("Relay message from alice [ws_test / msg_late_1]: message 1"))
    }).pipe(Effect.provide(testLayer())))
})
