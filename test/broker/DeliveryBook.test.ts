import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Queue, Ref } from "effect"
import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { snapshotName } from "../../src/broker/cursorJournal.js"
import { type BookStorage, cursorFileName, fileStorage, make, memoryStorage } from "../../src/broker/DeliveryBook.js"
import { type AgentCursor, rememberId, seenCapacity } from "../../src/broker/deliveryDecisions.js"
import { PersistFailed } from "../../src/broker/errors.js"
import { deliver, HarnessTag, takeAck, testLayer } from "./deliveriesFakes.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-book-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const bookAt = (dir: string) => Effect.flatMap(fileStorage(dir), make)

const cursor = (agentId: string, name: string, upToSeq: number, seen: ReadonlyArray<string> = []): AgentCursor => ({
  agentId,
  name,
  upToSeq,
  baseline: 1,
  seen
})

describe("DeliveryBook persistence", () => {
  it.scoped("a saved cursor survives a restart (a new book over the same directory)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const first = yield* bookAt(dir)
      yield* first.save(cursor("agt_1", "bob", 7, ["m6", "m7"]))
      yield* first.save(cursor("agt_2", "carol", 3))
      yield* first.save(cursor("agt_1", "bob", 8, ["m6", "m7", "m8"]))
      const second = yield* bookAt(dir)
      assert.deepStrictEqual(Option.getOrNull(yield* second.get("agt_1")), cursor("agt_1", "bob", 8, ["m6", "m7", "m8"]))
      assert.strictEqual((yield* second.list).length, 2)
      // A snapshot and one journal, both mode 0600; no temp file left.
      const files = readdirSync(dir).sort()
      assert.deepStrictEqual(files.filter((name) => !name.endsWith(".tmp")).length, 2)
      assert.include(files, snapshotName)
      for (const name of files) assert.strictEqual(statSync(join(dir, name)).mode & 0o777, 0o600)
      assert.deepStrictEqual(files.filter((name) => name.endsWith(".tmp")), [])
    }))

  it.scoped("forget drops the cursor by id or by name, on disk too", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const book = yield* bookAt(dir)
      yield* book.save(cursor("agt_1", "bob", 7))
      yield* book.save(cursor("agt_2", "carol", 3))
      yield* book.forget({ name: "bob", agentId: "unrelated" })
      yield* book.forget({ name: "unrelated", agentId: "agt_2" })
      assert.deepStrictEqual(yield* book.list, [])
      assert.deepStrictEqual(yield* (yield* bookAt(dir)).list, [])
    }))

  it.scoped("a new agent id for a known name replaces the old cursor", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const book = yield* bookAt(dir)
      yield* book.save(cursor("agt_old", "bob", 9))
      yield* book.save(cursor("agt_new", "bob", 1))
      assert.deepStrictEqual((yield* book.list).map((entry) => entry.agentId), ["agt_new"])
      assert.deepStrictEqual((yield* (yield* bookAt(dir)).list).map((entry) => entry.agentId), ["agt_new"])
    }))

  it.scoped("ignores unreadable files; agent ids are data, never file names", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      writeFileSync(join(dir, "broken.json"), "{not json")
      writeFileSync(join(dir, "wrong.json"), JSON.stringify({ v: 2 }))
      const book = yield* bookAt(dir)
      yield* book.save(cursor("../../etc/passwd", "eve", 1))
      assert.isFalse(readdirSync(dir).some((name) => name.includes("passwd")))
      assert.deepStrictEqual((yield* (yield* bookAt(dir)).list).map((entry) => entry.name), ["eve"])
    }))

  it.scoped("a store in the older one-file-per-agent layout is read, then folded into the snapshot", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const legacy = { v: 1, agent_id: "agt_1", name: "bob", up_to_seq: 4, baseline: 1, seen: ["m3", "m4"] }
      writeFileSync(join(dir, cursorFileName("agt_1")), JSON.stringify(legacy))
      const book = yield* bookAt(dir)
      assert.deepStrictEqual(Option.getOrNull(yield* book.get("agt_1")), cursor("agt_1", "bob", 4, ["m3", "m4"]))
      yield* book.save(cursor("agt_2", "carol", 1))
      assert.isFalse(readdirSync(dir).includes(cursorFileName("agt_1")))
      assert.deepStrictEqual((yield* (yield* bookAt(dir)).list).map((entry) => entry.upToSeq).sort(), [1, 4])
    }))

  it.scoped("seen ids go into the journal as the ones added; a new generation starts past the limit; a torn last line is skipped", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const storage = yield* fileStorage(dir, { journalLimit: 20_000 })
      const book = yield* make(storage)
      let seen: ReadonlyArray<string> = []
      for (let seq = 1; seq <= 700; seq++) {
        seen = rememberId(seen, `msg_${seq}`)
        yield* book.save(cursor("agt_1", "bob", seq, seen))
      }
      const journals = readdirSync(dir).filter((name) => name.startsWith("journal-"))
      assert.strictEqual(journals.length, 1)
      // Far below 700 full seen lists: each line carries the one id added.
      assert.isBelow(statSync(join(dir, journals[0]!)).size, 20_000 + 2_000)
      // A crash in the middle of the next append: its part-line is skipped, everything before stays.
      appendFileSync(join(dir, journals[0]!), "{\"v\":1,\"c\":[{\"agent_id\":\"agt_1\",\"up_to")
      const reloaded = yield* bookAt(dir)
      assert.deepStrictEqual(Option.getOrNull(yield* reloaded.get("agt_1")), cursor("agt_1", "bob", 700, seen))
      assert.strictEqual(seen.length, seenCapacity)
    }))

  it.scoped("a failed write is a typed PersistFailed, and the cursor is kept in memory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const blocked = join(dir, "file-not-dir")
      writeFileSync(blocked, "")
      const book = yield* bookAt(blocked)
      const result = yield* Effect.either(book.save(cursor("agt_1", "bob", 2)))
      assert.isTrue(result._tag === "Left" && result.left._tag === "PersistFailed")
      assert.isTrue(Option.isSome(yield* book.get("agt_1")))
    }))
})

describe("Deliveries across a broker restart", () => {
  it.scoped("resumes from the persisted cursor: redelivered frames are stale, the next one is injected", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const storage = yield* fileStorage(dir)
      const runOnce = <A, E>(effect: Effect.Effect<A, E, HarnessTag>) => Effect.scoped(Effect.provide(effect, testLayer(undefined, storage)))

      yield* runOnce(Effect.gen(function*() {
        const harness = yield* HarnessTag
        yield* harness.addAgent("bob")
        for (const seq of [1, 2, 3]) yield* Queue.offer(harness.frames, deliver("bob", seq))
        for (let i = 0; i < 3; i++) yield* takeAck(harness)
      }))

      // The engine did not see the last acks: after the restart it sends 2..4 again.
      const texts = yield* runOnce(Effect.gen(function*() {
        const harness = yield* HarnessTag
        yield* harness.addAgent("bob")
        for (const seq of [2, 3, 4]) yield* Queue.offer(harness.frames, deliver("bob", seq))
        const acks = [yield* takeAck(harness), yield* takeAck(harness), yield* takeAck(harness)]
        assert.deepStrictEqual(acks.map((ack) => ack.up_to_seq), [3, 3, 4])
        return (yield* Ref.get(harness.injections)).map((injection) => injection.text)
      }))
      assert.strictEqual(texts.length, 1)
      assert.isTrue(texts[0]?.endsWith("message 4"))
    }))
})

// A storage whose writes for `blocked` agent ids wait until released, recording what reached "disk".
const gatedStorage = (blocked: ReadonlySet<string>) =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<void>()
    const started = yield* Deferred.make<void>()
    const files = new Map<string, AgentCursor>()
    const storage: BookStorage = {
      load: Effect.succeed([]),
      write: (cursor) =>
        Effect.gen(function*() {
          if (blocked.has(cursor.agentId)) {
            yield* Deferred.succeed(started, undefined)
            yield* Deferred.await(gate)
          }
          files.set(cursor.agentId, cursor)
        }),
      remove: (agentId) => Effect.sync(() => files.delete(agentId))
    }
    return { storage, files, started, release: Deferred.succeed(gate, undefined) }
  })

describe("DeliveryBook group commit", () => {
  it.scoped("saves made while a write runs are gathered into one next write, each completing with it", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const commits: Array<ReadonlyArray<string>> = []
      const storage: BookStorage = {
        ...memoryStorage,
        commit: (changes) =>
          Effect.gen(function*() {
            if (commits.length === 0) {
              yield* Deferred.succeed(started, undefined)
              yield* Deferred.await(gate)
            }
            commits.push(changes.map((change) => `${change.agentId}:${change.cursor?.upToSeq ?? "gone"}`))
          })
      }
      const book = yield* make(storage)
      const first = yield* Effect.fork(book.save(cursor("agt_1", "bob", 1)))
      yield* Deferred.await(started)
      const later = yield* Effect.forEach(
        [cursor("agt_1", "bob", 2), cursor("agt_2", "carol", 5), cursor("agt_1", "bob", 3), cursor("agt_3", "dave", 9)],
        (next) => Effect.fork(book.save(next))
      )
      yield* Effect.yieldNow()
      // None of them completes before the write that carries them.
      for (const fiber of later) assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      yield* Effect.forEach(later, Fiber.join, { discard: true })
      // One write for the first save, one for the four made during it (bob's newest cursor only).
      assert.deepStrictEqual(commits, [["agt_1:1"], ["agt_1:3", "agt_2:5", "agt_3:9"]])
    }))

  it.scoped("a failed write fails every save in it; the cursors stay in memory and the next write carries them", () =>
    Effect.gen(function*() {
      let broken = true
      const written: Array<string> = []
      const storage: BookStorage = {
        ...memoryStorage,
        commit: (changes) =>
          broken
            ? Effect.fail(new PersistFailed({ path: "cursors", detail: "disk full" }))
            : Effect.sync(() => written.push(...changes.map((change) => change.agentId)))
      }
      const book = yield* make(storage)
      const results = yield* Effect.all([book.save(cursor("agt_1", "bob", 1)), book.save(cursor("agt_2", "carol", 1))].map(Effect.either), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(results.map((result) => result._tag), ["Left", "Left"])
      assert.strictEqual((yield* book.list).length, 2)
      broken = false
      yield* book.persist("agt_1")
      yield* book.persist("agt_2")
      assert.deepStrictEqual(written, ["agt_1", "agt_2"])
    }))

  it.scoped("a forget during a save's write leaves no cursor behind", () =>
    Effect.gen(function*() {
      const gated = yield* gatedStorage(new Set(["agt_1"]))
      const book = yield* make(gated.storage)
      const saving = yield* Effect.fork(book.save(cursor("agt_1", "bob", 1)))
      yield* Deferred.await(gated.started)
      const forgetting = yield* Effect.fork(book.forget({ name: "bob", agentId: "agt_1" }))
      yield* gated.release
      yield* Fiber.join(saving)
      yield* Fiber.join(forgetting)
      assert.isFalse(gated.files.has("agt_1"))
      assert.deepStrictEqual(yield* book.list, [])
    }))
})
