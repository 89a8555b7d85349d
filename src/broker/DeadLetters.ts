import * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { join } from "node:path"
import { writeFileAtomic } from "../lib/AtomicFile.js"
import { DeliveryMode } from "../wire/frames.js"
import { Json } from "../wire/Json.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { PersistFailed } from "./errors.js"
import { EventLog } from "./EventLog.js"

// Deliveries that ended without reaching the agent's terminal. They are acked to the engine (so it
// does not redeliver forever) and kept here, visible and redeliverable: bounded, oldest evicted,
// persisted atomically to `<stateDir>/dead-letters.json` before the ack. An entry evicted to make
// room is a message given up for good: each one is published as upstream's `delivery_dropped`.

export const capacity = 500

export const DeadLetterReason = Schema.Literal(
  /** No live agent has the recipient's name. */
  "unknown_agent",
  /** `payload.type` is not one this broker knows. */
  "unsupported_type",
  /** The frame or its payload cannot be read (not a JSON object, a non-string type, a broken frame). */
  "undecodable",
  /** Seqs that never arrived within the gap grace period; the frames after them were surfaced. */
  "missing_upstream",
  /** Typing into the terminal kept failing after the retries. */
  "inject_failed",
  /** An unexpected failure (a defect) inside the broker while handling the frame; `detail` says which. */
  "internal_error"
)
export type DeadLetterReason = typeof DeadLetterReason.Type

export const SeqRange = Schema.Struct({ from: Schema.NonNegativeInt, to: Schema.NonNegativeInt })

export const DeadLetter = Schema.Struct({
  id: Schema.String,
  /** The recipient agent's name. */
  agent: Schema.String,
  agent_id: Schema.NullOr(Schema.String),
  msg_id: Schema.NullOr(Schema.String),
  delivery_id: Schema.NullOr(Schema.String),
  seq: Schema.NullOr(Schema.NonNegativeInt),
  mode: DeliveryMode,
  reason: DeadLetterReason,
  detail: Schema.String,
  /** ISO-8601. */
  time: Schema.String,
  /** The frame's payload; null for a gap (nothing arrived) or an unreadable frame. */
  payload: Schema.NullOr(Json),
  /** For `missing_upstream`: the skipped seqs. */
  gap: Schema.optionalWith(SeqRange, { exact: true }),
  /** Failed redelivery attempts so far. */
  redelivery_attempts: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 0 })
})
export type DeadLetter = typeof DeadLetter.Type

export type NewDeadLetter = Omit<DeadLetter, "id" | "time" | "redelivery_attempts">

const Persisted = Schema.Struct({
  v: Schema.Literal(1),
  next_id: Schema.NonNegativeInt,
  entries: Schema.Array(DeadLetter)
})
type Persisted = typeof Persisted.Type

export class DeadLetters extends Context.Tag("relay-broker/DeadLetters")<DeadLetters, {
  /** Records a dead letter (evicting the oldest beyond `capacity`) and persists; kept in memory even if the write fails. */
  readonly add: (entry: NewDeadLetter) => Effect.Effect<DeadLetter, PersistFailed>
  /** Oldest first. */
  readonly list: Effect.Effect<ReadonlyArray<DeadLetter>>
  readonly get: (id: string) => Effect.Effect<Option.Option<DeadLetter>>
  /** Drops entries (after a successful redelivery). */
  readonly remove: (ids: ReadonlyArray<string>) => Effect.Effect<void, PersistFailed>
  /** Counts a failed redelivery attempt. */
  readonly markAttempt: (id: string) => Effect.Effect<void, PersistFailed>
  readonly count: Effect.Effect<number>
}>() {}

export interface DeadLetterStorage {
  readonly load: Effect.Effect<Option.Option<Persisted>>
  readonly write: (state: Persisted) => Effect.Effect<void, PersistFailed>
}

export const memoryStorage: DeadLetterStorage = { load: Effect.succeedNone, write: () => Effect.void }

const decodePersisted = Schema.decodeUnknownOption(Schema.parseJson(Persisted))

export const fileStorage = (path: string): Effect.Effect<DeadLetterStorage, never, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    return {
      load: Effect.gen(function*() {
        const text = yield* fs.readFileString(path).pipe(Effect.option)
        if (Option.isNone(text)) return Option.none()
        const decoded = decodePersisted(text.value)
        if (Option.isNone(decoded)) {
          yield* Effect.logWarning("ignoring an unreadable dead-letter file").pipe(Effect.annotateLogs({ path }))
        }
        return decoded
      }),
      write: (state) =>
        writeFileAtomic(path, JSON.stringify(Schema.encodeSync(Persisted)(state))).pipe(
          Effect.provideService(FileSystem.FileSystem, fs),
          Effect.mapError((error) => new PersistFailed({ path, detail: error.message }))
        )
    }
  })

export const make = (storage: DeadLetterStorage, options?: { readonly capacity?: number }) =>
  Effect.gen(function*() {
    const limit = options?.capacity ?? capacity
    const initial = Option.getOrElse(yield* storage.load, (): Persisted => ({ v: 1, next_id: 1, entries: [] }))
    const state = yield* Ref.make<Persisted>(initial)
    const lock = yield* Effect.makeSemaphore(1)
    const events = yield* Effect.serviceOption(EventLog)

    /** Applies a change (then `applied`, even when the write fails) and writes the result, one change at a time. */
    const change = <A>(
      f: (current: Persisted, now: number) => readonly [A, Persisted],
      applied: (result: A) => Effect.Effect<void> = () => Effect.void
    ) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const [result, next] = yield* Ref.modify(state, (current) => {
          const [result, next] = f(current, now)
          return [[result, next] as const, next]
        })
        yield* applied(result)
        yield* storage.write(next)
        return result
      }))

    /** `delivery_dropped {name, count, reason}` for each entry evicted from the full store. */
    const publishEvicted = (evicted: ReadonlyArray<DeadLetter>) =>
      Option.isNone(events) ? Effect.void : Effect.forEach(evicted, (entry) =>
        events.value.publish("delivery_dropped", {
          name: entry.agent,
          count: 1,
          reason: `dead_letter_evicted: the dead-letter store is full (${limit}); ${entry.id} (${entry.reason}: ${entry.detail}) was dropped`
        }), { discard: true })

    const add = Effect.fn("DeadLetters.add")(function*(entry: NewDeadLetter) {
      const [letter] = yield* change(
        (current, now): readonly [readonly [DeadLetter, ReadonlyArray<DeadLetter>], Persisted] => {
          const letter: DeadLetter = {
            ...entry,
            id: `dl_${current.next_id}`,
            time: new Date(now).toISOString(),
            redelivery_attempts: 0
          }
          const entries = [...current.entries, letter]
          const kept = Math.max(0, entries.length - limit)
          return [[letter, entries.slice(0, kept)], { v: 1, next_id: current.next_id + 1, entries: entries.slice(kept) }]
        },
        ([, evicted]) => publishEvicted(evicted)
      )
      return letter
    })

    const remove = Effect.fn("DeadLetters.remove")(function*(ids: ReadonlyArray<string>) {
      const drop = new Set(ids)
      yield* change((current) => [undefined, { ...current, entries: current.entries.filter((entry) => !drop.has(entry.id)) }])
    })

    const markAttempt = Effect.fn("DeadLetters.markAttempt")(function*(id: string) {
      yield* change((current) => [undefined, {
        ...current,
        entries: current.entries.map((entry) =>
          entry.id === id ? { ...entry, redelivery_attempts: entry.redelivery_attempts + 1 } : entry
        )
      }])
    })

    return DeadLetters.of({
      add,
      list: Effect.map(Ref.get(state), (current) => current.entries),
      get: (id) => Effect.map(Ref.get(state), (current) => Option.fromNullable(current.entries.find((entry) => entry.id === id))),
      remove,
      markAttempt,
      count: Effect.map(Ref.get(state), (current) => current.entries.length)
    })
  })

export const deadLettersPath = (stateDir: string): string => join(stateDir, "dead-letters.json")

/** Persisted to `<stateDir>/dead-letters.json`. */
export const layer: Layer.Layer<DeadLetters, never, BrokerConfig | FileSystem.FileSystem> = Layer.effect(
  DeadLetters,
  Effect.gen(function*() {
    const config = yield* BrokerConfig
    return yield* make(yield* fileStorage(deadLettersPath(config.stateDir)))
  })
)

/** In memory only (tests). */
export const layerMemory: Layer.Layer<DeadLetters> = Layer.effect(DeadLetters, make(memoryStorage))
