import { NodeFileSystem } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { PersistFailed } from "../../src/broker/errors.js"
import * as EventLog from "../../src/broker/EventLog.js"
import { type DeadLetterStorage, fileStorage, make, memoryStorage, type NewDeadLetter } from "../../src/broker/DeadLetters.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-dlq-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const entry = (n: number): NewDeadLetter => ({
  agent: "bob",
  agent_id: "agt_bob",
  msg_id: `msg_${n}`,
  delivery_id: `del_${n}`,
  seq: n,
  mode: "wait",
  reason: "unknown_agent",
  detail: "unknown worker 'bob'",
  payload: { type: "dm.received", data: { text: `hi ${n}` } }
})

describe("DeadLetters", () => {
  it.effect("records id, agent, msg_id, reason, time and payload", () =>
    Effect.gen(function*() {
      const letters = yield* make(memoryStorage)
      const letter = yield* letters.add(entry(1))
      assert.strictEqual(letter.id, "dl_1")
      assert.strictEqual(letter.time, new Date(0).toISOString())
      assert.deepStrictEqual(letter.payload, entry(1).payload)
      assert.strictEqual(yield* letters.count, 1)
      assert.deepStrictEqual(Option.getOrNull(yield* letters.get("dl_1")), letter)
    }))

  it.effect("is bounded: the oldest entries are evicted", () =>
    Effect.gen(function*() {
      const letters = yield* make(memoryStorage, { capacity: 3 })
      for (let n = 1; n <= 5; n++) yield* letters.add(entry(n))
      assert.deepStrictEqual((yield* letters.list).map((letter) => letter.id), ["dl_3", "dl_4", "dl_5"])
    }))

  it.effect("each entry evicted from the full store is published as delivery_dropped {name, count, reason}, even when the write fails", () =>
    Effect.gen(function*() {
      const failOnFifth: DeadLetterStorage = {
        load: Effect.succeedNone,
        write: (state) => state.next_id === 6 ? Effect.fail(new PersistFailed({ path: "x", detail: "disk full" })) : Effect.void
      }
      const letters = yield* make(failOnFifth, { capacity: 3 })
      for (let n = 1; n <= 4; n++) yield* letters.add({ ...entry(n), agent: `agent${n}` })
      yield* Effect.flip(letters.add(entry(5)))
      const dropped = (yield* (yield* EventLog.EventLog).recent).filter((event) => event.kind === "delivery_dropped")
      assert.deepStrictEqual(dropped.map(({ name, count }) => ({ name, count })), [{ name: "agent1", count: 1 }, { name: "agent2", count: 1 }])
      assert.deepStrictEqual(dropped.map((event) => Object.keys(event).sort()), [
        ["count", "kind", "name", "reason", "seq", "timestamp"],
        ["count", "kind", "name", "reason", "seq", "timestamp"]
      ])
      assert.match(String(dropped[0]!.reason), /^dead_letter_evicted: the dead-letter store is full \(3\); dl_1 \(unknown_agent: unknown worker 'bob'\)/)
      assert.match(String(dropped[1]!.reason), /dl_2/)
    }).pipe(Effect.provideServiceEffect(EventLog.EventLog, EventLog.make)))

  it.effect("holds 500 entries by default", () =>
    Effect.gen(function*() {
      const letters = yield* make(memoryStorage)
      for (let n = 1; n <= 501; n++) yield* letters.add(entry(n))
      const list = yield* letters.list
      assert.strictEqual(list.length, 500)
      assert.strictEqual(list[0]?.id, "dl_2")
    }))

  it.effect("remove and markAttempt", () =>
    Effect.gen(function*() {
      const letters = yield* make(memoryStorage)
      yield* letters.add(entry(1))
      yield* letters.add(entry(2))
      yield* letters.markAttempt("dl_2")
      yield* letters.remove(["dl_1"])
      const list = yield* letters.list
      assert.deepStrictEqual(list.map((letter) => [letter.id, letter.redelivery_attempts]), [["dl_2", 1]])
    }))

  it.scoped("persists atomically (0600) and a restart reloads the entries and continues the ids", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "dead-letters.json")
      const first = yield* make(yield* fileStorage(path))
      yield* first.add(entry(1))
      yield* first.add({ ...entry(2), reason: "missing_upstream", payload: null, gap: { from: 4, to: 6 } })
      assert.strictEqual(statSync(path).mode & 0o777, 0o600)
      const onDisk = JSON.parse(readFileSync(path, "utf8"))
      assert.strictEqual(onDisk.entries.length, 2)
      const second = yield* make(yield* fileStorage(path))
      assert.deepStrictEqual(yield* second.list, yield* first.list)
      assert.strictEqual((yield* second.add(entry(3))).id, "dl_3")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("starts empty from an unreadable file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "dead-letters.json")
      writeFileSync(path, "{oops")
      const letters = yield* make(yield* fileStorage(path))
      assert.strictEqual(yield* letters.count, 0)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("keeps the entry in memory when the write fails, and says so", () =>
    Effect.gen(function*() {
      const failing: DeadLetterStorage = {
        load: Effect.succeedNone,
        write: () => Effect.fail(new PersistFailed({ path: "dead-letters.json", detail: "disk full" }))
      }
      const letters = yield* make(failing)
      const result = yield* Effect.either(letters.add(entry(1)))
      assert.isTrue(result._tag === "Left" && result.left._tag === "PersistFailed")
      assert.strictEqual(yield* letters.count, 1)
    }))
})
