import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { DeliveriesOptions } from "./DeliveriesConfig.js"
import type { AgentCursor } from "./deliveryDecisions.js"
import type { DeliveryStats, DurabilityReport } from "./deliveryReport.js"
import { describeCause } from "./deliverySurface.js"
import type { DeliveryBook } from "./DeliveryBook.js"
import { PersistFailed } from "./errors.js"
import type { EventLog } from "./EventLog.js"
import type { NodeControl } from "./NodeControl.js"

// Durable acks. A cursor is saved before the ack that depends on it; when the save fails (an
// error or a defect of the store) the cursor stays in memory (the book keeps it, so its dedup
// still holds back the engine's redelivery), the ack waits, and the save is retried on
// `cursorSaveRetry` in the background until it succeeds; then the waiting ack is sent. The
// agent's later frames keep flowing meanwhile; their acks wait too. Once an ack is sent, each
// injected message it covers gets its `delivery_ack` event (upstream clients wait for it).

/** Doubling from the configured base, then every 5 s, until the save succeeds. */
export const cursorSaveRetry = (base: DeliveriesOptions["saveRetryBase"]) =>
  Schedule.exponential(base, 2).pipe(Schedule.union(Schedule.spaced("5 seconds")))

interface Failing {
  agentId: string
  error: string
  readonly since: number
  pendingAck: number | null
}

/** An agent whose cursor saves fail, for `/health`. */
export interface FailingSave {
  readonly agent: string
  readonly error: string
  readonly since: number
}

export interface CursorSaves {
  /** Persists the cursor; never fails (a failure starts the background retries). */
  readonly save: (name: string, cursor: AgentCursor) => Effect.Effect<void>
  /** Sends `delivery.ack` now if the agent's cursor is on disk, else once a save succeeds. */
  readonly ack: (name: string, upToSeq: number) => Effect.Effect<void>
  /** An injected message whose `delivery_ack` event waits for the ack covering its seq. */
  readonly awaitAck: (name: string, message: AwaitingAck) => Effect.Effect<void>
  readonly report: (name: string) => DurabilityReport
  readonly failing: Effect.Effect<ReadonlyArray<FailingSave>>
}

export interface AwaitingAck {
  readonly seq: number
  readonly delivery_id: string
  readonly event_id: string
}

export interface CursorSavesServices {
  readonly book: DeliveryBook["Type"]
  readonly node: NodeControl["Type"]
  readonly events: EventLog["Type"]
  readonly stats: DeliveryStats
  readonly options: DeliveriesOptions
  /** Where the retry fibers live. */
  readonly scope: Scope.Scope
}

/** A dying store counts as a failed save, retried like one. */
const asPersistFailed = <A>(effect: Effect.Effect<A, PersistFailed>) =>
  Effect.catchAllDefect(effect, (defect) =>
    Effect.fail(new PersistFailed({ path: "the delivery cursor", detail: describeCause(Cause.die(defect)) })))

export const makeCursorSaves = (services: CursorSavesServices): CursorSaves => {
  const { book, events, node, stats } = services
  const failing = new Map<string, Failing>()
  const awaiting = new Map<string, Array<AwaitingAck>>()
  const locks = new Map<string, Effect.Semaphore>()
  const retry = cursorSaveRetry(services.options.saveRetryBase)

  /** Saves, retries and acks of one agent never interleave: an ack is sent only for a cursor on disk. */
  const withLock = <A, E>(name: string, effect: Effect.Effect<A, E>) =>
    Effect.suspend(() => {
      let lock = locks.get(name)
      if (lock === undefined) {
        lock = Effect.unsafeMakeSemaphore(1)
        locks.set(name, lock)
      }
      return lock.withPermits(1)(effect)
    })

  const publishAcked = (name: string, upToSeq: number) =>
    Effect.suspend(() => {
      const waiting = awaiting.get(name) ?? []
      const acked = waiting.filter((message) => message.seq <= upToSeq)
      const rest = waiting.filter((message) => message.seq > upToSeq)
      if (rest.length > 0) awaiting.set(name, rest)
      else awaiting.delete(name)
      // `seq` is the event log's own number, so the frame's seq travels as `frame_seq`.
      return Effect.forEach(
        acked,
        (message) =>
          events.publish("delivery_ack", {
            name,
            delivery_id: message.delivery_id,
            event_id: message.event_id,
            frame_seq: message.seq
          }),
        { discard: true }
      )
    })

  const awaitAck = (name: string, message: AwaitingAck) =>
    Effect.sync(() => {
      awaiting.set(name, [...(awaiting.get(name) ?? []), message])
    })

  const sendAck = (name: string, upToSeq: number) =>
    Effect.gen(function*() {
      yield* node.send({ type: "delivery.ack", v: 1, agent: name, up_to_seq: upToSeq })
      const at = yield* Clock.currentTimeMillis
      yield* stats.update(name, (current) => ({ ...current, last_ack: { up_to_seq: upToSeq, at } }))
      yield* publishAcked(name, upToSeq)
    }).pipe(
      // A lost ack is covered by the next one (cumulative) and by the engine's redelivery, which the
      // cursor answers without typing again.
      Effect.catchAllDefect((defect) => Effect.logError("delivery.ack not sent", defect))
    )

  const recovered = (name: string, entry: Failing) =>
    Effect.gen(function*() {
      failing.delete(name)
      yield* Effect.logInfo("delivery cursor saved again; waiting ack sent").pipe(
        Effect.annotateLogs({ agent: name, pending_ack: entry.pendingAck })
      )
      if (entry.pendingAck !== null) yield* sendAck(name, entry.pendingAck)
    })

  const retryUntilSaved = (name: string) =>
    withLock(
      name,
      Effect.gen(function*() {
        const entry = failing.get(name)
        if (entry === undefined) return // a later save succeeded and sent the ack
        const result = yield* Effect.either(asPersistFailed(book.persist(entry.agentId)))
        if (result._tag === "Left") {
          entry.error = result.left.message
          return yield* result.left
        }
        yield* recovered(name, entry)
      })
    ).pipe(
      Effect.retry(retry),
      Effect.annotateLogs({ service: "Deliveries", agent: name })
    )

  const save = (name: string, cursor: AgentCursor) =>
    withLock(
      name,
      Effect.gen(function*() {
        const result = yield* Effect.either(asPersistFailed(book.save(cursor)))
        const entry = failing.get(name)
        if (result._tag === "Right") {
          // This save wrote the newest cursor: everything acked so far is on disk.
          if (entry !== undefined) yield* recovered(name, entry)
          return
        }
        const error = result.left.message
        yield* stats.setError(name, error)
        if (entry !== undefined) {
          entry.agentId = cursor.agentId
          entry.error = error
          return
        }
        failing.set(name, { agentId: cursor.agentId, error, since: yield* Clock.currentTimeMillis, pendingAck: null })
        yield* Effect.logError("delivery cursor not saved; its ack waits, the save is retried", result.left).pipe(
          Effect.annotateLogs({ agent: name })
        )
        yield* Effect.forkIn(retryUntilSaved(name), services.scope)
      })
    )

  const ack = (name: string, upToSeq: number) =>
    withLock(
      name,
      Effect.suspend(() => {
        const entry = failing.get(name)
        if (entry === undefined) return sendAck(name, upToSeq)
        entry.pendingAck = Math.max(entry.pendingAck ?? 0, upToSeq)
        return Effect.void
      })
    )

  const report = (name: string): DurabilityReport => {
    const entry = failing.get(name)
    return entry === undefined
      ? { cursor_saved: true, save_error: null, failing_since: null, pending_ack: null }
      : { cursor_saved: false, save_error: entry.error, failing_since: entry.since, pending_ack: entry.pendingAck }
  }

  return {
    save,
    ack,
    awaitAck,
    report,
    failing: Effect.sync(() => [...failing].map(([agent, entry]) => ({ agent, error: entry.error, since: entry.since })))
  }
}
