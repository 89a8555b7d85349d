import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type { CursorSaves } from "./cursorSaves.js"
import type { DeliveriesOptions } from "./DeliveriesConfig.js"
import {
  type AgentState,
  deadline,
  emptyCursor,
  initialState,
  step,
  type StepEffect,
  type StepEvent
} from "./deliveryDecisions.js"
import type { DeliveryStats, WorkerStep } from "./deliveryReport.js"
import { describeCause, type Incoming, type StepTracker, type Surface, type SurfaceOutcome } from "./deliverySurface.js"
import type { DeliveryBook } from "./DeliveryBook.js"
import type { EventLog } from "./EventLog.js"

// One agent's delivery worker: its frames in order, one at a time. Per frame: decide
// (deliveryDecisions.step), surface, save the cursor, ack. It cannot die silently: a failure while
// handling a frame ends that frame in a visible state (dead-lettered as `internal_error` when
// nothing else did) and the worker goes on; if the worker still ends on a defect, its supervisor
// restarts it at once from the book's cursor (held frames kept), counts and logs it.

/** The frame in the worker's hands. `decided`: its fate is in effects that cannot fail. */
interface InFlight {
  readonly frame: Incoming
  decided: boolean
}

/** A worker's state, shared with the dispatcher (the counts) and the report and stall monitor (read only). */
export interface WorkerSlot {
  readonly name: string
  readonly queue: Queue.Queue<Incoming>
  agentId: string
  machine: AgentState<Incoming>
  step: WorkerStep
  /** Epoch ms. */
  stepSince: number
  /** Frames offered and not taken yet. */
  queued: number
  /** When the worker last took a frame with more waiting, or the first one arrived (null: none queued). */
  queuedSince: number | null
  inFlight: InFlight | null
  restarts: number
  lastRestart: { readonly at: number; readonly cause: string } | null
  /** The stall reason last announced (the monitor's memory). */
  stalled: string | null
}

export const makeSlot = (name: string, queue: Queue.Queue<Incoming>, now: number): WorkerSlot => ({
  name,
  queue,
  agentId: "",
  machine: initialState(emptyCursor({ agentId: "", name })),
  step: "idle",
  stepSince: now,
  queued: 0,
  queuedSince: null,
  inFlight: null,
  restarts: 0,
  lastRestart: null,
  stalled: null
})

export interface WorkerServices {
  readonly book: DeliveryBook["Type"]
  readonly events: EventLog["Type"]
  readonly stats: DeliveryStats
  readonly saves: CursorSaves
  readonly surface: Surface
  readonly options: DeliveriesOptions
  /** Told once each arrived frame has been handled (DeliveryHolds: a flush waits for it). */
  readonly settled?: (agent: string, msgId: string) => Effect.Effect<void>
}

type SurfaceWith = (frame: Incoming, track: StepTracker) => Effect.Effect<SurfaceOutcome>

const unlessInterrupted = <E, A, E2, R>(
  handler: (cause: Cause.Cause<E>) => Effect.Effect<A, E2, R>
) =>
(cause: Cause.Cause<E>) => Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : handler(cause)

export const makeWorkers = (services: WorkerServices) => {
  const { book, events, saves, stats } = services
  const graceMillis = Duration.toMillis(services.options.gapGrace)

  const tracker = (slot: WorkerSlot): StepTracker => (next) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      slot.step = next
      slot.stepSince = now
    })

  const recordGap = (slot: WorkerSlot, effect: Extract<StepEffect<Incoming>, { _tag: "Gap" }>) =>
    Effect.gen(function*() {
      const { from, to } = effect.range
      yield* stats.count(slot.name, "gaps")
      yield* stats.count(slot.name, "missing_seqs", to - from + 1)
      yield* stats.update(slot.name, (current) => ({ ...current, last_gap: effect.range }))
      const nothing: Incoming = {
        agent: slot.name,
        agent_id: slot.agentId,
        delivery_id: "",
        msg_id: "",
        seq: 0,
        mode: "wait",
        payload: null
      }
      yield* tracker(slot)("dead-lettering")
      yield* services.surface.recordDeadLetter(
        nothing,
        "missing_upstream",
        `seq ${from === to ? from : `${from}..${to}`} never arrived within ${graceMillis} ms; the frames after it were surfaced`,
        effect.range
      )
    }).pipe(Effect.catchAllCause(unlessInterrupted((cause) => Effect.logError("gap not recorded", cause))))

  const perform = (slot: WorkerSlot, effect: StepEffect<Incoming>, surfaceWith: SurfaceWith) =>
    Effect.gen(function*() {
      const name = slot.name
      switch (effect._tag) {
        case "Surface": {
          const frame = effect.frame
          const outcome = yield* surfaceWith(frame, tracker(slot))
          yield* stats.count(name, "surfaced")
          if (outcome === "injected") {
            yield* saves.awaitAck(name, { seq: frame.seq, delivery_id: frame.delivery_id, event_id: frame.msg_id })
          }
          // Saved before the ack that follows this effect; a failed save holds that ack back.
          yield* tracker(slot)("saving cursor")
          yield* saves.save(name, effect.cursor)
          return
        }
        case "Gap":
          return yield* recordGap(slot, effect)
        case "Duplicate":
          return yield* stats.count(name, "duplicate")
        case "Stale":
          return yield* stats.count(name, "stale")
        case "Held":
          yield* stats.count(name, "held")
          return yield* Effect.logInfo("holding a frame behind a seq gap").pipe(
            Effect.annotateLogs({ agent: name, seq: effect.frame.seq, expected: effect.expected })
          )
        case "Ack":
          yield* tracker(slot)("acking")
          return yield* saves.ack(name, effect.upToSeq)
      }
    })

  /** Decides one event and carries out its effects. */
  const handle = (slot: WorkerSlot, event: StepEvent<Incoming>, surfaceWith: SurfaceWith) =>
    Effect.gen(function*() {
      yield* tracker(slot)("deciding")
      // The book is the source of truth for the cursor (`forget` may have dropped it).
      const cursor = Option.getOrElse(
        yield* book.get(slot.agentId),
        () => emptyCursor({ agentId: slot.agentId, name: slot.name })
      )
      const [next, effects] = step({ ...slot.machine, cursor }, event)
      slot.machine = next
      if (slot.inFlight !== null) slot.inFlight.decided = true
      for (const effect of effects) yield* perform(slot, effect, surfaceWith)
      yield* stats.update(slot.name, (current) => ({ ...current, held: next.held.map((frame) => frame.seq) }))
    })

  const deadLetterAsFailure = (frame: Incoming, cause: Cause.Cause<unknown>) =>
    services.surface.recordDeadLetter(frame, "internal_error", `the delivery worker failed while handling it: ${describeCause(cause)}`)

  /**
   * A failure escaped while handling `event`. The frame, if its fate was not decided yet, goes through
   * the machine again with a dead letter as its surface, so the cursor and the ack move past it.
   */
  const recover = (slot: WorkerSlot, event: StepEvent<Incoming>, cause: Cause.Cause<unknown>) =>
    Effect.gen(function*() {
      yield* tracker(slot)("recovering from a failure")
      yield* Effect.logError("unexpected failure while handling a delivery", cause)
      yield* stats.count(slot.name, "failures")
      yield* stats.setError(slot.name, `failure while handling a frame: ${describeCause(cause)}`)
      if (event._tag !== "Arrive" || slot.inFlight === null || slot.inFlight.decided) return
      const failed = event.frame
      yield* handle(slot, event, (frame, track) =>
        frame === failed
          ? Effect.zipRight(track("dead-lettering"), Effect.as(deadLetterAsFailure(frame, cause), "dead_lettered" as const))
          : services.surface.surface(frame, track))
    })

  const nextEvent = (slot: WorkerSlot) =>
    Effect.gen(function*() {
      const due = deadline(slot.machine, graceMillis)
      const waited = due === null
        ? Option.some(yield* Queue.take(slot.queue))
        : yield* Queue.take(slot.queue).pipe(
          Effect.timeoutOption(Duration.millis(Math.max(0, due - (yield* Clock.currentTimeMillis))))
        )
      const now = yield* Clock.currentTimeMillis
      if (Option.isNone(waited)) return { _tag: "Expire" } as const
      const frame = waited.value
      slot.queued -= 1
      slot.queuedSince = slot.queued > 0 ? now : null
      slot.inFlight = { frame, decided: false }
      slot.agentId = frame.agent_id
      return { _tag: "Arrive", frame, now } as const
    })

  /** The worker's loop; it ends only on a defect outside the per-frame recovery (or interruption). */
  const run = (slot: WorkerSlot) =>
    Effect.gen(function*() {
      for (;;) {
        yield* tracker(slot)("idle")
        const event: StepEvent<Incoming> = yield* nextEvent(slot)
        yield* handle(slot, event, services.surface.surface).pipe(
          Effect.catchAllCause(unlessInterrupted((cause) => recover(slot, event, cause)))
        )
        slot.inFlight = null
        if (event._tag === "Arrive" && services.settled !== undefined) yield* services.settled(slot.name, event.frame.msg_id)
      }
    })

  /** Runs the worker for the lifetime of the scope, restarting it at once whenever it ends on a defect. */
  const supervise = (slot: WorkerSlot) =>
    Effect.gen(function*() {
      for (;;) {
        const exit = yield* Effect.exit(run(slot))
        if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return
        const cause = exit.cause
        const at = yield* Clock.currentTimeMillis
        slot.restarts += 1
        slot.lastRestart = { at, cause: describeCause(cause) }
        yield* Effect.logError("delivery worker ended on a defect; restarted from the book's cursor", cause).pipe(
          Effect.annotateLogs({ restarts: slot.restarts })
        )
        yield* events.publish("delivery_worker_restarted", {
          name: slot.name,
          restarts: slot.restarts,
          cause: slot.lastRestart.cause
        })
        // The frame it held ends visibly; the cursor stays (its seq shows up as a gap if later ones come).
        const inFlight = slot.inFlight
        slot.inFlight = null
        if (inFlight !== null && !inFlight.decided) {
          yield* deadLetterAsFailure(inFlight.frame, cause).pipe(
            Effect.catchAllCause(unlessInterrupted((again) => Effect.logError("could not dead-letter the frame", again)))
          )
        }
      }
    }).pipe(Effect.annotateLogs({ service: "Deliveries", agent: slot.name }))

  return { supervise }
}
