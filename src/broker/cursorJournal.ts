import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type FileHandle, open, readdir, readFile, unlink } from "node:fs/promises"
import { join } from "node:path"
import { writeFileAtomic } from "../lib/AtomicFile.js"
import type { AgentCursor } from "./deliveryDecisions.js"
import { seenCapacity } from "./deliveryDecisions.js"
import { PersistFailed } from "./errors.js"

// The delivery cursors on disk, written by group commit: a snapshot (`cursors.json`, written
// atomically) and a journal beside it (`journal-<generation>.jsonl`, appended). Every commit is one
// line appended with one fdatasync, whatever the number of agents in it; the line is the unit (a
// line torn by a crash belongs to a commit nobody acked, and is skipped on load). A cursor's `seen`
// ids go in as the ones added since the previous line of that agent. On load, and whenever the
// journal outgrows `journalLimit` or an append failed, the next commit writes a new snapshot and
// starts the next generation's journal (the snapshot names the generation it goes with, so a crash
// between the two never replays an older journal over a newer snapshot). Cursor files of the older
// one-file-per-agent layout are read once and folded into the first snapshot.

/** A change to one agent's cursor: the new cursor, or null when it was forgotten. */
export interface CursorChange {
  readonly agentId: string
  readonly cursor: AgentCursor | null
}

const PersistedCursor = Schema.Struct({
  v: Schema.Literal(1),
  agent_id: Schema.String,
  name: Schema.String,
  up_to_seq: Schema.NullOr(Schema.NonNegativeInt),
  baseline: Schema.NullOr(Schema.NonNegativeInt),
  seen: Schema.Array(Schema.String)
})
type PersistedCursor = typeof PersistedCursor.Type

const Snapshot = Schema.Struct({
  v: Schema.Literal(1),
  generation: Schema.NonNegativeInt,
  cursors: Schema.Array(PersistedCursor)
})

/** One agent in a journal line: a full cursor, its seen ids added since its previous entry, or a removal. */
const JournalEntry = Schema.Struct({
  agent_id: Schema.String,
  name: Schema.optional(Schema.String),
  up_to_seq: Schema.optional(Schema.NullOr(Schema.NonNegativeInt)),
  baseline: Schema.optional(Schema.NullOr(Schema.NonNegativeInt)),
  seen: Schema.optional(Schema.Array(Schema.String)),
  seen_add: Schema.optional(Schema.Array(Schema.String)),
  removed: Schema.optional(Schema.Literal(true))
})
type JournalEntry = typeof JournalEntry.Type
const JournalLine = Schema.Struct({ v: Schema.Literal(1), c: Schema.Array(JournalEntry) })

const decodeLegacy = Schema.decodeUnknownOption(Schema.parseJson(PersistedCursor))
const decodeSnapshot = Schema.decodeUnknownOption(Schema.parseJson(Snapshot))
const decodeLine = Schema.decodeUnknownOption(Schema.parseJson(JournalLine))

export const toPersisted = (cursor: AgentCursor): PersistedCursor => ({
  v: 1,
  agent_id: cursor.agentId,
  name: cursor.name,
  up_to_seq: cursor.upToSeq,
  baseline: cursor.baseline,
  seen: cursor.seen
})

export const fromPersisted = (persisted: PersistedCursor): AgentCursor => ({
  agentId: persisted.agent_id,
  name: persisted.name,
  upToSeq: persisted.up_to_seq,
  baseline: persisted.baseline,
  seen: persisted.seen.slice(-seenCapacity)
})

const sameIds = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) => a.length === b.length && a.every((id, i) => id === b[i])

/** `previous` plus the ids added after it, capped as the book caps them. */
const withAdded = (previous: ReadonlyArray<string>, added: ReadonlyArray<string>) => [...previous, ...added].slice(-seenCapacity)

/** The journal entry that turns `previous` (what the journal holds so far) into `change`. */
export const journalEntry = (previous: AgentCursor | undefined, change: CursorChange): JournalEntry => {
  const cursor = change.cursor
  if (cursor === null) return { agent_id: change.agentId, removed: true }
  const base = { agent_id: cursor.agentId, name: cursor.name, up_to_seq: cursor.upToSeq, baseline: cursor.baseline }
  const last = previous?.seen[previous.seen.length - 1]
  if (previous !== undefined && last !== undefined) {
    const added = cursor.seen.slice(cursor.seen.lastIndexOf(last) + 1)
    if (added.length < cursor.seen.length && sameIds(withAdded(previous.seen, added), cursor.seen)) return { ...base, seen_add: added }
  }
  return { ...base, seen: cursor.seen }
}

/** Applies one journal entry to the cursors read so far. */
export const applyEntry = (cursors: Map<string, AgentCursor>, entry: JournalEntry): void => {
  if (entry.removed === true) {
    cursors.delete(entry.agent_id)
    return
  }
  const previous = cursors.get(entry.agent_id)
  const seen = entry.seen ?? withAdded(previous?.seen ?? [], entry.seen_add ?? [])
  cursors.set(entry.agent_id, {
    agentId: entry.agent_id,
    name: entry.name ?? previous?.name ?? "",
    upToSeq: entry.up_to_seq ?? null,
    baseline: entry.baseline ?? null,
    seen: seen.slice(-seenCapacity)
  })
}

/** A new snapshot and journal generation once the journal is this long (bytes). */
export const journalLimit = 4 * 1024 * 1024

export const snapshotName = "cursors.json"
const journalName = (generation: number) => `journal-${generation}.jsonl`
const isJournal = (name: string) => /^journal-\d+\.jsonl$/.test(name)

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error))

const readText = (path: string) => readFile(path, "utf8").catch(() => undefined)

interface Loaded {
  readonly cursors: Map<string, AgentCursor>
  readonly generation: number
  readonly legacyFiles: ReadonlyArray<string>
  readonly skippedLines: number
}

const loadFrom = async (directory: string): Promise<Loaded> => {
  const names = await readdir(directory).catch((): Array<string> => [])
  const cursors = new Map<string, AgentCursor>()
  const snapshotText = await readText(join(directory, snapshotName))
  const snapshot = snapshotText === undefined ? Option.none() : decodeSnapshot(snapshotText)
  const legacyFiles = names.filter((name) => name.endsWith(".json") && !name.startsWith(".") && name !== snapshotName)
  if (Option.isSome(snapshot)) {
    for (const persisted of snapshot.value.cursors) cursors.set(persisted.agent_id, fromPersisted(persisted))
  } else {
    // The older layout: one file per agent (or nothing yet).
    for (const name of legacyFiles) {
      const decoded = Option.flatMap(Option.fromNullable(await readText(join(directory, name))), decodeLegacy)
      if (Option.isSome(decoded)) cursors.set(decoded.value.agent_id, fromPersisted(decoded.value))
    }
  }
  const generation = Option.isSome(snapshot) ? snapshot.value.generation : 0
  let skippedLines = 0
  const journal = Option.isSome(snapshot) ? await readText(join(directory, journalName(generation))) : undefined
  for (const line of journal?.split("\n") ?? []) {
    if (line.length === 0) continue
    const decoded = decodeLine(line)
    if (Option.isNone(decoded)) {
      skippedLines++
      continue
    }
    for (const entry of decoded.value.c) applyEntry(cursors, entry)
  }
  return { cursors, generation, legacyFiles, skippedLines }
}

/** The cursor store of the live layer, under `directory`. */
export const journalStorage = (directory: string, options: { readonly journalLimit?: number } = {}) =>
  Effect.gen(function*() {
    const loaded = yield* Effect.promise(() => loadFrom(directory))
    if (loaded.skippedLines > 0) {
      yield* Effect.logWarning("skipped unreadable delivery journal lines (a write cut short by a crash)").pipe(
        Effect.annotateLogs({ directory, lines: loaded.skippedLines })
      )
    }
    // What the files hold: the snapshot plus the journal lines written since.
    const durable = new Map(loaded.cursors)
    let generation = loaded.generation
    let journal: FileHandle | undefined
    let journalBytes = 0
    // Set at load (the first commit starts a fresh generation) and after a failed append.
    let needsSnapshot = true
    let legacyFiles = loaded.legacyFiles

    const failed = (path: string) => (error: unknown) => new PersistFailed({ path, detail: errorText(error) })

    /** A new snapshot of `cursors` for the next generation, its empty journal, the old files gone. */
    const writeSnapshot = (cursors: ReadonlyMap<string, AgentCursor>) =>
      Effect.gen(function*() {
        const next = generation + 1
        const snapshot = { v: 1 as const, generation: next, cursors: [...cursors.values()].map(toPersisted) }
        const snapshotPath = join(directory, snapshotName)
        yield* writeFileAtomic(snapshotPath, JSON.stringify(snapshot)).pipe(Effect.mapError(failed(snapshotPath)))
        const journalPath = join(directory, journalName(next))
        const opened = yield* Effect.tryPromise({ try: () => open(journalPath, "a", 0o600), catch: failed(journalPath) })
        const previous = journal
        journal = opened
        journalBytes = 0
        generation = next
        yield* Effect.promise(async () => {
          await previous?.close().catch(() => undefined)
          const stale = (await readdir(directory).catch((): Array<string> => [])).filter((name) => isJournal(name) && name !== journalName(next))
          for (const name of [...stale, ...legacyFiles]) await unlink(join(directory, name)).catch(() => undefined)
        })
        legacyFiles = []
      })

    const append = (handle: FileHandle, line: string) =>
      Effect.tryPromise({
        try: async () => {
          await handle.write(line)
          await handle.datasync()
        },
        catch: failed(join(directory, journalName(generation)))
      })

    const commit = (changes: ReadonlyArray<CursorChange>) =>
      Effect.gen(function*() {
        const next = new Map(durable)
        const entries: Array<JournalEntry> = []
        for (const change of changes) {
          entries.push(journalEntry(next.get(change.agentId), change))
          if (change.cursor === null) next.delete(change.agentId)
          else next.set(change.agentId, change.cursor)
        }
        if (needsSnapshot || journal === undefined || journalBytes > (options.journalLimit ?? journalLimit)) {
          yield* writeSnapshot(next)
          needsSnapshot = false
        } else {
          const line = `${JSON.stringify({ v: 1, c: entries })}\n`
          // A failed append may leave part of a line: the next commit starts a new generation instead.
          yield* append(journal, line).pipe(Effect.tapError(() => Effect.sync(() => (needsSnapshot = true))))
          journalBytes += line.length
        }
        durable.clear()
        for (const [id, cursor] of next) durable.set(id, cursor)
      })

    yield* Effect.addFinalizer(() => Effect.promise(() => journal?.close().catch(() => undefined) ?? Promise.resolve()))

    return {
      // What is durable now (a book made again over this store starts from it, as after a restart).
      load: Effect.sync(() => [...durable.values()]),
      commit,
      write: (cursor: AgentCursor) => commit([{ agentId: cursor.agentId, cursor }]),
      remove: (agentId: string) => Effect.ignore(commit([{ agentId, cursor: null }]))
    }
  })
