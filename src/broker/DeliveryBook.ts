import * as FileSystem from "@effect/platform/FileSystem"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { join } from "node:path"
import { writeFileAtomic } from "../lib/AtomicFile.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { type AgentCursor, seenCapacity } from "./deliveryDecisions.js"
import { PersistFailed } from "./errors.js"

// The per-agent delivery cursors (the decisions are in deliveryDecisions.ts), kept in memory and,
// in the live layer, one JSON file per agent under `<stateDir>/deliveries/`, written atomically
// before the ack that depends on it is sent. A restarted broker resumes from them.

export class DeliveryBook extends Context.Tag("relay-broker/DeliveryBook")<DeliveryBook, {
  /** Drops an agent's cursor and seen set (release, exit). */
  readonly forget: (agent: { readonly name: string; readonly agentId: string }) => Effect.Effect<void>
  /** The cursor of an agent id, if any. */
  readonly get: (agentId: string) => Effect.Effect<Option.Option<AgentCursor>>
  /**
   * Keeps the cursor and persists it (before the caller acks). Another agent id with the same name
   * is dropped: the name now belongs to this one. Fails only when the disk write fails; the cursor is
   * kept in memory even then.
   */
  readonly save: (cursor: AgentCursor) => Effect.Effect<void, PersistFailed>
  /**
   * Brings the agent's file in line with its cursor in memory (the newest cursor written, or the file
   * removed after a `forget`): the retry of a failed `save`.
   */
  readonly persist: (agentId: string) => Effect.Effect<void, PersistFailed>
  readonly list: Effect.Effect<ReadonlyArray<AgentCursor>>
  /**
   * The engine's `delivery_ack_seq` for an agent (relay:delivery-cursor-v1): starts its cursor
   * there, or moves a cursor that is behind up to it; a local cursor at or past it is kept. Frames
   * at or below it are then stale, the next one is `ackSeq + 1`.
   */
  readonly adoptServerCursor: (agent: { readonly agentId: string; readonly name: string }, ackSeq: number) => Effect.Effect<void, PersistFailed>
}>() {}

const PersistedCursor = Schema.Struct({
  v: Schema.Literal(1),
  agent_id: Schema.String,
  name: Schema.String,
  up_to_seq: Schema.NullOr(Schema.NonNegativeInt),
  baseline: Schema.NullOr(Schema.NonNegativeInt),
  seen: Schema.Array(Schema.String)
})
type PersistedCursor = typeof PersistedCursor.Type

const toPersisted = (cursor: AgentCursor): PersistedCursor => ({
  v: 1,
  agent_id: cursor.agentId,
  name: cursor.name,
  up_to_seq: cursor.upToSeq,
  baseline: cursor.baseline,
  seen: cursor.seen
})

const fromPersisted = (persisted: PersistedCursor): AgentCursor => ({
  agentId: persisted.agent_id,
  name: persisted.name,
  upToSeq: persisted.up_to_seq,
  baseline: persisted.baseline,
  seen: persisted.seen.slice(-seenCapacity)
})

const decodePersisted = Schema.decodeUnknownOption(Schema.parseJson(PersistedCursor))

/** A file name for an agent id: engine ids are opaque, so anything but `[A-Za-z0-9._-]` is replaced. */
export const cursorFileName = (agentId: string): string => {
  const safe = agentId.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_")
  return `${safe.length === 0 ? "agent" : safe}.json`
}

/** Where the cursors go, and how. `memory` keeps them for the process only (tests). */
export interface BookStorage {
  readonly load: Effect.Effect<ReadonlyArray<AgentCursor>>
  readonly write: (cursor: AgentCursor) => Effect.Effect<void, PersistFailed>
  readonly remove: (agentId: string) => Effect.Effect<void>
}

export const memoryStorage: BookStorage = {
  load: Effect.succeed([]),
  write: () => Effect.void,
  remove: () => Effect.void
}

export const fileStorage = (directory: string): Effect.Effect<BookStorage, never, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const provide = Effect.provideService(FileSystem.FileSystem, fs)
    const load = Effect.gen(function*() {
      const names = yield* fs.readDirectory(directory).pipe(Effect.orElseSucceed((): ReadonlyArray<string> => []))
      const cursors: Array<AgentCursor> = []
      for (const name of names) {
        if (!name.endsWith(".json") || name.startsWith(".")) continue
        const path = join(directory, name)
        const text = yield* fs.readFileString(path).pipe(Effect.option)
        const decoded = Option.flatMap(text, decodePersisted)
        if (Option.isSome(decoded)) {
          cursors.push(fromPersisted(decoded.value))
        } else {
          yield* Effect.logWarning("ignoring an unreadable delivery cursor file").pipe(Effect.annotateLogs({ path }))
        }
      }
      return cursors
    })
    return {
      load,
      write: (cursor) => {
        const path = join(directory, cursorFileName(cursor.agentId))
        return writeFileAtomic(path, JSON.stringify(toPersisted(cursor))).pipe(
          provide,
          Effect.mapError((error) => new PersistFailed({ path, detail: error.message }))
        )
      },
      remove: (agentId) => fs.remove(join(directory, cursorFileName(agentId))).pipe(Effect.ignore)
    }
  })

export const make = (storage: BookStorage) =>
  Effect.gen(function*() {
    const loaded = yield* storage.load
    const cursors = yield* Ref.make<ReadonlyMap<string, AgentCursor>>(
      new Map(loaded.map((cursor) => [cursor.agentId, cursor]))
    )
    // The cursor each file holds, as far as this process knows (absent: no file).
    const onDisk = new Map<string, AgentCursor>(loaded.map((cursor) => [cursor.agentId, cursor]))
    // One writer per file, not one for the book: agents' saves run in parallel.
    const fileLocks = new Map<string, { readonly lock: Effect.Semaphore; users: number }>()

    const withFileLock = <A, E>(agentId: string, effect: Effect.Effect<A, E>) =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          let entry = fileLocks.get(agentId)
          if (entry === undefined) {
            entry = { lock: Effect.unsafeMakeSemaphore(1), users: 0 }
            fileLocks.set(agentId, entry)
          }
          entry.users++
          return entry
        }),
        (entry) => entry.lock.withPermits(1)(effect),
        (entry) =>
          Effect.sync(() => {
            if (--entry.users === 0) fileLocks.delete(agentId)
          })
      )

    // Brings an agent's file in line with its cursor in memory, whatever happened in between: the
    // newest cursor is written, or the file removed when the cursor is gone (so a `forget` racing a
    // `save` cannot resurrect a file). Saves queued behind a write are coalesced into the next one.
    const sync = (agentId: string) =>
      withFileLock(
        agentId,
        Effect.gen(function*() {
          const current = (yield* Ref.get(cursors)).get(agentId)
          if (onDisk.get(agentId) === current) return
          if (current === undefined) {
            yield* storage.remove(agentId)
            onDisk.delete(agentId)
          } else {
            yield* storage.write(current)
            onDisk.set(agentId, current)
          }
        })
      )

    const forget = Effect.fn("DeliveryBook.forget")(function*(agent: { readonly name: string; readonly agentId: string }) {
      const dropped = yield* Ref.modify(cursors, (current): [ReadonlyArray<string>, ReadonlyMap<string, AgentCursor>] => {
        const next = new Map(current)
        const dropped: Array<string> = []
        for (const [id, cursor] of current) {
          if (id === agent.agentId || cursor.name === agent.name) {
            next.delete(id)
            dropped.push(id)
          }
        }
        return [dropped, next]
      })
      // A failed write here belongs to a `save` that re-added the cursor meanwhile: it reports it.
      yield* Effect.forEach(dropped, (id) => Effect.ignore(sync(id)), { discard: true })
    })

    const save = Effect.fn("DeliveryBook.save")(function*(cursor: AgentCursor) {
      const displaced = yield* Ref.modify(cursors, (current): [ReadonlyArray<string>, ReadonlyMap<string, AgentCursor>] => {
        const next = new Map(current)
        const displaced: Array<string> = []
        for (const [id, other] of current) {
          if (id !== cursor.agentId && other.name === cursor.name) {
            next.delete(id)
            displaced.push(id)
          }
        }
        next.set(cursor.agentId, cursor)
        return [displaced, next]
      })
      yield* Effect.forEach(displaced, (id) => Effect.ignore(sync(id)), { discard: true })
      yield* sync(cursor.agentId)
    })

    return DeliveryBook.of({
      forget,
      get: (agentId) => Effect.map(Ref.get(cursors), (current) => Option.fromNullable(current.get(agentId))),
      save,
      persist: sync,
      list: Effect.map(Ref.get(cursors), (current) => [...current.values()]),
      adoptServerCursor: (agent, ackSeq) =>
        Effect.gen(function*() {
          if (ackSeq <= 0) return
          const local = (yield* Ref.get(cursors)).get(agent.agentId)
          if (local?.upToSeq != null && local.upToSeq >= ackSeq) return
          yield* save({ agentId: agent.agentId, name: local?.name ?? agent.name, upToSeq: ackSeq, baseline: null, seen: local?.seen ?? [] })
        })
    })
  })

/** The cursors directory under the state dir. */
export const cursorsDirectory = (stateDir: string): string => join(stateDir, "deliveries")

/** Persisted under `<stateDir>/deliveries/`. */
export const layer: Layer.Layer<DeliveryBook, never, BrokerConfig | FileSystem.FileSystem> = Layer.effect(
  DeliveryBook,
  Effect.gen(function*() {
    const config = yield* BrokerConfig
    return yield* make(yield* fileStorage(cursorsDirectory(config.stateDir)))
  })
)

/** In memory only (tests). */
export const layerMemory: Layer.Layer<DeliveryBook> = Layer.effect(DeliveryBook, make(memoryStorage))
