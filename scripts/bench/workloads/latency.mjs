// Workloads 1 and 2: one agent, DMs sent one at a time (the next only after the agent read the
// previous one). End-to-end latency = send → line read by the agent; broker overhead = the engine
// writing the `deliver` frame (its RELAY_ENGINE_DELIVER_LOG) → line read by the agent.
import { readJsonLines } from "../lib/sinks.mjs"
import { now } from "../lib/procs.mjs"
import { summarize } from "../lib/stats.mjs"

export const runLatency = async ({ fleet, engine, sender, agent, count, warmup, perMessageTimeoutMs, deliverLog }) => {
  const sent = []
  let lost = 0
  let lostInARow = 0
  for (let i = 0; i < warmup + count; i++) {
    const mark = `lat${i}`
    const sentAt = now()
    const msgId = await engine.dm(sender.token, agent, `bench#${mark} latency probe ${i}`)
    const ok = await fleet.waitFor(() => fleet.count(mark, agent) > 0, perMessageTimeoutMs)
    if (!ok) {
      lost++
      lostInARow++
      if (lostInARow >= 3) throw new Error(`latency: 3 messages in a row not read by ${agent} within ${perMessageTimeoutMs} ms`)
    } else {
      lostInARow = 0
    }
    if (i >= warmup) sent.push({ mark, msgId, sentAt })
  }
  fleet.poll()

  const firstWrite = new Map()
  for (const entry of readJsonLines(deliverLog)) {
    const key = `${entry.msg_id}|${entry.agent}`
    if (!firstWrite.has(key)) firstWrite.set(key, entry.t)
  }

  const endToEnd = []
  const overhead = []
  const enginePart = []
  let duplicates = 0
  for (const { mark, msgId, sentAt } of sent) {
    const readAt = fleet.first(mark, agent)
    if (readAt === undefined) continue
    duplicates += fleet.count(mark, agent) - 1
    endToEnd.push(readAt - sentAt)
    const writtenAt = firstWrite.get(`${msgId}|${agent}`)
    if (writtenAt !== undefined) {
      overhead.push(readAt - writtenAt)
      enginePart.push(writtenAt - sentAt)
    }
  }
  return {
    sent: sent.length,
    lost,
    duplicates,
    endToEnd: summarize(endToEnd),
    overhead: summarize(overhead),
    // send → the engine wrote the deliver frame: the sender's HTTP call and the engine's own work.
    enginePart: summarize(enginePart),
    overheadSource: overhead.length > 0 ? "engine deliver log" : "none (the engine wrote no deliver log)"
  }
}
