import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as SynchronizedRef from "effect/SynchronizedRef"
import { AgentRegistry } from "./AgentRegistry.js"
import { type FailingSave, makeCursorSaves } from "./cursorSaves.js"
import { DeadLetters } from "./DeadLetters.js"
import { DeliveriesConfig } from "./DeliveriesConfig.js"
import { DeliveryBook } from "./DeliveryBook.js"
import { DeliveryHolds } from "./DeliveryHolds.js"
import { makeRedeliver, type NoSuchDeadLetter, type RedeliverReport } from "./deliveryRedeliver.js"
import { type AgentDeliveryReport, emptyStats, frameSummary, makeStats } from "./deliveryReport.js"
import { monitorStalls, workerReport } from "./deliveryStalls.js"
import { type Incoming, makeSurface } from "./deliverySurface.js"
import { makeSlot, makeWorkers, type WorkerSlot } from "./deliveryWorker.js"
import { EventLog } from "./EventLog.js"
import { NodeControl, type UndecodableDelivery } from "./NodeControl.js"
import { TokenStore } from "./TokenStore.js"

// The delivery pipeline: every `deliver` frame from NodeControl ends in exactly one visible state
// (injected, ack-only, or dead-lettered), and an ack means the bytes are in the agent's terminal
// and the cursor is on disk. Frames are handled in order per agent (one supervised worker per agent
// name, deliveryWorker.ts), agents in parallel. The pieces:
//   deliveryWorker.ts   per agent: decide (deliveryDecisions.step), surface, save, ack; restarts
//   deliverySurface.ts  per frame: classify, inject with local retries, or dead-letter (the hot path)
//   cursorSaves.ts      durable acks: a failed save holds the ack back and is retried
//   deliveryStalls.ts   stalled workers: reported, and announced on the event stream
//   deliveryReport.ts   the per-agent counters and the `/api/node-delivery` shapes
//   deliveryRedeliver.ts  re-surfacing dead letters

export {
  config,
  configLayer,
  defaults,
  DeliveriesConfig,
  type DeliveriesOptions,
  layerConfig
} from "./DeliveriesConfig.js"
export { NoSuchDeadLetter, type RedeliverReport } from "./deliveryRedeliver.js"
export type {
  AgentDeliveryReport,
  DeliveryCounts,
  DurabilityReport,
  FrameSummary,
  WorkerReport,
  WorkerStep
} from "./deliveryReport.js"

/** What `/health` needs: why delivery is degraded, if it is. */
export interface DeliveryHealth {
  /** Agents whose worker has frames waiting and makes no progress. */
  readonly stalled: ReadonlyArray<{ readonly agent: string; readonly reason: string }>
  /** Agents whose cursor saves fail (their acks wait). */
  readonly failingSaves: ReadonlyArray<FailingSave>
  /** Worker restarts after a defect, over all agents. */
  readonly workerRestarts: number
}

export class Deliveries extends Context.Tag("relay-broker/Deliveries")<Deliveries, {
  /** Per agent: cursor, held frames, last frame, last ack, counts, worker state, durability. */
  readonly report: Effect.Effect<ReadonlyArray<AgentDeliveryReport>>
  readonly health: Effect.Effect<DeliveryHealth>
  /**
   * Re-surfaces dead letters to their (live) agents, bypassing the book (their msg_ids were
   * committed when they were dead-lettered). A redelivered entry leaves the list; a failed one stays.
   */
  readonly redeliver: (which: { readonly id: string } | "all") => Effect.Effect<RedeliverReport, NoSuchDeadLetter>
}>() {}

export const make = Effect.gen(function*() {
  const node = yield* NodeControl
  const registry = yield* AgentRegistry
  const book = yield* DeliveryBook
  const deadLetters = yield* DeadLetters
  const events = yield* EventLog
  const tokens = yield* TokenStore
  const options = yield* DeliveriesConfig
  const scope = yield* Effect.scope
  // Delivery modes (manual_flush holds frames before the worker); absent: every frame goes straight on.
  const holds = yield* Effect.serviceOption(DeliveryHolds)

  const stats = yield* makeStats
  const surface = yield* makeSurface({ registry, deadLetters, events, tokens, stats, options })
  const saves = makeCursorSaves({ book, node, events, stats, options, scope })
  const workers = makeWorkers({
    book,
    events,
    stats,
    saves,
    surface,
    options,
    ...(Option.isSome(holds) ? { settled: holds.value.settled } : {})
  })

  /** One supervised worker per agent name. */
  const slots = yield* SynchronizedRef.make<ReadonlyMap<string, WorkerSlot>>(new Map())
  const allSlots = Effect.map(SynchronizedRef.get(slots), (current) => [...current.values()])

  // Read without the ref's lock once the slot exists (every frame after an agent's first).
  let knownSlots: ReadonlyMap<string, WorkerSlot> = new Map()
  const slotFor = (name: string) => {
    const known = knownSlots.get(name)
    return known !== undefined ? Effect.succeed(known) : createSlot(name)
  }
  const createSlot = (name: string) =>
    SynchronizedRef.modifyEffect(slots, (current) => {
      const existing = current.get(name)
      if (existing !== undefined) return Effect.succeed([existing, current] as const)
      return Effect.gen(function*() {
        const slot = makeSlot(name, yield* Queue.unbounded<Incoming>(), yield* Clock.currentTimeMillis)
        yield* Effect.forkIn(workers.supervise(slot), scope)
        knownSlots = new Map(current).set(name, slot)
        return [slot, knownSlots] as const
      })
    })

  const dispatch = (frame: Incoming) =>
    Effect.gen(function*() {
      const at = yield* Clock.currentTimeMillis
      yield* stats.count(frame.agent, "received")
      yield* stats.update(frame.agent, (current) => ({
        ...current,
        agent_id: frame.agent_id.length > 0 ? frame.agent_id : current.agent_id,
        last_frame: frameSummary(frame, frame.undecodable ?? null, at)
      }))
      yield* events.publish("delivery_queued", {
        name: frame.agent,
        delivery_id: frame.delivery_id,
        event_id: frame.msg_id,
        seq: frame.seq
      })
      const enqueue = Effect.gen(function*() {
        const slot = yield* slotFor(frame.agent)
        if (slot.queued === 0) slot.queuedSince = yield* Clock.currentTimeMillis
        slot.queued += 1
        yield* Queue.offer(slot.queue, frame)
      })
      // In manual_flush the frame waits in DeliveryHolds until a flush hands it to the worker.
      yield* Option.isSome(holds) ? holds.value.admit(frame, enqueue) : enqueue
    })

  /**
   * A salvaged undecodable frame has no agent id: it takes the one last seen for its name, so it
   * moves that agent's cursor like any other frame.
   */
  const fromUndecodable = (delivery: UndecodableDelivery) =>
    Effect.gen(function*() {
      const seen = (yield* stats.all).get(delivery.agent)?.agent_id
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

  // A failure on the way in is logged and the frame skipped, never the stream ended: the engine
  // re-sends what was not acked on the next register.
  const dispatchSafely = <A>(handle: (item: A) => Effect.Effect<void>) => (item: A) =>
    handle(item).pipe(Effect.catchAllDefect((defect) => Effect.logError("a delivery could not be queued", defect)))

  yield* node.deliveries.pipe(
    Stream.runForEach(dispatchSafely(dispatch)),
    Effect.catchAllCause((cause) => Effect.logError("the delivery stream ended", cause)),
    Effect.annotateLogs({ service: "Deliveries" }),
    Effect.forkScoped
  )
  yield* node.undecodableDeliveries.pipe(
    Stream.runForEach(dispatchSafely((delivery: UndecodableDelivery) => Effect.flatMap(fromUndecodable(delivery), dispatch))),
    Effect.catchAllCause((cause) => Effect.logError("the undecodable-delivery stream ended", cause)),
    Effect.annotateLogs({ service: "Deliveries" }),
    Effect.forkScoped
  )
  yield* Effect.forkScoped(monitorStalls(allSlots, events, options))

  const report = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const cursors = yield* book.list
    const current = yield* stats.all
    const workersByName = yield* SynchronizedRef.get(slots)
    const names = new Set([...cursors.map((cursor) => cursor.name), ...current.keys(), ...workersByName.keys()])
    return [...names].sort().map((name): AgentDeliveryReport => {
      const entry = current.get(name) ?? emptyStats
      const cursor = cursors.find((candidate) =>
        entry.agent_id === null ? candidate.name === name : candidate.agentId === entry.agent_id
      ) ?? cursors.find((candidate) => candidate.name === name)
      const slot = workersByName.get(name)
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
        counts: entry.counts,
        worker: slot === undefined ? idleWorker : workerReport(slot, now, options),
        durability: saves.report(name)
      }
    })
  })

  const health = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const all = yield* allSlots
    const stalled = all.flatMap((slot) => {
      const worker = workerReport(slot, now, options)
      return worker.stalled_reason === null ? [] : [{ agent: slot.name, reason: worker.stalled_reason }]
    })
    return {
      stalled,
      failingSaves: yield* saves.failing,
      workerRestarts: all.reduce((total, slot) => total + slot.restarts, 0)
    }
  })

  return Deliveries.of({ report, health, redeliver: makeRedeliver({ deadLetters, events, surface }) })
})

const idleWorker: AgentDeliveryReport["worker"] = {
  state: "idle",
  step: "idle",
  step_since: 0,
  waiting: 0,
  in_flight: null,
  stalled_reason: null,
  restarts: 0,
  last_restart: null
}

/** Starts consuming `NodeControl.deliveries` (and its salvaged undecodable frames) for the lifetime of the layer. */
export const layer: Layer.Layer<
  Deliveries,
  never,
  NodeControl | AgentRegistry | DeliveryBook | DeadLetters | EventLog | TokenStore | DeliveriesConfig
> = Layer.scoped(Deliveries, make)
