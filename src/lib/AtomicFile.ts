import type { PlatformError, SystemErrorReason } from "@effect/platform/Error"
import { BadArgument, SystemError } from "@effect/platform/Error"
import * as Effect from "effect/Effect"
import { randomBytes } from "node:crypto"
import { type FileHandle, link, mkdir, open, rename, unlink } from "node:fs/promises"
import { basename, dirname, join } from "node:path"

// Crash-safe file writes: a reader (or a restart after a crash) sees either the old content or the
// new content, never a partial file. Used for tokens, cursors, dead letters and connection.json.
// Plain node:fs/promises rather than @effect/platform's FileSystem: this is on the hot path of every
// delivery (a cursor save before each ack) and the platform layer costs noticeably more CPU per write.

export interface AtomicWriteOptions {
  /** File mode of the result, applied exactly (not masked by the umask). Default 0o600. */
  readonly mode?: number
}

const reasonOf = (code: string | undefined): SystemErrorReason => {
  switch (code) {
    case "ENOENT":
      return "NotFound"
    case "EACCES":
      return "PermissionDenied"
    case "EEXIST":
      return "AlreadyExists"
    case "EISDIR":
    case "ENOTDIR":
    case "ELOOP":
      return "BadResource"
    case "EBUSY":
      return "Busy"
    default:
      return "Unknown"
  }
}

/** The same PlatformError the @effect/platform FileSystem would report for this failure. */
const toPlatformError = (method: string, path: string) => (cause: unknown): PlatformError => {
  const err = cause as NodeJS.ErrnoException
  return typeof err?.errno === "number"
    ? new SystemError({
      reason: reasonOf(err.code),
      module: "FileSystem",
      method,
      pathOrDescriptor: path,
      ...(err.syscall !== undefined ? { syscall: err.syscall } : {}),
      description: err.message,
      cause
    })
    : new BadArgument({ module: "FileSystem", method, description: String(err?.message ?? cause), cause })
}

/** A failed step: which FileSystem method, on which path, for the PlatformError. */
class StepFailed {
  constructor(readonly method: string, readonly path: string, readonly cause: unknown) {}
}

const step = async <A>(method: string, path: string, signal: AbortSignal, run: () => Promise<A>): Promise<A> => {
  // Interruption stops the sequence between steps, as the step-per-effect version did.
  if (signal.aborted) throw new StepFailed(method, path, signal.reason)
  try {
    return await run()
  } catch (cause) {
    throw new StepFailed(method, path, cause)
  }
}

const unlinkQuietly = (path: string) => unlink(path).catch(() => undefined)

/** Opens `temp` exclusively; the parent directory is created only when it is missing (rare). */
const openTemp = async (temp: string, mode: number, signal: AbortSignal): Promise<FileHandle> => {
  try {
    return await step("open", temp, signal, () => open(temp, "wx", mode))
  } catch (error) {
    if (!(error instanceof StepFailed) || (error.cause as NodeJS.ErrnoException)?.code !== "ENOENT") throw error
  }
  await step("makeDirectory", dirname(temp), signal, () => mkdir(dirname(temp), { recursive: true }))
  return step("open", temp, signal, () => open(temp, "wx", mode))
}

/** Writes `content` to a fresh temp file next to `path`, fsyncs it and sets its mode. Returns the temp path. */
const writeTemp = async (path: string, content: string | Uint8Array, mode: number, signal: AbortSignal) => {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`)
  const file = await openTemp(temp, mode, signal)
  try {
    await step("write", temp, signal, () => file.writeFile(content))
    await step("sync", temp, signal, () => file.sync())
    // The open mode is masked by the umask; fchmod applies it exactly.
    await step("chmod", temp, signal, () => file.chmod(mode))
  } catch (error) {
    await file.close().catch(() => undefined)
    await unlinkQuietly(temp)
    throw error
  }
  await file.close().catch(() => undefined)
  return temp
}

/** fsync the directory so the rename itself survives a crash. Best effort: not every platform allows it. */
const syncDirectory = async (dir: string) => {
  try {
    const handle = await open(dir, "r")
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  } catch {
    // ignored: best effort
  }
}

/** One promise for the whole sequence: an Effect per syscall costs more CPU than the syscalls. */
const run = <A>(body: (signal: AbortSignal) => Promise<A>) =>
  Effect.tryPromise({
    try: body,
    catch: (error) =>
      error instanceof StepFailed
        ? toPlatformError(error.method, error.path)(error.cause)
        : toPlatformError("unknown", "")(error)
  })

/**
 * Atomically replaces `path` with `content`: temp file in the same directory, write, fsync, chmod,
 * rename, fsync of the directory. Parent directories are created. On failure the temp file is removed
 * and `path` is untouched.
 */
export const writeFileAtomic = Effect.fn("AtomicFile.writeFileAtomic")(function*(
  path: string,
  content: string | Uint8Array,
  options?: AtomicWriteOptions
): Effect.fn.Return<void, PlatformError> {
  yield* run(async (signal) => {
    const temp = await writeTemp(path, content, options?.mode ?? 0o600, signal)
    try {
      await step("rename", temp, signal, () => rename(temp, path))
    } catch (error) {
      await unlinkQuietly(temp)
      throw error
    }
    await syncDirectory(dirname(path))
  })
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
): Effect.fn.Return<boolean, PlatformError> {
  return yield* run(async (signal) => {
    const temp = await writeTemp(path, content, options?.mode ?? 0o600, signal)
    try {
      await step("link", temp, signal, () => link(temp, path))
    } catch (error) {
      if (error instanceof StepFailed && (error.cause as NodeJS.ErrnoException)?.code === "EEXIST") return false
      throw error
    } finally {
      await unlinkQuietly(temp)
    }
    await syncDirectory(dirname(path))
    return true
  })
})
