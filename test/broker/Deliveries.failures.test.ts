import { HttpClient, HttpClientResponse, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Layer, Queue, Redacted, Ref, TestClock } from "effect"
import * as BrokerConfig from "../../src/broker/BrokerConfig.js"
import { DeadLetters } from "../../src/broker/DeadLetters.js"
import { Deliveries } from "../../src/broker/Deliveries.js"
import * as DeliveryBook from "../../src/broker/DeliveryBook.js"
import { PersistFailed } from "../../src/broker/errors.js"
import { EventLog } from "../../src/broker/EventLog.js"
import { brokerRoutes } from "../../src/broker/http/brokerRoutes.js"
import * as Shutdown from "../../src/broker/http/Shutdown.js"
import { deliver, eventually, HarnessTag, noneLeft, takeAck, testLayer } from "./deliveriesFakes.js"

// No agent goes deaf: failures inside the delivery path end each frame in a visible state, the
// worker goes on (or is restarted), an ack waits for a durable cursor, and a stall shows up.

const reportFor = (agent: string) =>
  Effect.flatMap(Deliveries, (deliveries) =>
    Effect.map(deliveries.report, (reports) => reports.find((report) => report.agent === agent)))

const deadLetters = Effect.flatMap(DeadLetters, (letters) => letters.list)

const injectedTexts = Effect.flatMap(HarnessTag, (harness) =>
  Effect.map(Ref.get(harness.injections), (all) => all.map((injection) => injection.text)))

const eventKinds = Effect.flatMap(EventLog, (log) => Effect.map(log.recent, (events) => events.map((event) => event.kind)))

/** A cursor store that fails (PersistFailed) while `broken` is set, or dies on its next `defects` writes. */
const faultyStorage = (broken: Ref.Ref<boolean>, defects: Ref.Ref<number>): DeliveryBook.BookStorage => ({
  ...DeliveryBook.memoryStorage,
  write: () =>
    Effect.gen(function*() {
      if (yield* Ref.get(broken)) return yield* new PersistFailed({ path: "cursors/agt_bob.json", detail: "no space left on device" })
      const dying = yield* Ref.modify(defects, (left) => [left > 0, Math.max(0, left - 1)])
      if (dying) return yield* Effect.dieMessage("the cursor store blew up")
    })
})

const config: BrokerConfig.BrokerConfigShape = {
  baseUrl: "http://127.0.0.1:1",
  workspaceKey: Redacted.make("rk_live_test"),
  nodeToken: undefined,
  nodeName: "test",
  stateDir: "/nonexistent",
  dataDir: "/nonexistent",
  cwd: "/",
  brokerApiKey: Redacted.make("br_test"),
  apiBind: "127.0.0.1",
  apiPort: 0,
  heartbeatInterval: 12_000,
  requestTimeout: 30_000,
  version: "test"
}

const health = Effect.flatMap(HttpClient.HttpClient, (client) => client.get("/health")).pipe(
  Effect.flatMap(HttpClientResponse.filterStatusOk),
  Effect.flatMap((response) => response.json),
  Effect.map((json) => json as Record<string, unknown>)
)

describe("Deliveries under failure", () => {
  it.scoped("a defect while injecting dead-letters that frame as internal_error, acks it, and later frames still arrive", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob", { defects: 1 })
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* Queue.offer(harness.frames, deliver("bob", 2))
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 1 })
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 2 })
      const [letter, ...more] = yield* deadLetters
      assert.deepStrictEqual([letter?.reason, letter?.msg_id, more.length], ["internal_error", "msg_bob_1", 0])
      assert.include(letter?.detail ?? "", "injected defect in the terminal of bob")
      const texts = yield* injectedTexts
      assert.strictEqual(texts.length, 1)
      assert.isTrue(texts[0]?.endsWith("message 2"))
      const report = yield* reportFor("bob")
      assert.strictEqual(report?.counts.failures, 1)
      assert.strictEqual(report?.worker.restarts, 0)
    }).pipe(Effect.provide(testLayer())))

  it.scoped("a worker that ends on a defect is restarted at once from the book's cursor, counted, and serves later frames", () => {
    const getDefects = Ref.unsafeMake(0)
    const dyingGet = (book: DeliveryBook.DeliveryBook["Type"]): DeliveryBook.DeliveryBook["Type"] => ({
      ...book,
      get: (agentId) =>
        Effect.flatMap(Ref.modify(getDefects, (left) => [left > 0, Math.max(0, left - 1)]), (dying) =>
          dying ? Effect.dieMessage("the book blew up") : book.get(agentId))
    })
    return Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 1 })
      // The next frame's handling dies, and so does its recovery: the worker itself ends.
      yield* Ref.set(getDefects, 2)
      yield* Queue.offer(harness.frames, deliver("bob", 2))
      yield* eventually(reportFor("bob"), (report) => report?.worker.restarts === 1, "a restart")
      const [letter] = yield* deadLetters
      assert.deepStrictEqual([letter?.reason, letter?.msg_id], ["internal_error", "msg_bob_2"])
      assert.include(letter?.detail ?? "", "the book blew up")
      assert.include(yield* eventKinds, "delivery_worker_restarted")
      // Restarted from the book's cursor (1): seq 3 waits behind the gap left by seq 2, then surfaces.
      yield* Queue.offer(harness.frames, deliver("bob", 3))
      yield* eventually(reportFor("bob"), (report) => report?.held.length === 1, "seq 3 held")
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 3 })
      const texts = yield* injectedTexts
      assert.deepStrictEqual(texts.map((text) => text.slice(-9)), ["message 1", "message 3"])
      const report = yield* reportFor("bob")
      assert.strictEqual(report?.worker.last_restart?.cause, "the book blew up")
      assert.strictEqual((yield* Effect.flatMap(Deliveries, (d) => d.health)).workerRestarts, 1)
    }).pipe(Effect.provide(testLayer(undefined, DeliveryBook.memoryStorage, dyingGet)))
  })

  it.scoped("a cursor store whose first write dies: no ack until a retried save succeeds, and later frames still arrive", () => {
    const broken = Ref.unsafeMake(false)
    const defects = Ref.unsafeMake(1)
    return Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* eventually(reportFor("bob"), (report) => report?.durability.pending_ack === 1, "ack 1 waiting")
      assert.isTrue(yield* noneLeft(harness.acks))
      assert.strictEqual((yield* injectedTexts).length, 1)
      // The retry (on the clock) saves it, and only then is seq 1 acked.
      yield* TestClock.adjust("100 millis")
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 1 })
      yield* Queue.offer(harness.frames, deliver("bob", 2))
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 2 })
      assert.deepStrictEqual((yield* reportFor("bob"))?.durability.cursor_saved, true)
      assert.deepStrictEqual(yield* deadLetters, [])
    }).pipe(Effect.provide(testLayer(undefined, faultyStorage(broken, defects))))
  })

  it.scoped("while saves fail, acks wait, the engine's redelivery is not typed twice, health says why; one good save sends the ack", () => {
    const broken = Ref.unsafeMake(true)
    const defects = Ref.unsafeMake(0)
    return Effect.gen(function*() {
      const harness = yield* HarnessTag
      const deliveries = yield* Deliveries
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* Queue.offer(harness.frames, deliver("bob", 2))
      yield* eventually(reportFor("bob"), (report) => report?.durability.pending_ack === 2, "ack 2 waiting")
      // The engine re-sends what was not acked (a reconnect): the in-memory cursor answers it.
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* Queue.offer(harness.frames, deliver("bob", 2))
      yield* eventually(reportFor("bob"), (report) => report?.counts.duplicate === 2, "both duplicates seen")
      assert.isTrue(yield* noneLeft(harness.acks))
      assert.strictEqual((yield* injectedTexts).length, 2)
      const report = yield* reportFor("bob")
      assert.deepStrictEqual(
        [report?.durability.cursor_saved, report?.durability.pending_ack, report?.cursor],
        [false, 2, 2]
      )
      assert.include(report?.durability.save_error ?? "", "no space left on device")
      const health = yield* deliveries.health
      assert.deepStrictEqual(health.failingSaves.map((failing) => failing.agent), ["bob"])
      assert.include(health.failingSaves[0]?.error ?? "", "no space left on device")
      // Retried on the schedule (100 ms doubling, at most 5 s apart) while the disk stays full.
      yield* TestClock.adjust("30 seconds")
      assert.isTrue(yield* noneLeft(harness.acks))
      yield* Ref.set(broken, false)
      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 2 })
      assert.deepStrictEqual((yield* deliveries.health).failingSaves, [])
      yield* Queue.offer(harness.frames, deliver("bob", 3))
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 3 })
    }).pipe(Effect.provide(testLayer(undefined, faultyStorage(broken, defects))))
  })

  it.scoped("an injection that never completes is stalled after the inject bound, with the reason, then resumes", () =>
    Effect.gen(function*() {
      const harness = yield* HarnessTag
      const deliveries = yield* Deliveries
      const gate = yield* Deferred.make<void>()
      yield* harness.addAgent("bob", { gate })
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* Queue.offer(harness.frames, deliver("bob", 2))
      yield* eventually(Ref.get(harness.attempts), (attempts) => attempts === 1, "the injection started")
      // Past the general bound but within the inject bound (the agent may be getting ready): working.
      yield* TestClock.adjust("2 seconds")
      const working = (yield* reportFor("bob"))?.worker
      assert.deepStrictEqual([working?.state, working?.step, working?.waiting], ["working", "injecting", 2])
      assert.notInclude(yield* eventKinds, "delivery_stalled")
      yield* TestClock.adjust("2 seconds")
      const stalled = (yield* reportFor("bob"))?.worker
      assert.strictEqual(stalled?.state, "stalled")
      assert.include(stalled?.stalled_reason ?? "", "injecting seq 1 (msg_bob_1)")
      assert.include(stalled?.stalled_reason ?? "", "2 frames waiting")
      assert.deepStrictEqual((yield* deliveries.health).stalled.map((stall) => stall.agent), ["bob"])
      const events = yield* Effect.flatMap(EventLog, (log) => log.recent)
      const announced = events.filter((event) => event.kind === "delivery_stalled")
      assert.strictEqual(announced.length, 1)
      assert.deepStrictEqual([announced[0]?.["name"], announced[0]?.["frame_seq"]], ["bob", 1])
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 1 })
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 2 })
      yield* TestClock.adjust("1 second")
      assert.include(yield* eventKinds, "delivery_resumed")
      assert.deepStrictEqual((yield* reportFor("bob"))?.worker.state, "idle")
      assert.deepStrictEqual((yield* deliveries.health).stalled, [])
    }).pipe(Effect.provide(testLayer({
      stallAfter: Duration.seconds(1),
      injectStallAfter: Duration.seconds(3),
      stallCheckInterval: Duration.seconds(1)
    }))))

  it.scoped("a cursor save that hangs is stalled after the general bound, saying so", () => {
    const hang = Ref.unsafeMake(false)
    const storage: DeliveryBook.BookStorage = {
      ...DeliveryBook.memoryStorage,
      write: () => Effect.flatMap(Ref.get(hang), (hanging) => hanging ? Effect.never : Effect.void)
    }
    return Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* takeAck(harness)
      yield* Ref.set(hang, true)
      yield* Queue.offer(harness.frames, deliver("bob", 2))
      yield* eventually(reportFor("bob"), (report) => report?.worker.step === "saving cursor", "saving")
      yield* TestClock.adjust("5 seconds")
      const worker = (yield* reportFor("bob"))?.worker
      assert.strictEqual(worker?.state, "stalled")
      assert.include(worker?.stalled_reason ?? "", "saving the cursor after seq 2")
      assert.include(yield* eventKinds, "delivery_stalled")
    }).pipe(Effect.provide(testLayer(undefined, storage)))
  })

  it.scopedLive("GET /health says degraded, with the reason, while cursor saves fail, and ok again after", () => {
    const broken = Ref.unsafeMake(true)
    const defects = Ref.unsafeMake(0)
    const server = HttpServer.serve(brokerRoutes({ startedAt: 0, eventSockets: Ref.unsafeMake(0) })).pipe(
      Layer.provideMerge(Layer.mergeAll(
        testLayer({ saveRetryBase: Duration.millis(10) }, faultyStorage(broken, defects)),
        BrokerConfig.layer(config),
        Shutdown.layer
      )),
      Layer.provideMerge(NodeHttpServer.layerTest)
    )
    return Effect.gen(function*() {
      const harness = yield* HarnessTag
      yield* harness.addAgent("bob")
      assert.strictEqual((yield* health)["status"], "ok")
      yield* Queue.offer(harness.frames, deliver("bob", 1))
      yield* eventually(reportFor("bob"), (report) => report?.durability.pending_ack === 1, "ack 1 waiting")
      const degraded = yield* health
      assert.strictEqual(degraded["status"], "degraded")
      assert.strictEqual(degraded["failingCursorSaves"], 1)
      const [reason] = degraded["reasons"] as ReadonlyArray<string>
      assert.include(reason ?? "", "delivery cursor of bob not saved")
      assert.include(reason ?? "", "no space left on device")
      yield* Ref.set(broken, false)
      assert.deepStrictEqual(yield* takeAck(harness), { agent: "bob", up_to_seq: 1 })
      const healthy = yield* health
      assert.deepStrictEqual([healthy["status"], healthy["reasons"]], ["ok", []])
    }).pipe(Effect.provide(server))
  })
})
