import { existsSync } from "node:fs"
import { readFile, rmdir, stat, unlink } from "node:fs/promises"
import { dirname } from "node:path"
import { writeFileAtomic } from "../lib/AtomicFile.js"
import * as Effect from "effect/Effect"

// What the MCP wiring changed in files outside the state dir (an agent's cwd, its HOME), so that
// releasing the agent puts them back: a file we created is deleted (and the folders we created for
// it, when empty); a file we merged into gets our entries taken out again, and when nobody touched it
// since, its original bytes back. Agents sharing a file (one cwd, one HOME) share one record: the
// file is restored when the last of them is released.

export interface FileRecord {
  readonly file: string
  /** The file's text and mode before the first change; undefined when it did not exist. */
  readonly original: { readonly text: string; readonly mode: number } | undefined
  /** Folders that did not exist before (deepest first). */
  readonly createdDirs: ReadonlyArray<string>
  /** The file's text after our last change. */
  readonly written: string
  /** False when the file already held an entry of ours (left by an earlier run): then only our entries are taken out. */
  readonly pristine: boolean
  /** Our entries: the value set at each path. */
  readonly entries: ReadonlyArray<{ readonly path: ReadonlyArray<string>; readonly value: unknown }>
  readonly users: ReadonlySet<string>
}

export type Ledger = ReadonlyMap<string, FileRecord>

export interface Snapshot {
  readonly original: FileRecord["original"]
  readonly createdDirs: ReadonlyArray<string>
}

const readText = async (file: string): Promise<string | undefined> => {
  try {
    return await readFile(file, "utf8")
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw error
  }
}

/** The file and its missing folders, before a change. */
export const snapshot = async (file: string): Promise<Snapshot> => {
  const missing: Array<string> = []
  for (let dir = dirname(file); !existsSync(dir) && dirname(dir) !== dir; dir = dirname(dir)) missing.push(dir)
  const text = await readText(file)
  return {
    original: text === undefined ? undefined : { text, mode: (await stat(file)).mode & 0o777 },
    createdDirs: missing
  }
}

/** The ledger with `user`'s change of `file` (its snapshot before, its text and entries after). */
export const record = (
  ledger: Ledger,
  user: string,
  change: {
    readonly file: string
    readonly before: Snapshot
    readonly written: string
    readonly pristine: boolean
    readonly entries: FileRecord["entries"]
  }
): Ledger => {
  const known = ledger.get(change.file)
  const entries = [...(known?.entries ?? [])]
  for (const entry of change.entries) {
    const index = entries.findIndex((e) => e.path.join("\0") === entry.path.join("\0"))
    if (index >= 0) entries[index] = entry
    else entries.push(entry)
  }
  return new Map(ledger).set(change.file, {
    file: change.file,
    original: known === undefined ? change.before.original : known.original,
    createdDirs: known === undefined ? change.before.createdDirs : known.createdDirs,
    written: change.written,
    pristine: known === undefined ? change.pristine : known.pristine,
    entries,
    users: new Set([...(known?.users ?? []), user])
  })
}

/** Drops `user` from every record; the records nobody uses any more are answered, to restore. */
export const release = (ledger: Ledger, user: string): { readonly ledger: Ledger; readonly restore: ReadonlyArray<FileRecord> } => {
  const next = new Map(ledger)
  const restore: Array<FileRecord> = []
  for (const [file, entry] of ledger) {
    if (!entry.users.has(user)) continue
    const users = new Set(entry.users)
    users.delete(user)
    if (users.size === 0) {
      next.delete(file)
      restore.push(entry)
    } else {
      next.set(file, { ...entry, users })
    }
  }
  return { ledger: next, restore }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

/** `root` without our entries (each only while it still holds what we set); parents we emptied go too. */
export const withoutEntries = (root: Record<string, unknown>, entries: FileRecord["entries"], original: unknown): Record<string, unknown> => {
  const result = structuredClone(root)
  for (const { path, value } of entries) {
    const parents: Array<Record<string, unknown>> = [result]
    for (const key of path.slice(0, -1)) {
      const child = parents[parents.length - 1]![key]
      if (!isRecord(child)) break
      parents.push(child)
    }
    if (parents.length !== path.length) continue
    const last = path[path.length - 1]!
    const holder = parents[parents.length - 1]!
    if (JSON.stringify(holder[last]) !== JSON.stringify(value)) continue
    delete holder[last]
    // Parents left empty that the original did not have.
    for (let depth = path.length - 1; depth > 0; depth--) {
      const node = parents[depth]!
      let before: unknown = original
      for (const key of path.slice(0, depth)) before = isRecord(before) ? before[key] : undefined
      if (Object.keys(node).length === 0 && before === undefined) delete parents[depth - 1]![path[depth - 1]!]
    }
  }
  return result
}

const restoreFile = async (entry: FileRecord): Promise<string> => {
  const current = await readText(entry.file)
  if (current === undefined) return `${entry.file} is gone`
  if (entry.pristine && current === entry.written) {
    if (entry.original === undefined) {
      await unlink(entry.file)
      return `removed ${entry.file}`
    }
    await Effect.runPromise(writeFileAtomic(entry.file, entry.original.text, { mode: entry.original.mode }))
    return `restored ${entry.file}`
  }
  // Changed since we wrote it: take out only our entries.
  let root: unknown
  try {
    root = JSON.parse(current)
  } catch {
    return `${entry.file} changed and is not JSON: left as it is`
  }
  if (!isRecord(root)) return `${entry.file} changed: left as it is`
  const original = entry.original === undefined ? undefined : JSON.parse(entry.original.text) as unknown
  const rest = withoutEntries(root, entry.entries, original)
  if (entry.original === undefined && Object.keys(rest).length === 0) {
    await unlink(entry.file)
    return `removed ${entry.file}`
  }
  const mode = (await stat(entry.file)).mode & 0o777
  await Effect.runPromise(writeFileAtomic(entry.file, `${JSON.stringify(rest, null, 2)}\n`, { mode }))
  return `took the agent-relay entries out of ${entry.file}`
}

/** Puts the files back; answers what was done, one line each (a failure is a line too, never thrown). */
export const restore = (records: ReadonlyArray<FileRecord>): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(async () => {
    const notes: Array<string> = []
    for (const entry of records) {
      try {
        notes.push(await restoreFile(entry))
      } catch (error) {
        notes.push(`could not restore ${entry.file}: ${(error as Error).message}`)
      }
      for (const dir of entry.createdDirs) await rmdir(dir).catch(() => undefined)
    }
    return notes
  })
