import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Option, Queue, Ref } from "effect"
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type BookStorage, cursorFileName, DeliveryBook, fileStorage, make } from "../../src/broker/DeliveryBook.js"
import type { AgentCursor } from "../../src/broker/deliveryDecisions.js"
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
      const second = yield* bookAt(dir)
      assert.deepStrictEqual(Option.getOrNull(yield* second.get("agt_1")), cursor("agt_1", "bob", 7, ["m6", "m7"]))
      assert.strictEqual((yield* second.list).length, 2)
      // Written atomically with mode 0600, one file per agent id.
      const file = join(dir, cursorFileName("agt_1"))
      assert.strictEqual(statSync(file).mode & 0o777, 0o600)
      assert.deepStrictEqual(JSON.parse(readFileSync(file, "utf8")), {
        v: 1,
        agent_id: "agt_1",
        name: "bob",
        up_to_seq: 7,
        baseline: 1,
        seen: ["m6", "m7"]
      })
      assert.deepStrictEqual(readdirSync(dir).filter((name) => name.endsWith(".tmp")), [])
    }).pipe(Effect.provide(NodeFileSystem.layer)))

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
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a new agent id for a known name replaces the old cursor", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const book = yield* bookAt(dir)
      yield* book.save(cursor("agt_old", "bob", 9))
      yield* book.save(cursor("agt_new", "bob", 1))
      assert.deepStrictEqual((yield* book.list).map((entry) => entry.agentId), ["agt_new"])
      assert.deepStrictEqual((yield* (yield* bookAt(dir)).list).map((entry) => entry.agentId), ["agt_new"])
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("ignores unreadable files and agent ids that are not safe file names", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      writeFileSync(join(dir, "broken.json"), "{not json")
      writeFileSync(join(dir, "wrong.json"), JSON.stringify({ v: 2 }))
      const book = yield* bookAt(dir)
      yield* book.save(cursor("../../etc/passwd", "eve", 1))
      assert.strictEqual(cursorFileName("../../etc/passwd"), "__.._etc_passwd.json")
      assert.isTrue(readdirSync(dir).includes("__.._etc_passwd.json"))
      assert.deepStrictEqual((yield* (yield* bookAt(dir)).list).map((entry) => entry.name), ["eve"])
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a failed write is a typed PersistFailed, and the cursor is kept in memory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const blocked = join(dir, "file-not-dir")
      writeFileSync(blocked, "")
      const book = yield* bookAt(blocked)
      const result = yield* Effect.either(book.save(cursor("agt_1", "bob", 2)))
      assert.isTrue(result._tag === "Left" && result.left._tag === "PersistFailed")
      assert.isTrue(Option.isSome(yield* book.get("agt_1")))
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

describe("Deliveries across a broker restart", () => {
  it.scoped("resumes from the persisted cursor: redelivered frames are stale, the next one is injected", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const fs = yield* FileSystem.FileSystem
      const storage = yield* fileStorage(dir)
      const runOnce = <A, E>(effect: Effect.Effect<A, E, HarnessTag>) =>
        Effect.scoped(Effect.provide(effect, testLayer(undefined, storage))).pipe(
          Effect.provide(Layer.succeed(FileSystem.FileSystem, fs))
        )

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
    }).pipe(Effect.provide(NodeFileSystem.layer)))
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

describe("DeliveryBook concurrency", () => {
  it.scoped("a slow write for one agent does not hold up another agent's save", () =>
    Effect.gen(function*() {
      const gated = yield* gatedStorage(new Set(["agt_slow"]))
      const book = yield* make(gated.storage)
      const slow = yield* Effect.fork(book.save(cursor("agt_slow", "slow", 1)))
      yield* Deferred.await(gated.started)
      // With one lock for all agents this would wait for the slow write forever.
      yield* book.save(cursor("agt_fast", "fast", 4))
      assert.deepStrictEqual(gated.files.get("agt_fast"), cursor("agt_fast", "fast", 4))
      assert.isFalse(gated.files.has("agt_slow"))
      yield* gated.release
      yield* Fiber.join(slow)
      assert.deepStrictEqual(gated.files.get("agt_slow"), cursor("agt_slow", "slow", 1))
    }))

  it.scoped("a forget during a save's write leaves no file behind", () =>
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

  it.scoped("saves queued behind a write for the same agent end with the newest cursor on disk", () =>
    Effect.gen(function*() {
      const gated = yield* gatedStorage(new Set(["agt_1"]))
      const book = yield* make(gated.storage)
      const first = yield* Effect.fork(book.save(cursor("agt_1", "bob", 1)))
      yield* Deferred.await(gated.started)
      const later = yield* Effect.forEach([2, 3], (seq) => Effect.fork(book.save(cursor("agt_1", "bob", seq))))
      yield* gated.release
      yield* Fiber.join(first)
      yield* Effect.forEach(later, Fiber.join, { discard: true })
      assert.deepStrictEqual(gated.files.get("agt_1"), cursor("agt_1", "bob", 3))
    }))
})
