import {
  Clock,
  Config,
  Context,
  Duration,
  Effect,
  Layer,
  Option,
  Queue,
  Ref,
  Schedule,
  Schema,
  Stream,
  SynchronizedRef
} from "effect"
import type { Deliver } from "../wire/frames.js"
import type { Json } from "../wire/Json.js"
import type { LiveAgent } from "./AgentRegistry.js"
import { AgentRegistry } from "./AgentRegistry.js"
import { type DeadLetter, type DeadLetterReason, DeadLetters } from "./DeadLetters.js"
import {
  type AgentState,
  deadline,
  emptyCursor,
  initialState,
  type SeqRange,
  step,
  type StepEffect,
  type StepEvent
} from "./deliveryDecisions.js"
import { DeliveryBook } from "./DeliveryBook.js"
import { classify, extractFields } from "./deliveryPayload.js"
import { type PtyClosed, UnknownWorker } from "./errors.js"
import { EventLog } from "./EventLog.js"
import { formatInjection, reminderFor } from "./messageFormat.js"
import { NodeControl, type UndecodableDelivery } from "./NodeControl.js"
import { TokenStore } from "./TokenStore.js"

// The delivery pipeline: every `deliver` frame from NodeControl ends in exactly one visible state
// (injected, ack-only, or dead-lettered), and an ack means the bytes are in the agent's terminal.
// Frames are handled in order per agent (one fiber per agent id), agents in parallel. Per frame:
// decide (deliveryDecisions.step), surface (classify, format, inject with local retries, or
// dead-letter), commit and persist the cursor, then `delivery.ack`.

// ---------------------------------------------------------------------------------------------
// Configuration

export interface DeliveriesOptions {
  /** How long frames behind a seq gap wait for the missing ones before they are surfaced anyway. */
  readonly gapGrace: Duration.Duration
  /** First delay of the local retries of a failed injection (doubling). */
  readonly injectRetryBase: Duration.Duration
  /** Retries after the first attempt before the frame is dead-lettered. */
  readonly injectRetries: number
}

export class DeliveriesConfig extends Context.Tag("relay-broker/DeliveriesConfig")<DeliveriesConfig, DeliveriesOptions>() {}

export const defaults: DeliveriesOptions = {
  gapGrace: Duration.seconds(2),
  injectRetryBase: Duration.millis(25),
  injectRetries: 5
}

export const configLayer = (options?: Partial<DeliveriesOptions>): Layer.Layer<DeliveriesConfig> =>
  Layer.succeed(DeliveriesConfig, { ...defaults, ...options })

export const config: Config.Config<DeliveriesOptions> = Config.all({
  gapGrace: Config.integer("RELAY_DELIVERY_GAP_GRACE_MS").pipe(
    Config.map(Duration.millis),
    Config.withDefault(defaults.gapGrace),
    Config.withDescription("How long frames behind a seq gap wait for the missing ones (ms).")
  ),
  injectRetryBase: Config.integer("RELAY_DELIVERY_RETRY_MS").pipe(
    Config.map(Duration.millis),
    Config.withDefault(defaults.injectRetryBase),
    Config.withDescription("First delay of the local injection retries (ms, doubling).")
  ),
  injectRetries: Config.integer("RELAY_DELIVERY_RETRIES").pipe(
    Config.withDefault(defaults.injectRetries),
    Config.withDescription("Injection retries before a frame is dead-lettered.")
  )
})

export const layerConfig: Layer.Layer<DeliveriesConfig> = Layer.effect(
  DeliveriesConfig,
  Effect.orElseSucceed(config, () => defaults)
)

// ---------------------------------------------------------------------------------------------
// Service

export interface FrameSummary {
  readonly seq: number
  readonly msg_id: string
  readonly delivery_id: string
  /** `payload.type`; null when absent or unreadable. */
  readonly type: string | null
  /** Why the frame could not be decoded, for a frame NodeControl salvaged. */
  readonly undecodable: string | null
  readonly mode: "wait" | "steer"
  /** Epoch ms. */
  readonly at: number
}

export interface DeliveryCounts {
  readonly received: number
  readonly surfaced: number
  readonly injected: number
  readonly ack_only: number
  readonly duplicate: number
  readonly stale: number
  readonly held: number
  /** Gap ranges recorded after the grace period. */
  readonly gaps: number
  /** Seqs inside those ranges. */
  readonly missing_seqs: number
  readonly dead_lettered: number
}

/** One agent's delivery state, for `GET /api/node-delivery`. */
export interface AgentDeliveryReport {
  readonly agent: string
  /** The engine's id for the agent, from its latest frame (null if only undecodable frames came). */
  readonly agent_id: string | null
  /** The persisted cursor (`up_to_seq`), null before the first sequenced frame. */
  readonly cursor: number | null
  readonly baseline: number | null
  /** Seqs waiting behind a gap. */
  readonly held: ReadonlyArray<number>
  readonly last_frame: FrameSummary | null
  readonly last_ack: { readonly up_to_seq: number; readonly at: number } | null
  readonly last_gap: SeqRange | null
  readonly last_error: string | null
  readonly counts: DeliveryCounts
}

export interface RedeliverReport {
  readonly redelivered: ReadonlyArray<{ readonly id: string; readonly agent: string; readonly msg_id: string | null }>
  readonly failed: ReadonlyArray<{ readonly id: string; readonly agent: string; readonly error: string }>
}

export class NoSuchDeadLetter extends Schema.TaggedError<NoSuchDeadLetter>()("NoSuchDeadLetter", {
  id: Schema.String
}) {
  override get message(): string {
    return `no dead letter with id '${this.id}'`
  }
}

export class Deliveries extends Context.Tag("relay-broker/Deliveries")<Deliveries, {
  /** Per agent: cursor, held frames, last frame, last ack, counts. */
  readonly report: Effect.Effect<ReadonlyArray<AgentDeliveryReport>>
  /**
   * Re-surfaces dead letters to their (live) agents, bypassing the book (their msg_ids were
   * committed when they were dead-lettered). A redelivered entry leaves the list; a failed one stays.
   */
  readonly redeliver: (which: { readonly id: string } | "all") => Effect.Effect<RedeliverReport, NoSuchDeadLetter>
}>() {}

// ---------------------------------------------------------------------------------------------
// Implementation

const zeroCounts: DeliveryCounts = {
  received: 0,
  surfaced: 0,
  injected: 0,
  ack_only: 0,
  duplicate: 0,
  stale: 0,
  held: 0,
  gaps: 0,
  missing_seqs: 0,
  dead_lettered: 0
}

/** What the report holds per agent besides the persisted cursor. */
type AgentStats = Omit<AgentDeliveryReport, "agent" | "cursor" | "baseline">

const emptyStats: AgentStats = {
  agent_id: null,
  held: [],
  last_frame: null,
  last_ack: null,
  last_gap: null,
  last_error: null,
  counts: zeroCounts
}

type SurfaceOutcome = "injected" | "ack_only" | "dead_lettered"

/** What a surface needs from a frame (a dead letter being redelivered has no live frame). */
type Surfaceable = Pick<Deliver, "agent" | "agent_id" | "delivery_id" | "msg_id" | "seq" | "mode" | "payload">

/** A frame in an agent's queue: decoded, or salvaged by NodeControl from an undecodable one. */
interface Incoming extends Surfaceable {
  readonly undecodable?: string
}

const payloadType = (payload: Json): string | null => {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return null
  const type = (payload as { readonly [key: string]: Json })["type"]
  return typeof type === "string" ? type : null
}

export const make = Effect.gen(function*() {
  const node = yield* NodeControl
  const registry = yield* AgentRegistry
  const book = yield* DeliveryBook
  const deadLetters = yield* DeadLetters
  const events = yield* EventLog
  const tokens = yield* TokenStore
  const options = yield* DeliveriesConfig
  const scope = yield* Effect.scope

  const graceMillis = Duration.toMillis(options.gapGrace)
  const injectRetry = Schedule.exponential(options.injectRetryBase, 2).pipe(
    Schedule.intersect(Schedule.recurs(options.injectRetries))
  )

  /** Keyed by agent name, like the acks. */
  const stats = yield* Ref.make<ReadonlyMap<string, AgentStats>>(new Map())
  /** One queue and fiber per agent name. */
  const workers = yield* SynchronizedRef.make<ReadonlyMap<string, Queue.Queue<Incoming>>>(new Map())
  const locks = yield* SynchronizedRef.make<ReadonlyMap<string, Effect.Semaphore>>(new Map())
  /** Agent sessions (`name:pid`) that already had their first delivery (and its reminder). */
  const reminded = yield* Ref.make<ReadonlySet<string>>(new Set())
  /** Names whose last delivery found no live agent: later frames do not wait for a spawn race again. */
  const absent = yield* Ref.make<ReadonlySet<string>>(new Set())
  const workspace = yield* Ref.make<Option.Option<string>>(Option.none())

  const updateStats = (name: string, f: (current: AgentStats) => AgentStats) =>
    Ref.update(stats, (current) => new Map(current).set(name, f(current.get(name) ?? emptyStats)))

  const count = (name: string, key: keyof DeliveryCounts, by = 1) =>
    updateStats(name, (current) => ({ ...current, counts: { ...current.counts, [key]: current.counts[key] + by } }))

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

  const lockFor = (name: string) =>
    SynchronizedRef.modifyEffect(locks, (current) => {
      const existing = current.get(name)
      if (existing !== undefined) return Effect.succeed([existing, current] as const)
      return Effect.map(Effect.makeSemaphore(1), (lock) => [lock, new Map(current).set(name, lock)] as const)
    })

  const recordDeadLetter = (
    frame: Incoming,
    reason: DeadLetterReason,
    detail: string,
    gap?: SeqRange
  ) =>
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
        Effect.catchTag("PersistFailed", (error) =>
          Effect.as(Effect.logError("dead letter kept in memory only", error), Option.none<DeadLetter>()))
      )
      yield* Effect.logWarning("delivery dead-lettered").pipe(
        Effect.annotateLogs({ agent: frame.agent, msg_id: frame.msg_id, reason, detail })
      )
      yield* count(frame.agent, "dead_lettered")
      yield* updateStats(frame.agent, (current) => ({ ...current, last_error: `${reason}: ${detail}` }))
      yield* events.publish("delivery_dead_lettered", {
        name: frame.agent,
        delivery_id: identified && frame.delivery_id.length > 0 ? frame.delivery_id : null,
        event_id: identified ? frame.msg_id : null,
        reason,
        detail,
        dead_letter_id: Option.match(letter, { onNone: () => null, onSome: (entry) => entry.id }),
        ...(gap === undefined ? {} : { gap: { from: gap.from, to: gap.to } })
      })
    })

  /** Types the message into the agent's terminal; retried locally on `injectRetry`. */
  const inject = (frame: Surfaceable): Effect.Effect<LiveAgent, UnknownWorker | PtyClosed> => {
    const fields = extractFields(frame.payload, frame.agent)
    const attempt = Effect.gen(function*() {
      const agent = yield* registry.lookup(frame.agent)
      // An agent that already exited is as gone as an unknown one; retrying would only delay the queue.
      if (agent.status === "exited") return yield* new UnknownWorker({ agent: frame.agent })
      const session = `${agent.name}:${agent.pid}`
      const first = !(yield* Ref.get(reminded)).has(session)
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
      const lock = yield* lockFor(agent.name)
      yield* lock.withPermits(1)(agent.pty.inject(text, { input: agent.injectMode, steer: frame.mode === "steer" }))
      yield* Ref.update(reminded, (current) => new Set(current).add(session))
      return agent
    })
    return Effect.gen(function*() {
      // An agent that was absent a moment ago is not waited for again (a restart replays many frames
      // for agents that are not back yet); otherwise the retries cover a spawn still in progress.
      const wasAbsent = (yield* Ref.get(absent)).has(frame.agent)
      const agent = yield* attempt.pipe(
        Effect.retry({ schedule: injectRetry, while: (error) => error._tag === "PtyClosed" || !wasAbsent }),
        Effect.tapErrorTag("UnknownWorker", () => Ref.update(absent, (current) => new Set(current).add(frame.agent)))
      )
      yield* Ref.update(absent, (current) => {
        const next = new Set(current)
        next.delete(frame.agent)
        return next
      })
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

  /** Surfaces one frame. Never fails: what cannot be injected is dead-lettered. */
  const surface = (frame: Incoming): Effect.Effect<SurfaceOutcome> =>
    Effect.gen(function*() {
      if (frame.undecodable !== undefined) {
        yield* recordDeadLetter(frame, "undecodable", frame.undecodable)
        return "dead_lettered"
      }
      const classification = classify(frame.payload)
      switch (classification._tag) {
        case "Undecodable":
          yield* recordDeadLetter(frame, "undecodable", classification.reason)
          return "dead_lettered"
        case "Unsupported":
          yield* recordDeadLetter(frame, "unsupported_type", `payload.type ${JSON.stringify(classification.type)} is not supported`)
          return "dead_lettered"
        case "AckOnly":
          yield* Effect.logInfo("receipt acked without injection").pipe(
            Effect.annotateLogs({ agent: frame.agent, msg_id: frame.msg_id, type: classification.type })
          )
          yield* count(frame.agent, "ack_only")
          return "ack_only"
        case "Inject": {
          yield* publishInbound(frame)
          return yield* inject(frame).pipe(
            Effect.matchEffect({
              onSuccess: () =>
                Effect.gen(function*() {
                  yield* count(frame.agent, "injected")
                  yield* events.publish("delivery_injected", {
                    name: frame.agent,
                    delivery_id: frame.delivery_id,
                    event_id: frame.msg_id,
                    seq: frame.seq
                  })
                  return "injected" as const
                }),
              onFailure: (error) =>
                Effect.as(
                  error._tag === "UnknownWorker"
                    ? recordDeadLetter(frame, "unknown_agent", error.message)
                    : recordDeadLetter(frame, "inject_failed", error.message),
                  "dead_lettered" as const
                )
            })
          )
        }
      }
    })

  const perform = (name: string, agentId: string, effect: StepEffect<Incoming>) =>
    Effect.gen(function*() {
      switch (effect._tag) {
        case "Surface": {
          yield* surface(effect.frame)
          yield* count(name, "surfaced")
          // Persisted before the ack that follows this effect.
          yield* book.save(effect.cursor).pipe(
            Effect.catchTag("PersistFailed", (error) =>
              Effect.zipRight(
                Effect.logError("delivery cursor kept in memory only", error),
                updateStats(name, (current) => ({ ...current, last_error: error.message }))
              ))
          )
          return
        }
        case "Gap": {
          const { from, to } = effect.range
          yield* count(name, "gaps")
          yield* count(name, "missing_seqs", to - from + 1)
          yield* updateStats(name, (current) => ({ ...current, last_gap: effect.range }))
          const nothing: Incoming = {
            agent: name,
            agent_id: agentId,
            delivery_id: "",
            msg_id: "",
            seq: 0,
            mode: "wait",
            payload: null
          }
          yield* recordDeadLetter(
            nothing,
            "missing_upstream",
            `seq ${from === to ? from : `${from}..${to}`} never arrived within ${graceMillis} ms; the frames after it were surfaced`,
            effect.range
          )
          return
        }
        case "Duplicate":
          yield* count(name, "duplicate")
          return
        case "Stale":
          yield* count(name, "stale")
          return
        case "Held":
          yield* count(name, "held")
          yield* Effect.logInfo("holding a frame behind a seq gap").pipe(
            Effect.annotateLogs({ agent: name, seq: effect.frame.seq, expected: effect.expected })
          )
          return
        case "Ack": {
          yield* node.send({ type: "delivery.ack", v: 1, agent: name, up_to_seq: effect.upToSeq })
          const at = yield* Clock.currentTimeMillis
          yield* updateStats(name, (current) => ({ ...current, last_ack: { up_to_seq: effect.upToSeq, at } }))
          return
        }
      }
    })

  /** One agent's frames, in order; wakes up at the gap deadline to surface held frames. */
  const runAgent = (name: string, queue: Queue.Queue<Incoming>) =>
    Effect.gen(function*() {
      let agentId = ""
      let machine: AgentState<Incoming> = initialState(emptyCursor({ agentId, name }))
      for (;;) {
        const due = deadline(machine, graceMillis)
        const waited = due === null
          ? Option.some(yield* Queue.take(queue))
          : yield* Queue.take(queue).pipe(
            Effect.timeoutOption(Duration.millis(Math.max(0, due - (yield* Clock.currentTimeMillis))))
          )
        const now = yield* Clock.currentTimeMillis
        const event: StepEvent<Incoming> = Option.match(waited, {
          onNone: () => ({ _tag: "Expire" }),
          onSome: (frame) => ({ _tag: "Arrive", frame, now })
        })
        if (event._tag === "Arrive") agentId = event.frame.agent_id
        // The book is the source of truth for the cursor (`forget` may have dropped it).
        const cursor = Option.getOrElse(yield* book.get(agentId), () => emptyCursor({ agentId, name }))
        const [next, effects] = step({ ...machine, cursor }, event)
        machine = next
        for (const effect of effects) yield* perform(name, agentId, effect)
        yield* updateStats(name, (current) => ({ ...current, held: machine.held.map((frame) => frame.seq) }))
      }
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logError("delivery worker stopped", cause)),
      Effect.annotateLogs({ service: "Deliveries", agent: name })
    )

  const queueFor = (name: string) =>
    SynchronizedRef.modifyEffect(workers, (current) => {
      const existing = current.get(name)
      if (existing !== undefined) return Effect.succeed([existing, current] as const)
      return Effect.gen(function*() {
        const queue = yield* Queue.unbounded<Incoming>()
        yield* Effect.forkIn(runAgent(name, queue), scope)
        return [queue, new Map(current).set(name, queue)] as const
      })
    })

  const dispatch = (frame: Incoming) =>
    Effect.gen(function*() {
      const at = yield* Clock.currentTimeMillis
      yield* updateStats(frame.agent, (current) => ({
        ...current,
        agent_id: frame.agent_id.length > 0 ? frame.agent_id : current.agent_id,
        last_frame: {
          seq: frame.seq,
          msg_id: frame.msg_id,
          delivery_id: frame.delivery_id,
          type: payloadType(frame.payload),
          undecodable: frame.undecodable ?? null,
          mode: frame.mode,
          at
        },
        counts: { ...current.counts, received: current.counts.received + 1 }
      }))
      yield* events.publish("delivery_queued", {
        name: frame.agent,
        delivery_id: frame.delivery_id,
        event_id: frame.msg_id,
        seq: frame.seq
      })
      yield* Queue.offer(yield* queueFor(frame.agent), frame)
    })

  /**
   * A salvaged undecodable frame has no agent id: it takes the one last seen for its name, so it
   * moves that agent's cursor like any other frame.
   */
  const fromUndecodable = (delivery: UndecodableDelivery) =>
    Effect.gen(function*() {
      const seen = (yield* Ref.get(stats)).get(delivery.agent)?.agent_id
      const booked = (yield* book.list).find((cursor) => cursor.name === delivery.agent)?.agentId
      const incoming: Incoming = {
        agent: delivery.agent,
        agent_id: seen ?? booked ?? `unidentified:${delivery.agent}`,
        delivery_id: "",
        msg_id: delivery.msgId ?? `undecodable:${delivery.agent}:${delivery.seq}`,
        seq: delivery.seq,
        mode: "wait",
        payload: null,
        undecodable: delivery.reason
      }
      return incoming
    })

  yield* node.deliveries.pipe(
    Stream.runForEach(dispatch),
    Effect.catchAllCause((cause) => Effect.logError("the delivery stream ended", cause)),
    Effect.annotateLogs({ service: "Deliveries" }),
    Effect.forkScoped
  )
  yield* node.undecodableDeliveries.pipe(
    Stream.runForEach((delivery) => Effect.flatMap(fromUndecodable(delivery), dispatch)),
    Effect.catchAllCause((cause) => Effect.logError("the undecodable-delivery stream ended", cause)),
    Effect.annotateLogs({ service: "Deliveries" }),
    Effect.forkScoped
  )

  const report = Effect.gen(function*() {
    const cursors = yield* book.list
    const current = yield* Ref.get(stats)
    const names = new Set([...cursors.map((cursor) => cursor.name), ...current.keys()])
    return [...names].sort().map((name): AgentDeliveryReport => {
      const entry = current.get(name) ?? emptyStats
      const cursor = cursors.find((candidate) =>
        entry.agent_id === null ? candidate.name === name : candidate.agentId === entry.agent_id
      ) ?? cursors.find((candidate) => candidate.name === name)
      return {
        agent: name,
        agent_id: entry.agent_id ?? cursor?.agentId ?? null,
        cursor: cursor?.upToSeq ?? null,
        baseline: cursor?.baseline ?? null,
        held: entry.held,
        last_frame: entry.last_frame,
        last_ack: entry.last_ack,
        last_gap: entry.last_gap,
        last_error: entry.last_error,
        counts: entry.counts
      }
    })
  })

  const redeliverLetter = (letter: DeadLetter) =>
    Effect.gen(function*() {
      if (letter.payload === null) {
        return { ok: false as const, error: `nothing to redeliver: a ${letter.reason} dead letter has no payload` }
      }
      const frame: Surfaceable = {
        agent: letter.agent,
        agent_id: letter.agent_id ?? "",
        delivery_id: letter.delivery_id ?? letter.id,
        msg_id: letter.msg_id ?? letter.id,
        seq: letter.seq ?? 0,
        mode: letter.mode,
        payload: letter.payload
      }
      return yield* inject(frame).pipe(
        Effect.matchEffect({
          onSuccess: () =>
            Effect.gen(function*() {
              yield* deadLetters.remove([letter.id]).pipe(
                Effect.catchTag("PersistFailed", (error) => Effect.logError("dead letter removal not persisted", error))
              )
              yield* events.publish("dead_letter_redelivered", {
                id: letter.id,
                name: letter.agent,
                event_id: letter.msg_id,
                delivery_id: letter.delivery_id
              })
              return { ok: true as const }
            }),
          onFailure: (error) =>
            Effect.as(
              deadLetters.markAttempt(letter.id).pipe(Effect.catchTag("PersistFailed", () => Effect.void)),
              { ok: false as const, error: error.message }
            )
        })
      )
    })

  const redeliver = Effect.fn("Deliveries.redeliver")(function*(which: { readonly id: string } | "all") {
    let letters: ReadonlyArray<DeadLetter>
    if (which === "all") {
      letters = yield* deadLetters.list
    } else {
      const found = yield* deadLetters.get(which.id)
      if (Option.isNone(found)) return yield* new NoSuchDeadLetter({ id: which.id })
      letters = [found.value]
    }
    const redelivered: Array<RedeliverReport["redelivered"][number]> = []
    const failed: Array<RedeliverReport["failed"][number]> = []
    for (const letter of letters) {
      const result = yield* redeliverLetter(letter)
      if (result.ok) redelivered.push({ id: letter.id, agent: letter.agent, msg_id: letter.msg_id })
      else failed.push({ id: letter.id, agent: letter.agent, error: result.error })
    }
    return { redelivered, failed }
  })

  return Deliveries.of({ report, redeliver })
})

/** Starts consuming `NodeControl.deliveries` (and its salvaged undecodable frames) for the lifetime of the layer. */
export const layer: Layer.Layer<
  Deliveries,
  never,
  NodeControl | AgentRegistry | DeliveryBook | DeadLetters | EventLog | TokenStore | DeliveriesConfig
> = Layer.scoped(Deliveries, make)
