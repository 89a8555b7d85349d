import * as Effect from "effect/Effect"
import type { Deliver } from "../wire/frames.js"
import type { Json } from "../wire/Json.js"
import type { SeqRange } from "./deliveryDecisions.js"

// What the delivery pipeline shows about each agent (`GET /api/node-delivery`), and the per-agent
// counters and last-seen facts it keeps for that.

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
  /** Unexpected failures (defects) caught while handling a frame; the frame still ended in a visible state. */
  readonly failures: number
}

/**
 * What an agent's delivery worker is doing. `injecting` includes waiting for the agent to take
 * input (its task typed first, the readiness gate), so it has its own, higher, stall bound.
 */
export type WorkerStep =
  | "idle"
  | "deciding"
  | "injecting"
  | "dead-lettering"
  | "saving cursor"
  | "acking"
  | "recovering from a failure"

/** What the agent's worker is doing (see deliveryWorker.ts). */
export interface WorkerReport {
  /** `idle`: nothing waiting; `working`: frames waiting and moving; `stalled`: waiting, not moving. */
  readonly state: "idle" | "working" | "stalled"
  readonly step: WorkerStep
  /** Epoch ms when the current step began. */
  readonly step_since: number
  /** Frames queued for the worker, plus the one in hand. */
  readonly waiting: number
  readonly in_flight: { readonly seq: number; readonly msg_id: string } | null
  /** Why it is stalled (what it waits on, for how long); null unless stalled. */
  readonly stalled_reason: string | null
  /** Times the worker ended on a defect and was restarted. */
  readonly restarts: number
  readonly last_restart: { readonly at: number; readonly cause: string } | null
}

/** Whether the agent's cursor is on disk; while saves fail the ack waits (it would not be durable). */
export interface DurabilityReport {
  readonly cursor_saved: boolean
  /** The last save error while saves fail. */
  readonly save_error: string | null
  /** Epoch ms of the first failed save of the current run of failures. */
  readonly failing_since: number | null
  /** The ack that waits for a successful save. */
  readonly pending_ack: number | null
}

/** One agent's delivery state, for `GET /api/node-delivery`. */
export interface AgentDeliveryReport {
  readonly agent: string
  /** The engine's id for the agent, from its latest frame (null if only undecodable frames came). */
  readonly agent_id: string | null
  /** The cursor (`up_to_seq`), null before the first sequenced frame. */
  readonly cursor: number | null
  readonly baseline: number | null
  /** Seqs waiting behind a gap. */
  readonly held: ReadonlyArray<number>
  readonly last_frame: FrameSummary | null
  readonly last_ack: { readonly up_to_seq: number; readonly at: number } | null
  readonly last_gap: SeqRange | null
  readonly last_error: string | null
  readonly counts: DeliveryCounts
  readonly worker: WorkerReport
  readonly durability: DurabilityReport
}

export const zeroCounts: DeliveryCounts = {
  received: 0,
  surfaced: 0,
  injected: 0,
  ack_only: 0,
  duplicate: 0,
  stale: 0,
  held: 0,
  gaps: 0,
  missing_seqs: 0,
  dead_lettered: 0,
  failures: 0
}

/** What the stats keep per agent (the cursor comes from the book, the worker and durability from their owners). */
export type AgentStats = Pick<
  AgentDeliveryReport,
  "agent_id" | "held" | "last_frame" | "last_ack" | "last_gap" | "last_error" | "counts"
>

export const emptyStats: AgentStats = {
  agent_id: null,
  held: [],
  last_frame: null,
  last_ack: null,
  last_gap: null,
  last_error: null,
  counts: zeroCounts
}

export const payloadType = (payload: Json): string | null => {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return null
  const type = (payload as { readonly [key: string]: Json })["type"]
  return typeof type === "string" ? type : null
}

export const frameSummary = (frame: Pick<Deliver, "seq" | "msg_id" | "delivery_id" | "mode" | "payload">, undecodable: string | null, at: number): FrameSummary => ({
  seq: frame.seq,
  msg_id: frame.msg_id,
  delivery_id: frame.delivery_id,
  type: payloadType(frame.payload),
  undecodable,
  mode: frame.mode,
  at
})

/** The per-agent stats, keyed by agent name (like the acks). */
export interface DeliveryStats {
  readonly all: Effect.Effect<ReadonlyMap<string, AgentStats>>
  /** Replaces the facts of an agent (its counters are kept: they change only through `count`). */
  readonly update: (name: string, f: (current: AgentStats) => AgentStats) => Effect.Effect<void>
  readonly count: (name: string, key: keyof DeliveryCounts, by?: number) => Effect.Effect<void>
  readonly setError: (name: string, error: string) => Effect.Effect<void>
}

type Counters = { -readonly [K in keyof DeliveryCounts]: number }

/** Plain counters and records, changed in place: a delivery touches them several times. */
export const makeStats: Effect.Effect<DeliveryStats> = Effect.sync(() => {
  const facts = new Map<string, AgentStats>()
  const counters = new Map<string, Counters>()
  const countersOf = (name: string): Counters => {
    let entry = counters.get(name)
    if (entry === undefined) {
      entry = { ...zeroCounts }
      counters.set(name, entry)
    }
    return entry
  }
  const current = (name: string): AgentStats => ({ ...(facts.get(name) ?? emptyStats), counts: { ...countersOf(name) } })
  return {
    all: Effect.sync(() => {
      const names = new Set([...facts.keys(), ...counters.keys()])
      return new Map([...names].map((name) => [name, current(name)]))
    }),
    update: (name, f) => Effect.sync(() => void facts.set(name, f(facts.get(name) ?? emptyStats))),
    count: (name, key, by = 1) => Effect.sync(() => void (countersOf(name)[key] += by)),
    setError: (name, error) => Effect.sync(() => void facts.set(name, { ...(facts.get(name) ?? emptyStats), last_error: error }))
  }
})
