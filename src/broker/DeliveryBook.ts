import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { join } from "node:path"
import { BrokerConfig } from "./BrokerConfig.js"
import { type CursorChange, journalStorage } from "./cursorJournal.js"
import type { AgentCursor } from "./deliveryDecisions.js"
import { PersistFailed } from "./errors.js"

// The per-agent delivery cursors (the decisions are in deliveryDecisions.ts), kept in memory and,
// in the live layer, under `<stateDir>/deliveries/` (cursorJournal.ts), durable before the ack that
// depends on them is sent. Saves are group-committed: every save made while no write runs (in the
// same tick), or while one does, goes into the next single write, and each save completes when
// that write does. A restarted broker resumes from them.

export type { CursorChange } from "./cursorJournal.js"

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

/** A file name for an agent id in the older one-file-per-agent layout (still read once, on load). */
export const cursorFileName = (agentId: string): string => {
  const safe = agentId.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_")
  return `${safe.length === 0 ? "agent" : safe}.json`
}

/** Where the cursors go, and how. `memory` keeps them for the process only (tests). */
export interface BookStorage {
  readonly load: Effect.Effect<ReadonlyArray<AgentCursor>>
  readonly write: (cursor: AgentCursor) => Effect.Effect<void, PersistFailed>
  readonly remove: (agentId: string) => Effect.Effect<void>
  /** Every change of one commit in one durable write. Absent: `write`/`remove` each, in order. */
  readonly commit?: (changes: ReadonlyArray<CursorChange>) => Effect.Effect<void, PersistFailed>
}

export const memoryStorage: BookStorage = {
  load: Effect.succeed([]),
  write: () => Effect.void,
  remove: () => Effect.void
}

/** The live store: a snapshot and a journal under `directory` (cursorJournal.ts). */
export const fileStorage = (
  directory: string,
  options?: { readonly journalLimit?: number }
): Effect.Effect<BookStorage, never, Scope.Scope> => journalStorage(directory, options)

const commitEach = (storage: BookStorage) => (changes: ReadonlyArray<CursorChange>) =>
  Effect.forEach(
    changes,
    (change) => change.cursor === null ? storage.remove(change.agentId) : storage.write(change.cursor),
    { discard: true }
  )

/** Saves gathered while no write runs, or while one does: written together, each waiting for that write. */
interface Batch {
  readonly agentIds: Set<string>
  readonly done: Deferred.Deferred<void, PersistFailed>
}

export const make = (storage: BookStorage) =>
  Effect.gen(function*() {
    const loaded = yield* storage.load
    const scope = yield* Effect.scope
    const cursors = new Map<string, AgentCursor>(loaded.map((cursor) => [cursor.agentId, cursor]))
    // The cursor the store holds per agent id, as far as this process knows (absent: none).
    const onDisk = new Map<string, AgentCursor>(loaded.map((cursor) => [cursor.agentId, cursor]))
    const commitChanges = storage.commit ?? commitEach(storage)
    let gathering: Batch | null = null
    let writing = false

    /** One write for the batch: each agent's file brought in line with its cursor in memory (or removed). */
    const writeBatch = (batch: Batch) =>
      Effect.gen(function*() {
        const changes: Array<CursorChange> = []
        for (const agentId of batch.agentIds) {
          const current = cursors.get(agentId)
          if (onDisk.get(agentId) !== current) changes.push({ agentId, cursor: current ?? null })
        }
        const result = changes.length === 0
          ? Exit.void
          : yield* Effect.exit(commitChanges(changes).pipe(
            Effect.catchAllDefect((defect) => new PersistFailed({ path: "the delivery cursors", detail: String(defect) }))
          ))
        if (Exit.isSuccess(result)) {
          for (const change of changes) {
            if (change.cursor === null) onDisk.delete(change.agentId)
            else onDisk.set(change.agentId, change.cursor)
          }
        }
        yield* Deferred.done(batch.done, result)
      })

    // Group commit: the first save starts the writer, which lets the fibers ready in this tick join
    // the batch, writes it, then writes whatever gathered meanwhile, until nothing waits.
    const writer = Effect.gen(function*() {
      yield* Effect.yieldNow()
      while (gathering !== null) {
        const batch: Batch = gathering
        gathering = null
        yield* writeBatch(batch)
      }
      writing = false
    })

    /** Marks the agents' cursors for the next write and waits for it; fails when that write fails. */
    const sync = (agentIds: ReadonlyArray<string>) =>
      Effect.suspend(() => {
        const batch: Batch = gathering ??= { agentIds: new Set(), done: Deferred.unsafeMake(FiberId.none) }
        for (const agentId of agentIds) batch.agentIds.add(agentId)
        if (writing) return Deferred.await(batch.done)
        writing = true
        return Effect.zipRight(Effect.forkIn(writer, scope), Deferred.await(batch.done))
      })

    const dropWhere = (drop: (id: string, cursor: AgentCursor) => boolean): Array<string> => {
      const dropped: Array<string> = []
      for (const [id, cursor] of cursors) {
        if (drop(id, cursor)) dropped.push(id)
      }
      for (const id of dropped) cursors.delete(id)
      return dropped
    }

    const forget = Effect.fn("DeliveryBook.forget")(function*(agent: { readonly name: string; readonly agentId: string }) {
      const dropped = dropWhere((id, cursor) => id === agent.agentId || cursor.name === agent.name)
      // A failed write here belongs to a `save` that re-added the cursor meanwhile: it reports it.
      if (dropped.length > 0) yield* Effect.ignore(sync(dropped))
    })

    /** Another agent id with the same name is dropped: the name now belongs to this one. */
    const save = (cursor: AgentCursor) =>
      Effect.suspend(() => {
        const displaced = dropWhere((id, other) => id !== cursor.agentId && other.name === cursor.name)
        cursors.set(cursor.agentId, cursor)
        return sync([...displaced, cursor.agentId])
      })

    return DeliveryBook.of({
      forget,
      get: (agentId) => Effect.sync(() => Option.fromNullable(cursors.get(agentId))),
      save,
      persist: (agentId) => sync([agentId]),
      list: Effect.sync(() => [...cursors.values()]),
      adoptServerCursor: (agent, ackSeq) =>
        Effect.suspend(() => {
          if (ackSeq <= 0) return Effect.void
          const local = cursors.get(agent.agentId)
          if (local?.upToSeq != null && local.upToSeq >= ackSeq) return Effect.void
          return save({ agentId: agent.agentId, name: local?.name ?? agent.name, upToSeq: ackSeq, baseline: null, seen: local?.seen ?? [] })
        })
    })
  })

/** The cursors directory under the state dir. */
export const cursorsDirectory = (stateDir: string): string => join(stateDir, "deliveries")

/** Persisted under `<stateDir>/deliveries/`. */
export const layer: Layer.Layer<DeliveryBook, never, BrokerConfig> = Layer.scoped(
  DeliveryBook,
  Effect.gen(function*() {
    const config = yield* BrokerConfig
    return yield* make(yield* fileStorage(cursorsDirectory(config.stateDir)))
  })
)

/** In memory only (tests). */
export const layerMemory: Layer.Layer<DeliveryBook> = Layer.scoped(DeliveryBook, make(memoryStorage))
