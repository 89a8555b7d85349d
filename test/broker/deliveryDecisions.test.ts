import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import {
  type AgentCursor,
  type AgentState,
  commit,
  decide,
  deadline,
  emptyCursor,
  type FrameKey,
  initialState,
  rememberId,
  type SeqRange,
  step,
  type StepEffect,
  type StepEvent
} from "../../src/broker/deliveryDecisions.js"

const agent = { agentId: "agt_1", name: "bob" }
const frame = (seq: number, msg_id = `m${seq}`): FrameKey => ({ seq, msg_id })
const seeded = (upToSeq: number): AgentCursor => ({ ...emptyCursor(agent), upToSeq, baseline: 1 })

describe("decide and commit (broker-spec §8 delivery book cases)", () => {
  it("dedups and tracks the cumulative ack", () => {
    const fresh = emptyCursor(agent)
    assert.deepStrictEqual(decide(fresh, frame(1)), { _tag: "Surface", kind: "baseline" })
    const after = commit(fresh, frame(1), "baseline")
    assert.strictEqual(after.upToSeq, 1)
    assert.deepStrictEqual(decide(after, frame(1)), { _tag: "Duplicate", ackAt: 1 })
    assert.deepStrictEqual(decide(after, frame(1, "other")), { _tag: "Stale", ackAt: 1 })
    assert.deepStrictEqual(decide(after, frame(3)), { _tag: "Gap", expected: 2, ackAt: 1 })
  })

  it("resumes from a seeded cursor", () => {
    assert.deepStrictEqual(decide(seeded(42), frame(43)), { _tag: "Surface", kind: "next" })
    assert.strictEqual(commit(seeded(42), frame(43), "next").upToSeq, 43)
  })

  it("decides the same way until the delivery is committed", () => {
    const cursor = seeded(4)
    assert.deepStrictEqual(decide(cursor, frame(5)), decide(cursor, frame(5)))
    assert.deepStrictEqual(decide(cursor, frame(5)), { _tag: "Surface", kind: "next" })
    assert.deepStrictEqual(decide(commit(cursor, frame(5), "next"), frame(5)), { _tag: "Duplicate", ackAt: 5 })
  })

  it("surfaces seq-0 fan-out without moving the cursor", () => {
    const cursor = seeded(5)
    assert.deepStrictEqual(decide(cursor, frame(0, "react")), { _tag: "Surface", kind: "fanout" })
    const after = commit(cursor, frame(0, "react"), "fanout")
    assert.strictEqual(after.upToSeq, 5)
    assert.deepStrictEqual(decide(after, frame(0, "react")), { _tag: "Duplicate", ackAt: 5 })
    assert.deepStrictEqual(decide(after, frame(0, "read")), { _tag: "Surface", kind: "fanout" })
    assert.deepStrictEqual(decide(after, frame(6)), { _tag: "Surface", kind: "next" })
  })

  it("surfaces seq-0 for an agent without a cursor, acking 0", () => {
    assert.deepStrictEqual(decide(undefined, frame(0, "x")), { _tag: "Surface", kind: "fanout" })
    const after = commit(emptyCursor(agent), frame(0, "x"), "fanout")
    assert.strictEqual(after.upToSeq, null)
    assert.deepStrictEqual(decide(after, frame(0, "x")), { _tag: "Duplicate", ackAt: 0 })
  })

  it("adopts the first sequenced seq as the baseline, even after seq-0 frames (no deaf respawns)", () => {
    const fanoutOnly = commit(emptyCursor(agent), frame(0, "x"), "fanout")
    assert.deepStrictEqual(decide(fanoutOnly, frame(57)), { _tag: "Surface", kind: "baseline" })
    const after = commit(fanoutOnly, frame(57), "baseline")
    assert.strictEqual(after.upToSeq, 57)
    assert.strictEqual(after.baseline, 57)
    assert.deepStrictEqual(decide(after, frame(58)), { _tag: "Surface", kind: "next" })
    assert.deepStrictEqual(decide(after, frame(57, "other")), { _tag: "Stale", ackAt: 57 })
  })

  it("surfaces a never-seen frame that overtook the baseline, without moving the cursor", () => {
    const after = commit(emptyCursor(agent), frame(7), "baseline")
    assert.deepStrictEqual(decide(after, frame(6)), { _tag: "Surface", kind: "belowBaseline" })
    const both = commit(after, frame(6), "belowBaseline")
    assert.strictEqual(both.upToSeq, 7)
    assert.deepStrictEqual(decide(both, frame(6)), { _tag: "Duplicate", ackAt: 7 })
  })

  it("checks the seen set before the seq", () => {
    const after = commit(seeded(3), frame(4), "next")
    assert.deepStrictEqual(decide(after, frame(9, "m4")), { _tag: "Duplicate", ackAt: 4 })
  })
})

describe("seen msg_ids", () => {
  it("evicts the oldest beyond the capacity", () => {
    let seen: ReadonlyArray<string> = []
    for (let i = 0; i < 515; i++) seen = rememberId(seen, `m${i}`)
    assert.strictEqual(seen.length, 512)
    assert.strictEqual(seen[0], "m3")
    assert.strictEqual(seen[511], "m514")
    assert.deepStrictEqual(rememberId(["a", "b", "c"], "d", 3), ["b", "c", "d"])
  })

  it("re-inserting is a no-op", () => {
    const seen = rememberId(rememberId(["a", "b"], "a"), "b")
    assert.deepStrictEqual(seen, ["a", "b"])
  })
})

type Frame = FrameKey
const run = (start: AgentState<Frame>, events: ReadonlyArray<StepEvent<Frame>>) => {
  let state = start
  const effects: Array<StepEffect<Frame>> = []
  for (const event of events) {
    const [next, more] = step(state, event)
    state = next
    effects.push(...more)
  }
  return { state, effects }
}
const arrive = (seq: number, now = 0): StepEvent<Frame> => ({ _tag: "Arrive", frame: frame(seq), now })
const expireEvent: StepEvent<Frame> = { _tag: "Expire" }
const surfacedSeqs = (effects: ReadonlyArray<StepEffect<Frame>>) =>
  effects.flatMap((effect) => effect._tag === "Surface" ? [effect.frame.seq] : [])
const acks = (effects: ReadonlyArray<StepEffect<Frame>>) =>
  effects.flatMap((effect) => effect._tag === "Ack" ? [effect.upToSeq] : [])
const gaps = (effects: ReadonlyArray<StepEffect<Frame>>) =>
  effects.flatMap((effect) => effect._tag === "Gap" ? [effect.range] : [])

describe("step: the reorder buffer", () => {
  it("holds a frame behind a gap and surfaces both in order when the missing one arrives", () => {
    const { effects, state } = run(initialState(seeded(1)), [arrive(3, 100), arrive(2, 150)])
    assert.deepStrictEqual(effects[0], { _tag: "Held", frame: frame(3), expected: 2 })
    assert.deepStrictEqual(surfacedSeqs(effects), [2, 3])
    assert.deepStrictEqual(acks(effects), [2, 3])
    assert.deepStrictEqual(gaps(effects), [])
    assert.strictEqual(state.held.length, 0)
    assert.strictEqual(state.heldSince, null)
  })

  it("starts the grace period at the first held frame", () => {
    const { state } = run(initialState(seeded(1)), [arrive(3, 100), arrive(4, 900)])
    assert.strictEqual(deadline(state, 2000), 2100)
    assert.deepStrictEqual(state.held.map((held) => held.seq), [3, 4])
  })

  it("after the grace period surfaces the held frames in order and records every skipped range", () => {
    const { effects, state } = run(initialState(seeded(1)), [arrive(6), arrive(4), arrive(9), expireEvent])
    assert.deepStrictEqual(gaps(effects), [{ from: 2, to: 3 }, { from: 5, to: 5 }, { from: 7, to: 8 }])
    assert.deepStrictEqual(surfacedSeqs(effects), [4, 6, 9])
    assert.deepStrictEqual(acks(effects), [4, 6, 9])
    // Each gap is recorded before the frame after it is surfaced, and each ack follows its surface.
    assert.deepStrictEqual(
      effects.filter((effect) => effect._tag !== "Held").map((effect) => effect._tag),
      ["Gap", "Surface", "Ack", "Gap", "Surface", "Ack", "Gap", "Surface", "Ack"]
    )
    assert.strictEqual(state.cursor.upToSeq, 9)
    // A missing frame that turns up late is stale: it was recorded as a gap.
    const late = step(state, arrive(2))
    assert.deepStrictEqual(late[1].map((effect) => effect._tag), ["Stale", "Ack"])
  })

  it("a fill that leaves a later gap open restarts the grace period", () => {
    const { state, effects } = run(initialState(seeded(1)), [arrive(3, 100), arrive(5, 200), arrive(2, 1000)])
    assert.deepStrictEqual(surfacedSeqs(effects), [2, 3])
    assert.deepStrictEqual(state.held.map((held) => held.seq), [5])
    assert.strictEqual(state.heldSince, 1000)
  })

  it("answers duplicates and stale frames with an ack at the cursor, without surfacing", () => {
    const { effects } = run(initialState(seeded(1)), [arrive(2), arrive(2), arrive(1)])
    assert.deepStrictEqual(effects.map((effect) => effect._tag), ["Surface", "Ack", "Duplicate", "Ack", "Stale", "Ack"])
    assert.deepStrictEqual(acks(effects), [2, 2, 2])
  })

  it("holds one copy of a redelivered held frame", () => {
    const { state, effects } = run(initialState(seeded(1)), [arrive(3), arrive(3), arrive(2)])
    assert.deepStrictEqual(surfacedSeqs(effects), [2, 3])
    assert.strictEqual(state.held.length, 0)
  })
})

// ---------------------------------------------------------------------------------------------
// Property: for any interleaving of duplicates, reorders and redeliveries of a sequence, each
// msg_id is surfaced exactly once, and an ack never passes a seq that was neither surfaced nor
// recorded as a gap.

interface Scenario {
  readonly first: number
  readonly count: number
  /** Established cursor at first - 1, or a fresh agent (the first arrival becomes the baseline). */
  readonly established: boolean
  readonly events: ReadonlyArray<{ readonly arrive: number } | "expire">
}

const scenario = (withExpiries: boolean): FastCheck.Arbitrary<Scenario> =>
  FastCheck.record({
    first: FastCheck.integer({ min: 1, max: 1000 }),
    count: FastCheck.integer({ min: 1, max: 25 }),
    established: FastCheck.boolean()
  }).chain(({ first, count, established }) => {
    const index = FastCheck.integer({ min: 0, max: count - 1 })
    const noise = FastCheck.array(
      withExpiries
        ? FastCheck.oneof(index.map((arrive) => ({ arrive })), FastCheck.constant("expire" as const))
        : index.map((arrive) => ({ arrive })),
      { maxLength: 3 * count }
    )
    // Every frame arrives at least once (redeliveries and reorders come from the noise and the shuffle).
    const all = FastCheck.shuffledSubarray(Array.from({ length: count }, (_, i) => ({ arrive: i })), {
      minLength: count,
      maxLength: count
    })
    return FastCheck.tuple(noise, all, FastCheck.integer({ min: 0, max: 3 * count })).map(([noisy, everyOnce, at]) => {
      const events = [...noisy]
      events.splice(Math.min(at, events.length), 0, ...everyOnce)
      return { first, count, established, events }
    })
  })

const play = (s: Scenario) => {
  const cursor = s.established ? { ...emptyCursor(agent), upToSeq: s.first - 1, baseline: 1 } : emptyCursor(agent)
  let state = initialState<Frame>(cursor)
  const surfaced: Array<number> = []
  const gapSeqs = new Set<number>()
  let now = 0
  const checkAck = (upTo: number, floor: number) => {
    // Every seq in (floor, upTo] is accounted for at the moment of the ack.
    for (let seq = floor + 1; seq <= upTo; seq++) {
      assert.isTrue(surfaced.includes(seq) || gapSeqs.has(seq), `ack ${upTo} passes seq ${seq}`)
    }
  }
  const apply = (event: StepEvent<Frame>) => {
    const [next, effects] = step(state, event)
    state = next
    for (const effect of effects) {
      if (effect._tag === "Surface") surfaced.push(effect.frame.seq)
      if (effect._tag === "Gap") addRange(gapSeqs, effect.range)
      if (effect._tag === "Ack") {
        const floor = s.established ? s.first - 1 : (state.cursor.baseline ?? 0) - 1
        checkAck(effect.upToSeq, floor)
      }
    }
  }
  for (const event of s.events) {
    now += 10
    apply(event === "expire" ? expireEvent : { _tag: "Arrive", frame: frame(s.first + event.arrive), now })
  }
  apply(expireEvent)
  return { surfaced, gapSeqs, state }
}

const addRange = (set: Set<number>, range: SeqRange) => {
  for (let seq = range.from; seq <= range.to; seq++) set.add(seq)
}

describe("step: properties", () => {
  it.prop("without a grace expiry before the end, each msg_id is surfaced exactly once", [scenario(false)], ([s]) => {
    const { surfaced, gapSeqs, state } = play(s)
    assert.deepStrictEqual([...surfaced].sort((a, b) => a - b), Array.from({ length: s.count }, (_, i) => s.first + i))
    assert.strictEqual(gapSeqs.size, 0)
    assert.strictEqual(state.cursor.upToSeq, s.first + s.count - 1)
    if (s.established) {
      // From an established cursor the order is the seq order.
      assert.deepStrictEqual(surfaced, [...surfaced].sort((a, b) => a - b))
    }
  }, { fastCheck: { numRuns: 300 } })

  it.prop("with expiries anywhere, each msg_id is surfaced at most once or recorded as a gap, never both, and acks never pass an unaccounted seq", [scenario(true)], ([s]) => {
    const { surfaced, gapSeqs, state } = play(s)
    assert.strictEqual(new Set(surfaced).size, surfaced.length, "surfaced twice")
    for (const seq of surfaced) assert.isFalse(gapSeqs.has(seq), `seq ${seq} surfaced and recorded as a gap`)
    const last = s.first + s.count - 1
    assert.strictEqual(state.cursor.upToSeq, last)
    const floor = s.established ? s.first : state.cursor.baseline ?? s.first
    for (let seq = floor; seq <= last; seq++) {
      assert.isTrue(surfaced.includes(seq) || gapSeqs.has(seq), `seq ${seq} neither surfaced nor a gap`)
    }
  }, { fastCheck: { numRuns: 300 } })
})
