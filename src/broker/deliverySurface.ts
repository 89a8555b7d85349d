import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type { Deliver } from "../wire/frames.js"
import type { AgentRegistry, LiveAgent } from "./AgentRegistry.js"
import type { DeadLetter, DeadLetterReason, DeadLetters } from "./DeadLetters.js"
import type { DeliveriesOptions } from "./DeliveriesConfig.js"
import type { SeqRange } from "./deliveryDecisions.js"
import { classify, extractFields } from "./deliveryPayload.js"
import type { DeliveryStats, WorkerStep } from "./deliveryReport.js"
import { type InputNotEchoed, type PtyClosed, UnknownWorker } from "./errors.js"
import type { EventLog } from "./EventLog.js"
import { formatInjection, reminderFor } from "./messageFormat.js"
import type { TokenStore } from "./TokenStore.js"

// Surfacing one frame, the hot path: classify the payload, then type it into the agent's terminal
// (retried locally), ack it without injection (receipts), or dead-letter it with a reason. It
// never fails: whatever goes wrong, even a defect, ends the frame in one of those visible states.

export type SurfaceOutcome = "injected" | "ack_only" | "dead_lettered"

/** What a surface needs from a frame (a dead letter being redelivered has no live frame). */
export type Surfaceable = Pick<Deliver, "agent" | "agent_id" | "delivery_id" | "msg_id" | "seq" | "mode" | "payload">

/** A frame in an agent's queue: decoded, or salvaged by NodeControl from an undecodable one. */
export interface Incoming extends Surfaceable {
  readonly undecodable?: string
}

/** Tells the worker which step it is in (for the stall report). */
export type StepTracker = (step: WorkerStep) => Effect.Effect<void>

export const untracked: StepTracker = () => Effect.void

/** A defect's message in one line, for a dead letter's detail or a report. */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  const squashed = Cause.squash(cause)
  const text = squashed instanceof Error ? squashed.message : String(squashed)
  return text.split("\n")[0] ?? "unknown failure"
}

export interface SurfaceServices {
  readonly registry: AgentRegistry["Type"]
  readonly deadLetters: DeadLetters["Type"]
  readonly events: EventLog["Type"]
  readonly tokens: TokenStore["Type"]
  readonly stats: DeliveryStats
  readonly options: DeliveriesOptions
}

export const makeSurface = (services: SurfaceServices) =>
  Effect.gen(function*() {
    const { deadLetters, events, registry, stats, tokens } = services
    const injectRetry = Schedule.exponential(services.options.injectRetryBase, 2).pipe(
      Schedule.intersect(Schedule.recurs(services.options.injectRetries))
    )
    // Plain maps and sets, read and changed in one synchronous step each (the hot path of every frame).
    const locks = new Map<string, Effect.Semaphore>()
    /** Agent sessions (`name:pid`) that already had their first delivery (and its reminder). */
    const reminded = new Set<string>()
    /** Names whose last delivery found no live agent: later frames do not wait for a spawn race again. */
    const absent = new Set<string>()
    const workspace = yield* Ref.make<Option.Option<string>>(Option.none())

    const workspaceLabel = Effect.gen(function*() {
      const cached = yield* Ref.get(workspace)
      if (Option.isSome(cached)) return cached
      const found = yield* tokens.identity.pipe(
        Effect.map((identity) => identity.workspaceId),
        Effect.timeout(Duration.seconds(1)),
        Effect.option
      )
      yield* Ref.set(workspace, found)
      return found
    })

    const lockFor = (name: string): Effect.Semaphore => {
      let lock = locks.get(name)
      if (lock === undefined) {
        lock = Effect.unsafeMakeSemaphore(1)
        locks.set(name, lock)
      }
      return lock
    }

    const notStored = (why: unknown) =>
      Effect.as(Effect.logError("dead letter not stored; it is in this log line only", why), Option.none<DeadLetter>())

    /**
     * Upstream's events for a message that will not reach its agent: `message_delivery_failed` when the
     * recipient is gone, `delivery_failed` when typing it failed for good, and `delivery_dropped` when
     * not even the dead letter could be kept (the message is given up).
     */
    const publishFailure = (frame: Incoming, reason: DeadLetterReason, detail: string, attempts: number, stored: boolean) =>
      Effect.gen(function*() {
        const ids = { name: frame.agent, delivery_id: frame.delivery_id, event_id: frame.msg_id }
        if (reason === "unknown_agent") {
          const fields = extractFields(frame.payload, frame.agent)
          yield* events.publish("message_delivery_failed", { ...ids, from: fields.from, to: frame.agent, attempts, lastError: detail })
        } else if (reason === "inject_failed") {
          yield* events.publish("delivery_failed", { ...ids, reason: detail, attempts })
        }
        if (!stored) yield* events.publish("delivery_dropped", { name: frame.agent, count: 1, reason: `${reason}: ${detail}` })
      })

    /** Records a dead letter; a store that fails (or dies) leaves it in the log and the event stream. */
    const recordDeadLetter = (frame: Incoming, reason: DeadLetterReason, detail: string, gap?: SeqRange, attempts = 1) =>
      Effect.gen(function*() {
        const identified = gap === undefined
        const letter = yield* deadLetters.add({
          agent: frame.agent,
          agent_id: frame.agent_id.length > 0 ? frame.agent_id : null,
          msg_id: identified ? frame.msg_id : null,
          delivery_id: identified && frame.delivery_id.length > 0 ? frame.delivery_id : null,
          seq: identified ? frame.seq : null,
          mode: frame.mode,
          reason,
          detail,
          payload: frame.payload,
          ...(gap === undefined ? {} : { gap })
        }).pipe(
          Effect.map((letter): Option.Option<DeadLetter> => Option.some(letter)),
          Effect.catchAll((error) => notStored(error)),
          Effect.catchAllDefect((defect) => notStored(defect))
        )
        yield* Effect.logWarning("delivery dead-lettered").pipe(
          Effect.annotateLogs({ agent: frame.agent, msg_id: frame.msg_id, reason, detail })
        )
        yield* stats.count(frame.agent, "dead_lettered")
        yield* stats.setError(frame.agent, `${reason}: ${detail}`)
        yield* events.publish("delivery_dead_lettered", {
          name: frame.agent,
          delivery_id: identified && frame.delivery_id.length > 0 ? frame.delivery_id : null,
          event_id: identified ? frame.msg_id : null,
          reason,
          detail,
          dead_letter_id: Option.match(letter, { onNone: () => null, onSome: (entry) => entry.id }),
          ...(gap === undefined ? {} : { gap: { from: gap.from, to: gap.to } })
        })
        if (identified) yield* publishFailure(frame, reason, detail, attempts, Option.isSome(letter))
      })

    /** Types the message into the agent's terminal; retried locally on `injectRetry`. */
    const inject = (
      frame: Surfaceable,
      track: StepTracker,
      attempts: { count: number } = { count: 0 }
    ): Effect.Effect<LiveAgent, UnknownWorker | PtyClosed | InputNotEchoed> => {
      const fields = extractFields(frame.payload, frame.agent)
      const attempt = Effect.gen(function*() {
        attempts.count += 1
        yield* track("injecting")
        const agent = yield* registry.lookup(frame.agent)
        // An agent that already exited is as gone as an unknown one; retrying would only delay the queue.
        if (agent.status === "exited") return yield* new UnknownWorker({ agent: frame.agent })
        const session = `${agent.name}:${agent.pid}`
        const first = !reminded.has(session)
        const label = yield* workspaceLabel
        const text = formatInjection({
          from: fields.from,
          target: fields.target,
          body: fields.body,
          eventId: frame.msg_id,
          ...(fields.threadId === undefined ? {} : { threadId: fields.threadId }),
          ...(Option.isSome(label) ? { workspace: label.value } : {}),
          agentName: agent.name,
          preRegistered: true,
          reminder: reminderFor(agent.cli, first)
        })
        yield* lockFor(agent.name).withPermits(1)(agent.pty.inject(text, {
          input: agent.injectMode,
          steer: frame.mode === "steer",
          delivery: { deliveryId: frame.delivery_id, eventId: frame.msg_id }
        }))
        reminded.add(session)
        return agent
      })
      return Effect.gen(function*() {
        // An agent that was absent a moment ago is not waited for again (a restart replays many frames
        // for agents that are not back yet); otherwise the retries cover a spawn still in progress.
        const wasAbsent = absent.has(frame.agent)
        const agent = yield* attempt.pipe(
          Effect.retry({ schedule: injectRetry, while: (error) => error._tag === "PtyClosed" || !wasAbsent }),
          Effect.tapErrorTag("UnknownWorker", () => Effect.sync(() => absent.add(frame.agent)))
        )
        absent.delete(frame.agent)
        return agent
      })
    }

    const publishInbound = (frame: Surfaceable) => {
      const fields = extractFields(frame.payload, frame.agent)
      return events.publish("relay_inbound", {
        event_id: frame.msg_id,
        name: frame.agent,
        from: fields.from,
        target: fields.target,
        body: fields.body,
        thread_id: fields.threadId,
        mode: frame.mode,
        injection_mode: frame.mode
      })
    }

    const deadLettered = (frame: Incoming, reason: DeadLetterReason, detail: string, track: StepTracker, attempts = 1) =>
      Effect.zipRight(
        track("dead-lettering"),
        Effect.as(recordDeadLetter(frame, reason, detail, undefined, attempts), "dead_lettered" as const)
      )

    const injectAndReport = (frame: Incoming, track: StepTracker, injected: { done: boolean }) =>
      Effect.gen(function*() {
        yield* publishInbound(frame)
        const attempts = { count: 0 }
        const result = yield* Effect.either(inject(frame, track, attempts))
        if (result._tag === "Left") {
          const error = result.left
          const reason = error._tag === "UnknownWorker" ? "unknown_agent" : "inject_failed"
          return yield* deadLettered(frame, reason, error.message, track, attempts.count)
        }
        injected.done = true
        yield* stats.count(frame.agent, "injected")
        yield* events.publish("delivery_injected", {
          name: frame.agent,
          delivery_id: frame.delivery_id,
          event_id: frame.msg_id,
          frame_seq: frame.seq
        })
        return "injected" as const
      })

    const surfaceOnce = (frame: Incoming, track: StepTracker, injected: { done: boolean }): Effect.Effect<SurfaceOutcome> => {
      if (frame.undecodable !== undefined) return deadLettered(frame, "undecodable", frame.undecodable, track)
      const classification = classify(frame.payload)
      switch (classification._tag) {
        case "Undecodable":
          return deadLettered(frame, "undecodable", classification.reason, track)
        case "Unsupported":
          return deadLettered(frame, "unsupported_type", `payload.type ${JSON.stringify(classification.type)} is not supported`, track)
        case "AckOnly":
          return Effect.logInfo("receipt acked without injection").pipe(
            Effect.annotateLogs({ agent: frame.agent, msg_id: frame.msg_id, type: classification.type }),
            Effect.zipRight(stats.count(frame.agent, "ack_only")),
            Effect.as("ack_only" as const)
          )
        case "Inject":
          return injectAndReport(frame, track, injected)
      }
    }

    /**
     * Surfaces one frame. Never fails: what cannot be injected is dead-lettered, and a defect on the
     * way dead-letters the frame as `internal_error` (or, once it is in the terminal, is only counted).
     */
    const surface = (frame: Incoming, track: StepTracker): Effect.Effect<SurfaceOutcome> => {
      const injected = { done: false }
      return Effect.suspend(() => surfaceOnce(frame, track, injected)).pipe(
        Effect.catchAllCause((cause) => {
          if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
          const detail = `failed while surfacing: ${describeCause(cause)}`
          return Effect.gen(function*() {
            yield* Effect.logError("unexpected failure while surfacing a frame", cause).pipe(
              Effect.annotateLogs({ agent: frame.agent, msg_id: frame.msg_id, seq: frame.seq })
            )
            yield* stats.count(frame.agent, "failures")
            if (injected.done) {
              yield* stats.setError(frame.agent, detail)
              return "injected" as const
            }
            return yield* deadLettered(frame, "internal_error", detail, track).pipe(
              Effect.catchAllCause((again) =>
                Cause.isInterruptedOnly(again)
                  ? Effect.failCause(again)
                  : Effect.as(Effect.logError("could not even dead-letter the frame", again), "dead_lettered" as const))
            )
          })
        })
      )
    }

    return { surface, inject, recordDeadLetter }
  })

export type Surface = Effect.Effect.Success<ReturnType<typeof makeSurface>>
