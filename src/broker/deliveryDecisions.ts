// The delivery book's decisions, pure (DESIGN "Delivery semantics", broker-spec §4.1–4.3).
//
// One agent's state is its cursor (the highest seq surfaced or skipped as a recorded gap) and a
// FIFO of the msg_ids surfaced lately. `step` is the whole per-agent state machine: the pipeline
// (Deliveries) only carries out the effects it returns, in order, so the property tests of this
// module cover what the daemon does.

export const seenCapacity = 512

/** What the book needs from a `deliver` frame. */
export interface FrameKey {
  readonly seq: number
  readonly msg_id: string
}

export interface AgentCursor {
  readonly agentId: string
  readonly name: string
  /** The highest seq surfaced (or skipped as a gap); null while only seq-0 frames were seen. */
  readonly upToSeq: number | null
  /** The seq adopted as the first one when the cursor was created (see `decide`). */
  readonly baseline: number | null
  /** The last `seenCapacity` msg_ids surfaced, oldest first. */
  readonly seen: ReadonlyArray<string>
}

export const emptyCursor = (agent: { readonly agentId: string; readonly name: string }): AgentCursor => ({
  agentId: agent.agentId,
  name: agent.name,
  upToSeq: null,
  baseline: null,
  seen: []
})

/** FIFO insert: a re-insert is a no-op, the oldest id is evicted beyond the capacity. */
export const rememberId = (seen: ReadonlyArray<string>, msgId: string, capacity = seenCapacity): ReadonlyArray<string> =>
  seen.includes(msgId)
    ? seen
    : seen.length >= capacity
    ? [...seen.slice(seen.length - capacity + 1), msgId]
    : [...seen, msgId]

export type SurfaceKind =
  /** seq 0: reactions, receipts, action results. The cursor does not move. */
  | "fanout"
  /** The first sequenced frame for this agent: its seq becomes the baseline. */
  | "baseline"
  /** seq == cursor + 1. */
  | "next"
  /** Below the adopted baseline and never seen: a frame that overtook the first one. The cursor does not move. */
  | "belowBaseline"
  /** Past a gap whose grace period ran out; the skipped range is recorded first. */
  | "afterGap"

export type Decision =
  | { readonly _tag: "Surface"; readonly kind: Exclude<SurfaceKind, "afterGap"> }
  | { readonly _tag: "Duplicate"; readonly ackAt: number }
  | { readonly _tag: "Stale"; readonly ackAt: number }
  /** seq > cursor + 1: hold the frame, hoping for `expected..seq-1`. */
  | { readonly _tag: "Gap"; readonly expected: number; readonly ackAt: number }

/**
 * The decision for a frame, in this order:
 * 1. seq 0: Surface unless the msg_id was seen (then Duplicate); the cursor never moves.
 * 2. No sequenced cursor yet: Surface and adopt the seq as the baseline. (Upstream accepted only
 *    seq 1 here, which left restarted and respawned agents deaf.)
 * 3. msg_id seen: Duplicate.
 * 4. seq <= cursor: Stale, except a never-seen frame below the baseline, which is surfaced.
 * 5. seq > cursor + 1: Gap.
 * 6. Otherwise: Surface.
 */
export const decide = (cursor: AgentCursor | undefined, frame: FrameKey): Decision => {
  const seen = cursor?.seen ?? []
  const upTo = cursor?.upToSeq ?? null
  if (frame.seq === 0) {
    return seen.includes(frame.msg_id) ? { _tag: "Duplicate", ackAt: upTo ?? 0 } : { _tag: "Surface", kind: "fanout" }
  }
  if (upTo === null) return { _tag: "Surface", kind: "baseline" }
  if (seen.includes(frame.msg_id)) return { _tag: "Duplicate", ackAt: upTo }
  if (frame.seq <= upTo) {
    const baseline = cursor?.baseline ?? null
    return baseline !== null && frame.seq < baseline
      ? { _tag: "Surface", kind: "belowBaseline" }
      : { _tag: "Stale", ackAt: upTo }
  }
  if (frame.seq > upTo + 1) return { _tag: "Gap", expected: upTo + 1, ackAt: upTo }
  return { _tag: "Surface", kind: "next" }
}

/**
 * After a frame was surfaced (injected, ack-only, or dead-lettered): remember its msg_id and,
 * for a sequenced frame, move the cursor up to its seq.
 */
export const commit = (cursor: AgentCursor, frame: FrameKey, kind: SurfaceKind): AgentCursor => {
  const seen = rememberId(cursor.seen, frame.msg_id)
  if (kind === "fanout" || kind === "belowBaseline" || frame.seq === 0) return { ...cursor, seen }
  const upToSeq = cursor.upToSeq === null ? frame.seq : Math.max(cursor.upToSeq, frame.seq)
  const baseline = cursor.upToSeq === null ? frame.seq : cursor.baseline
  return { ...cursor, upToSeq, baseline, seen }
}

/** The cumulative ack for this cursor. */
export const ackValue = (cursor: AgentCursor): number => cursor.upToSeq ?? 0

// ---------------------------------------------------------------------------------------------
// The per-agent machine: decisions plus the reorder buffer for gaps.

export interface AgentState<F extends FrameKey> {
  readonly cursor: AgentCursor
  /** Frames held behind a gap, by ascending seq, one per seq. */
  readonly held: ReadonlyArray<F>
  /** When the current gap started (epoch ms), or null when nothing is held. */
  readonly heldSince: number | null
}

export const initialState = <F extends FrameKey>(cursor: AgentCursor): AgentState<F> => ({
  cursor,
  held: [],
  heldSince: null
})

export interface SeqRange {
  readonly from: number
  readonly to: number
}

export type StepEffect<F extends FrameKey> =
  /** Surface the frame; `cursor` is the state to persist once it is surfaced, before the ack that follows. */
  | { readonly _tag: "Surface"; readonly frame: F; readonly kind: SurfaceKind; readonly cursor: AgentCursor }
  /** A skipped seq range, recorded before the frame after it is surfaced. */
  | { readonly _tag: "Gap"; readonly range: SeqRange }
  | { readonly _tag: "Duplicate"; readonly frame: F }
  | { readonly _tag: "Stale"; readonly frame: F }
  | { readonly _tag: "Held"; readonly frame: F; readonly expected: number }
  /** `delivery.ack {up_to_seq}`. */
  | { readonly _tag: "Ack"; readonly upToSeq: number }

export type StepEvent<F extends FrameKey> =
  | { readonly _tag: "Arrive"; readonly frame: F; readonly now: number }
  /** The grace period of the held frames ran out. */
  | { readonly _tag: "Expire" }

type Step<F extends FrameKey> = readonly [AgentState<F>, ReadonlyArray<StepEffect<F>>]

const surface = <F extends FrameKey>(state: AgentState<F>, frame: F, kind: SurfaceKind): Step<F> => {
  const cursor = commit(state.cursor, frame, kind)
  return [
    { ...state, cursor },
    [{ _tag: "Surface", frame, kind, cursor }, { _tag: "Ack", upToSeq: ackValue(cursor) }]
  ]
}

const insertHeld = <F extends FrameKey>(held: ReadonlyArray<F>, frame: F): ReadonlyArray<F> =>
  held.some((other) => other.seq === frame.seq)
    ? held
    : [...held, frame].sort((a, b) => a.seq - b.seq)

/** Handles one frame that is not held: surface it, answer it, or hold it. */
const handle = <F extends FrameKey>(state: AgentState<F>, frame: F, now: number): Step<F> => {
  const decision = decide(state.cursor, frame)
  switch (decision._tag) {
    case "Surface":
      return surface(state, frame, decision.kind)
    case "Duplicate":
      return [state, [{ _tag: "Duplicate", frame }, { _tag: "Ack", upToSeq: decision.ackAt }]]
    case "Stale":
      return [state, [{ _tag: "Stale", frame }, { _tag: "Ack", upToSeq: decision.ackAt }]]
    case "Gap":
      return [
        { ...state, held: insertHeld(state.held, frame), heldSince: state.heldSince ?? now },
        [{ _tag: "Held", frame, expected: decision.expected }]
      ]
  }
}

/** Surfaces the held frames that no longer wait behind a gap. */
const drain = <F extends FrameKey>(state: AgentState<F>, now: number): Step<F> => {
  let current = state
  const effects: Array<StepEffect<F>> = []
  for (;;) {
    const [head, ...rest] = current.held
    if (head === undefined) break
    if (decide(current.cursor, head)._tag === "Gap") break
    const [next, more] = handle({ ...current, held: rest }, head, now)
    current = next
    effects.push(...more)
  }
  // A gap still open further up starts its own grace period.
  const heldSince = current.held.length === 0
    ? null
    : current.held.length === state.held.length
    ? state.heldSince
    : now
  return [{ ...current, heldSince }, effects]
}

/** Surfaces every held frame in order, recording each skipped range as a gap. */
const expire = <F extends FrameKey>(state: AgentState<F>): Step<F> => {
  let current: AgentState<F> = { ...state, held: [], heldSince: null }
  const effects: Array<StepEffect<F>> = []
  for (const frame of state.held) {
    const decision = decide(current.cursor, frame)
    if (decision._tag === "Gap") {
      effects.push({ _tag: "Gap", range: { from: decision.expected, to: frame.seq - 1 } })
      const [next, more] = surface(current, frame, "afterGap")
      current = next
      effects.push(...more)
    } else {
      const [next, more] = handle(current, frame, 0)
      current = next
      effects.push(...more)
    }
  }
  return [current, effects]
}

export const step = <F extends FrameKey>(state: AgentState<F>, event: StepEvent<F>): Step<F> => {
  if (event._tag === "Expire") return expire(state)
  const [afterFrame, effects] = handle(state, event.frame, event.now)
  if (afterFrame.held.length === 0 || effects.some((effect) => effect._tag === "Held")) {
    return [afterFrame, effects]
  }
  const [drained, more] = drain(afterFrame, event.now)
  return [drained, [...effects, ...more]]
}

/** When the held frames must be surfaced anyway (epoch ms), or null when nothing is held. */
export const deadline = (state: AgentState<FrameKey>, graceMillis: number): number | null =>
  state.heldSince === null ? null : state.heldSince + graceMillis
