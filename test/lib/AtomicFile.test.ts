import { NodeFileSystem } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Ref } from "effect"
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createFileAtomic, writeFileAtomic } from "../../src/lib/AtomicFile.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "atomic-file-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const modeOf = (path: string) => statSync(path).mode & 0o777

describe("AtomicFile", () => {
  it.scopedLive("writes the content with mode 0600 by default, creating parent directories", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "a", "b", "token.json")
      yield* writeFileAtomic(path, "{\"token\":\"x\"}")
      assert.strictEqual(readFileSync(path, "utf8"), "{\"token\":\"x\"}")
      assert.strictEqual(modeOf(path), 0o600)
      assert.deepStrictEqual(readdirSync(join(dir, "a", "b")), ["token.json"])
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("replacing a world-readable file leaves it 0600, and an explicit mode is applied exactly", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "cursor.json")
      writeFileSync(path, "old")
      chmodSync(path, 0o644)
      yield* writeFileAtomic(path, "new")
      assert.strictEqual(readFileSync(path, "utf8"), "new")
      assert.strictEqual(modeOf(path), 0o600)
      yield* writeFileAtomic(path, "public", { mode: 0o644 })
      assert.strictEqual(modeOf(path), 0o644)
      // 0o666 is masked by the usual 022 umask at open; the result must still be exactly 0o666.
      yield* writeFileAtomic(path, "shared", { mode: 0o666 })
      assert.strictEqual(modeOf(path), 0o666)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("a concurrent reader only ever sees a complete old or new content", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "big.json")
      const versions = Array.from({ length: 20 }, (_, i) => String(i % 10).repeat(256 * 1024))
      writeFileSync(path, versions[0]!)
      const seen = yield* Ref.make(new Set<string>())
      const reader = yield* Effect.gen(function*() {
        const text = yield* Effect.promise(() => readFile(path, "utf8"))
        const complete = text.length === 256 * 1024 && text === text.charAt(0).repeat(text.length)
        yield* Ref.update(seen, (set) => set.add(complete ? "complete" : "partial"))
      }).pipe(Effect.forever, Effect.fork)
      for (const version of versions) {
        yield* writeFileAtomic(path, version)
      }
      yield* Fiber.interrupt(reader)
      assert.deepStrictEqual([...(yield* Ref.get(seen))], ["complete"])
      assert.strictEqual(readFileSync(path, "utf8"), versions.at(-1))
      assert.deepStrictEqual(readdirSync(dir), ["big.json"])
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("a failed replace leaves the target untouched and no temp file behind", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // Renaming a file over a non-empty directory fails.
      const path = join(dir, "occupied")
      mkdirSync(path)
      writeFileSync(join(path, "inside"), "keep")
      const result = yield* Effect.either(writeFileAtomic(path, "data"))
      assert.strictEqual(result._tag, "Left")
      assert.deepStrictEqual(readdirSync(dir), ["occupied"])
      assert.strictEqual(readFileSync(join(path, "inside"), "utf8"), "keep")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("createFileAtomic creates once and never overwrites", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "machine-id")
      const results = yield* Effect.all(
        ["first", "second", "third"].map((content) => createFileAtomic(path, content)),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(results.filter(Boolean).length, 1)
      const winner = ["first", "second", "third"][results.indexOf(true)]
      assert.strictEqual(readFileSync(path, "utf8"), winner)
      assert.strictEqual(modeOf(path), 0o600)
      assert.deepStrictEqual(readdirSync(dir), ["machine-id"])
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})
