import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import type { Json } from "../wire/Json.js"
import { extractFields } from "./deliveryPayload.js"
import { EventLog } from "./EventLog.js"

// Delivery modes per agent (control-api §3.3 `delivery-mode`, `pending`, `flush`). In `auto_inject`
// (the default) a frame goes straight to the agent's delivery worker. In `manual_flush` (a person is
// at the keyboard) frames wait here, in order, neither typed nor acked; a flush hands them to the
// worker, which types and acks them like any other frame. The queue is bounded: past the bound a
// frame is refused, never acked, so the engine keeps it and sends it again; a held frame is never
// evicted (upstream 9.1.6 evicted the oldest; 10.2 stopped).

export type DeliveryMode = "auto_inject" | "manual_flush"

/** What a held frame shows in `GET /api/spawned/{name}/pending`, and how it is handed on. */
export interface HeldFrame {
  readonly agent: string
  readonly msg_id: string
  readonly seq: number
  readonly mode: "wait" | "steer"
  readonly payload: Json
}

export interface PendingView {
  readonly from: string
  readonly body: string
  readonly target: string
  readonly priority: string | null
  readonly mode: "wait" | "steer"
  readonly queued_at_ms: number
  readonly thread_id?: string
  readonly event_id: string
  readonly seq: number
}

export interface ModeChange {
  readonly mode: DeliveryMode
  readonly previous_mode: DeliveryMode
  /** False when `expected` was given and the mode was something else: nothing changed. */
  readonly matched: boolean
  /** Frames typed by the flush that leaving `manual_flush` does. */
  readonly flushed: number
}

export class DeliveryHolds extends Context.Tag("relay-broker/DeliveryHolds")<DeliveryHolds, {
  readonly mode: (agent: string) => Effect.Effect<DeliveryMode>
  /** Sets the mode (only if it is `expected`, when given); leaving `manual_flush` flushes. */
  readonly setMode: (agent: string, mode: DeliveryMode, expected?: DeliveryMode) => Effect.Effect<ModeChange>
  /**
   * The delivery worker's gate: `forward` at once in `auto_inject`; in `manual_flush` the frame
   * waits (or is refused past the bound, unacked).
   */
  readonly admit: (frame: HeldFrame, forward: Effect.Effect<void>) => Effect.Effect<void>
  /** Called by the worker once it has handled a frame (typed, acked, or dead-lettered). */
  readonly settled: (agent: string, msgId: string) => Effect.Effect<void>
  readonly pending: (agent: string) => Effect.Effect<ReadonlyArray<PendingView>>
  /** Hands the held frames on in order; resolves with how many were handled within `flushWait`. */
  readonly flush: (agent: string, reason?: string) => Effect.Effect<number>
  /** Agents with held frames and their count (for `current_state` and `/api/status`). */
  readonly heldCounts: Effect.Effect<ReadonlyMap<string, number>>
}>() {}

export interface DeliveryHoldsOptions {
  /** Frames held per agent before new ones are refused (default 256). */
  readonly capacity?: number
  /** How long a flush waits for the worker to type what it handed on (default 30 s). */
  readonly flushWait?: Duration.DurationInput
}

interface Held {
  readonly frame: HeldFrame
  readonly queuedAt: number
  readonly forward: Effect.Effect<void>
}

interface AgentHold {
  readonly mode: DeliveryMode
  readonly held: ReadonlyArray<Held>
  readonly refused: number
}

const released: AgentHold = { mode: "auto_inject", held: [], refused: 0 }

export const makeWith = (options: DeliveryHoldsOptions = {}) =>
  Effect.gen(function*() {
    const events = yield* EventLog
    const capacity = options.capacity ?? 256
    const flushWait = options.flushWait ?? "30 seconds"
    const holds = yield* Ref.make<ReadonlyMap<string, AgentHold>>(new Map())
    /** Frames handed on by a flush, waiting for the worker: `agent\0msg_id`. */
    const waiting = new Map<string, Deferred.Deferred<void>>()
    // One gate: a frame arriving during a flush cannot overtake the held ones.
    const gate = yield* Effect.makeSemaphore(1)

    const holdOf = (agent: string) => Effect.map(Ref.get(holds), (current) => current.get(agent) ?? released)
    const put = (agent: string, hold: AgentHold) =>
      Ref.update(holds, (current) => {
        const next = new Map(current)
        if (hold.mode === "auto_inject" && hold.held.length === 0) next.delete(agent)
        else next.set(agent, hold)
        return next
      })

    const admit = (frame: HeldFrame, forward: Effect.Effect<void>) =>
      gate.withPermits(1)(Effect.gen(function*() {
        const hold = yield* holdOf(frame.agent)
        if (hold.mode === "auto_inject") return yield* forward
        if (hold.held.length >= capacity) {
          yield* put(frame.agent, { ...hold, refused: hold.refused + 1 })
          yield* Effect.logWarning("held deliveries at capacity: frame left unacked with the engine").pipe(
            Effect.annotateLogs({ agent: frame.agent, msg_id: frame.msg_id, seq: frame.seq, capacity })
          )
          yield* events.publish("delivery_deferred", {
            name: frame.agent,
            event_id: frame.msg_id,
            seq: frame.seq,
            reason: "held_queue_full",
            capacity
          })
          return
        }
        const queuedAt = yield* Clock.currentTimeMillis
        yield* put(frame.agent, { ...hold, held: [...hold.held, { frame, queuedAt, forward }] })
      }))

    const settled = (agent: string, msgId: string) =>
      Effect.sync(() => {
        const key = `${agent}\0${msgId}`
        const deferred = waiting.get(key)
        if (deferred === undefined) return
        waiting.delete(key)
        Deferred.unsafeDone(deferred, Effect.void)
      })

    /** Hands every held frame on (under the gate); the deferreds resolve as the worker handles them. */
    const handOn = (agent: string) =>
      Effect.gen(function*() {
        const hold = yield* holdOf(agent)
        yield* put(agent, { ...hold, held: [] })
        const handed: Array<Deferred.Deferred<void>> = []
        for (const entry of hold.held) {
          const deferred = yield* Deferred.make<void>()
          waiting.set(`${agent}\0${entry.frame.msg_id}`, deferred)
          handed.push(deferred)
          yield* entry.forward
        }
        return handed
      })

    const awaitHandled = (agent: string, handed: ReadonlyArray<Deferred.Deferred<void>>, reason: string) =>
      Effect.gen(function*() {
        let done = 0
        for (const deferred of handed) {
          const ok = yield* Deferred.await(deferred).pipe(Effect.timeoutOption(flushWait))
          if (Option.isNone(ok)) break
          done += 1
        }
        if (handed.length > 0) yield* events.publish("agent_pending_drained", { name: agent, count: done, reason })
        return done
      })

    const flush = (agent: string, reason = "flush") =>
      Effect.flatMap(gate.withPermits(1)(handOn(agent)), (handed) => awaitHandled(agent, handed, reason))

    const setMode = (agent: string, mode: DeliveryMode, expected?: DeliveryMode) =>
      Effect.gen(function*() {
        const change = yield* gate.withPermits(1)(Effect.gen(function*() {
          const hold = yield* holdOf(agent)
          if (expected !== undefined && hold.mode !== expected) {
            return { previous: hold.mode, matched: false, handed: [] as ReadonlyArray<Deferred.Deferred<void>> }
          }
          yield* put(agent, { ...hold, mode })
          const handed = mode === "auto_inject" ? yield* handOn(agent) : []
          if (hold.mode !== mode) {
            yield* events.publish("agent_inbound_delivery_mode_changed", { name: agent, previous_mode: hold.mode, mode })
          }
          return { previous: hold.mode, matched: true, handed }
        }))
        const flushed = yield* awaitHandled(agent, change.handed, "delivery_mode_auto_inject")
        const current = yield* holdOf(agent)
        return { mode: current.mode, previous_mode: change.previous, matched: change.matched, flushed } satisfies ModeChange
      })

    const pending = (agent: string) =>
      Effect.map(holdOf(agent), (hold) =>
        hold.held.map(({ frame, queuedAt }): PendingView => {
          const fields = extractFields(frame.payload, frame.agent)
          return {
            from: fields.from,
            body: fields.body,
            target: fields.target,
            priority: fields.priority === undefined ? null : String(fields.priority),
            mode: frame.mode,
            queued_at_ms: queuedAt,
            ...(fields.threadId === undefined ? {} : { thread_id: fields.threadId }),
            event_id: frame.msg_id,
            seq: frame.seq
          }
        }))

    const heldCounts = Effect.map(Ref.get(holds), (current) => {
      const counts = new Map<string, number>()
      for (const [agent, hold] of current) if (hold.held.length > 0) counts.set(agent, hold.held.length)
      return counts
    })

    // A released agent's hold goes with it: its held frames were never acked, so the engine keeps them.
    const subscription = yield* events.subscribe(undefined, { kinds: ["agent_released"] })
    yield* subscription.events.pipe(
      Stream.filter((event) => event.kind === "agent_released" && typeof event.name === "string"),
      Stream.runForEach((event) => gate.withPermits(1)(put(event.name as string, released))),
      Effect.forkScoped
    )

    return DeliveryHolds.of({
      mode: (agent) => Effect.map(holdOf(agent), (hold) => hold.mode),
      setMode,
      admit,
      settled,
      pending,
      flush,
      heldCounts
    })
  })

export const layer: Layer.Layer<DeliveryHolds, never, EventLog> = Layer.scoped(DeliveryHolds, makeWith())

export const layerWith = (options: DeliveryHoldsOptions): Layer.Layer<DeliveryHolds, never, EventLog> =>
  Layer.scoped(DeliveryHolds, makeWith(options))
