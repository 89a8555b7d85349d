// Workload 6: in-process operations per second of our own code (no upstream equivalent).
// Wire decode + encode of a `deliver` frame (dist/wire), and DeliveryBook decisions when
// dist/broker/deliveryDecisions.js exists.
import { existsSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { performance } from "node:perf_hooks"
import { Effect } from "effect"

const deliverFrame = {
  v: 1,
  type: "deliver",
  agent: "codex-builder-1",
  agent_id: "agt_01J7FLEET000000000000101",
  delivery_id: "dlv_01J7FLEET000000000000301",
  msg_id: "msg_01J7FLEET000000000000201",
  seq: 43,
  mode: "wait",
  payload: {
    type: "message.created",
    data: {
      id: "msg_01J7FLEET000000000000201",
      agent_id: "agt_01J7FLEET000000000000999",
      agent_name: "orchestrator",
      channel_name: "general",
      text: "Please run the fleet fixture tests.",
      thread_id: null
    }
  }
}

/** Calls `op` in batches until `durationMs` has passed (after a warm-up); operations per second. */
export const opsPerSecond = (op, durationMs) => {
  const batch = 200
  const warmUntil = performance.now() + Math.min(200, durationMs / 4)
  while (performance.now() < warmUntil) for (let i = 0; i < batch; i++) op(i)
  let count = 0
  const startedAt = performance.now()
  let elapsed = 0
  while (elapsed < durationMs) {
    for (let i = 0; i < batch; i++) op(i)
    count += batch
    elapsed = performance.now() - startedAt
  }
  return (count / elapsed) * 1000
}

const importDist = (root, path) => import(pathToFileURL(join(root, "dist", path)).href)

export const microWire = async ({ root, durationMs }) => {
  const wire = await importDist(root, "wire/index.js")
  const text = JSON.stringify(deliverFrame)
  // Sanity: the round trip must give the same frame back, or the figure means nothing.
  const roundTrip = Effect.runSync(wire.encodeServerFrame(Effect.runSync(wire.decodeServerFrame(text))))
  if (JSON.stringify(JSON.parse(roundTrip)) !== text) throw new Error(`wire round trip changed the frame: ${roundTrip}`)
  return opsPerSecond(() => {
    const frame = Effect.runSync(wire.decodeServerFrame(text))
    Effect.runSync(wire.encodeServerFrame(frame))
  }, durationMs)
}

/** Undefined until src/broker/deliveryDecisions.ts has landed. */
export const microDecisions = async ({ root, durationMs }) => {
  if (!existsSync(join(root, "dist", "broker", "deliveryDecisions.js"))) return undefined
  const decisions = await importDist(root, "broker/deliveryDecisions.js")
  const bench = decisionBench(decisions)
  return bench === undefined ? undefined : opsPerSecond(bench, durationMs)
}

/**
 * One op = one in-order `deliver` frame through the per-agent machine (`step`), in the steady state:
 * the seen-id FIFO full, each frame decided, committed and acked. Undefined if the API differs.
 */
const decisionBench = (decisions) => {
  const { step, initialState, emptyCursor, seenCapacity = 512 } = decisions
  if (typeof step !== "function" || typeof initialState !== "function" || typeof emptyCursor !== "function") return undefined
  const ids = Array.from({ length: 4 * seenCapacity }, (_, i) => `msg_${1_000_000 + i}`)
  let state = initialState(emptyCursor({ agentId: "agt_1", name: "bench-agent" }))
  let seq = 0
  const arrive = () => {
    seq++
    const [next] = step(state, { _tag: "Arrive", frame: { seq, msg_id: ids[seq % ids.length] }, now: seq })
    state = next
  }
  for (let i = 0; i < 2 * seenCapacity; i++) arrive()
  if (state.cursor?.upToSeq !== seq) return undefined
  return arrive
}
