import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type { DeliveriesOptions } from "./DeliveriesConfig.js"
import { deadline } from "./deliveryDecisions.js"
import type { WorkerReport } from "./deliveryReport.js"
import type { WorkerSlot } from "./deliveryWorker.js"
import type { EventLog } from "./EventLog.js"

// Deafness made visible: an agent with frames waiting whose worker makes no progress for a bounded
// time is `stalled`, with what it waits on. Progress is a change of step (deciding, injecting,
// saving the cursor, acking) or a frame taken. Injecting may legitimately wait for the agent to be
// ready for input, so it has its own, higher bound (`injectStallAfter`).

const seconds = (millis: number): string => `${(millis / 1000).toFixed(1)} s`

const plural = (count: number, noun: string): string => `${count} ${noun}${count === 1 ? "" : "s"}`

const stepText = (slot: WorkerSlot): string => {
  const frame = slot.inFlight?.frame
  const which = frame === undefined ? "" : ` seq ${frame.seq} (${frame.msg_id})`
  switch (slot.step) {
    case "injecting":
      return `injecting${which}: waiting for the terminal to take it (or for the agent to be ready for input)`
    case "saving cursor":
      return `saving the cursor after${which}`
    case "acking":
      return `sending the ack after${which}`
    case "dead-lettering":
      return `dead-lettering${which}`
    default:
      return `${slot.step}${which}`
  }
}

/** Why the slot's worker is stalled at `now`, or null when it is not. */
export const stallReason = (slot: WorkerSlot, now: number, options: DeliveriesOptions): string | null => {
  const stallAfter = Duration.toMillis(options.stallAfter)
  if (slot.inFlight !== null) {
    const limit = slot.step === "injecting" ? Duration.toMillis(options.injectStallAfter) : stallAfter
    const stuck = now - slot.stepSince
    if (stuck < limit) return null
    return `no progress for ${seconds(stuck)}: ${stepText(slot)}; ${plural(slot.queued + 1, "frame")} waiting`
  }
  if (slot.queued > 0 && slot.queuedSince !== null && now - slot.queuedSince >= stallAfter) {
    return `${plural(slot.queued, "frame")} queued and none taken for ${seconds(now - slot.queuedSince)}`
  }
  const due = deadline(slot.machine, Duration.toMillis(options.gapGrace))
  if (due !== null && now - due >= stallAfter) {
    return `${plural(slot.machine.held.length, "frame")} held behind a gap, ${seconds(now - due)} past the grace period`
  }
  return null
}

export const workerReport = (slot: WorkerSlot, now: number, options: DeliveriesOptions): WorkerReport => {
  const reason = stallReason(slot, now, options)
  const waiting = slot.queued + (slot.inFlight === null ? 0 : 1)
  const frame = slot.inFlight?.frame
  return {
    state: reason !== null ? "stalled" : waiting > 0 ? "working" : "idle",
    step: slot.step,
    step_since: slot.stepSince,
    waiting,
    in_flight: frame === undefined ? null : { seq: frame.seq, msg_id: frame.msg_id },
    stalled_reason: reason,
    restarts: slot.restarts,
    last_restart: slot.lastRestart
  }
}

/**
 * Looks at every worker each `stallCheckInterval`; announces a stall once (`delivery_stalled` on the
 * event stream and a warning), and its end (`delivery_resumed`).
 */
export const monitorStalls = (
  slots: Effect.Effect<ReadonlyArray<WorkerSlot>>,
  events: EventLog["Type"],
  options: DeliveriesOptions
) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    for (const slot of yield* slots) {
      const reason = stallReason(slot, now, options)
      if (reason !== null && slot.stalled === null) {
        slot.stalled = reason
        yield* Effect.logWarning("delivery stalled").pipe(Effect.annotateLogs({ agent: slot.name, reason }))
        yield* events.publish("delivery_stalled", {
          name: slot.name,
          reason,
          step: slot.step,
          waiting: slot.queued + (slot.inFlight === null ? 0 : 1),
          frame_seq: slot.inFlight?.frame.seq ?? null,
          event_id: slot.inFlight?.frame.msg_id ?? null
        })
      } else if (reason === null && slot.stalled !== null) {
        slot.stalled = null
        yield* Effect.logInfo("delivery resumed").pipe(Effect.annotateLogs({ agent: slot.name }))
        yield* events.publish("delivery_resumed", { name: slot.name })
      }
    }
  }).pipe(
    Effect.catchAllCause((cause) => Effect.logError("stall check failed", cause)),
    Effect.repeat(Schedule.spaced(options.stallCheckInterval)),
    Effect.annotateLogs({ service: "Deliveries" })
  )
