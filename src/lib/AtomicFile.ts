import { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { basename, dirname, join } from "node:path"

// Crash-safe file writes: a reader (or a restart after a crash) sees either the old content or the
// new content, never a partial file. Used for tokens, cursors, dead letters and connection.json.

export interface AtomicWriteOptions {
  /** File mode of the result, applied exactly (not masked by the umask). Default 0o600. */
  readonly mode?: number
}

const encoder = new TextEncoder()

const toBytes = (content: string | Uint8Array): Uint8Array =>
  typeof content === "string" ? encoder.encode(content) : content

/** Writes `content` to a fresh temp file next to `path`, fsyncs it and sets its mode. Returns the temp path. */
const writeTemp = (fs: FileSystem.FileSystem, path: string, content: string | Uint8Array, mode: number) =>
  Effect.gen(function*() {
    const dir = dirname(path)
    yield* fs.makeDirectory(dir, { recursive: true })
    const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`)
    yield* Effect.scoped(
      Effect.gen(function*() {
        const file = yield* fs.open(temp, { flag: "wx", mode })
        yield* file.writeAll(toBytes(content))
        yield* file.sync
      })
    ).pipe(Effect.tapError(() => fs.remove(temp).pipe(Effect.ignore)))
    yield* fs.chmod(temp, mode).pipe(Effect.tapError(() => fs.remove(temp).pipe(Effect.ignore)))
    return temp
  })

/** fsync the directory so the rename itself survives a crash. Best effort: not every platform allows it. */
const syncDirectory = (fs: FileSystem.FileSystem, dir: string) =>
  Effect.scoped(Effect.flatMap(fs.open(dir, { flag: "r" }), (handle) => handle.sync)).pipe(Effect.ignore)

/**
 * Atomically replaces `path` with `content`: temp file in the same directory, write, fsync, chmod,
 * rename, fsync of the directory. Parent directories are created. On failure the temp file is removed
 * and `path` is untouched.
 */
export const writeFileAtomic = Effect.fn("AtomicFile.writeFileAtomic")(function*(
  path: string,
  content: string | Uint8Array,
  options?: AtomicWriteOptions
): Effect.fn.Return<void, PlatformError, FileSystem.FileSystem> {
  const fs = yield* FileSystem.FileSystem
  const temp = yield* writeTemp(fs, path, content, options?.mode ?? 0o600)
  yield* fs.rename(temp, path).pipe(Effect.tapError(() => fs.remove(temp).pipe(Effect.ignore)))
  yield* syncDirectory(fs, dirname(path))
})

/**
 * Creates `path` with `content` only if it does not exist yet, atomically (a hard link of a complete
 * temp file, so two racing writers never both "win" and no one sees a partial file).
 * Succeeds with `true` when this call created the file, `false` when it already existed.
 */
export const createFileAtomic = Effect.fn("AtomicFile.createFileAtomic")(function*(
  path: string,
  content: string | Uint8Array,
  options?: AtomicWriteOptions
): Effect.fn.Return<boolean, PlatformError, FileSystem.FileSystem> {
  const fs = yield* FileSystem.FileSystem
  const temp = yield* writeTemp(fs, path, content, options?.mode ?? 0o600)
  const created = yield* fs.link(temp, path).pipe(
    Effect.as(true),
    Effect.catchIf(
      (error) => error._tag === "SystemError" && error.reason === "AlreadyExists",
      () => Effect.succeed(false)
    ),
    Effect.ensuring(fs.remove(temp).pipe(Effect.ignore))
  )
  if (created) yield* syncDirectory(fs, dirname(path))
  return created
})
