// Workload 3: a stream of channel messages (each delivered to every agent) and DMs at increasing
// rates, in deliveries per second across the fleet. A rate is sustained when the sender kept up,
// and every delivery was read exactly once by the end of the drain window.
import { now, sleep } from "../lib/procs.mjs"
import { summarize } from "../lib/stats.mjs"

const TICK_MS = 5
const MAX_IN_FLIGHT = 256

/** One step: `rate` deliveries/s for `durationMs`, then wait up to `drainMs` for the fleet to read them. */
const runStep = async ({ fleet, engine, sender, channel, rate, durationMs, drainMs, dmShare, step }) => {
  const names = fleet.agents.map((a) => a.name)
  const channelRate = channel ? (rate * (1 - dmShare)) / names.length : 0
  const dmRate = channel ? rate * dmShare : rate
  const messages = []
  let inFlight = 0
  let sendErrors = 0
  let firstError
  let dmIssued = 0
  let channelIssued = 0

  const issue = (kind) => {
    const mark = `s${step}.${messages.length}`
    const recipients = kind === "dm" ? [names[dmIssued % names.length]] : names
    const message = { mark, recipients, sentAt: now() }
    messages.push(message)
    inFlight++
    const text = `bench#${mark} throughput`
    const sending = kind === "dm" ? engine.dm(sender.token, recipients[0], text) : engine.post(sender.token, channel, text)
    sending
      .catch((error) => {
        sendErrors++
        firstError ??= String(error.message ?? error)
        message.failed = true
      })
      .finally(() => inFlight--)
  }

  // Exactly `target` messages of each kind, evenly spaced over the step (the first at t = 0).
  const durationS = durationMs / 1000
  const dmTarget = Math.round(dmRate * durationS)
  const channelTarget = Math.round(channelRate * durationS)
  const due = (elapsedS, perSecond, target) => Math.min(target, Math.floor(elapsedS * perSecond) + 1)
  const startedAt = now()
  let behind = false
  while (now() - startedAt < durationMs) {
    const elapsedS = (now() - startedAt) / 1000
    while (dmIssued < due(elapsedS, dmRate, dmTarget) && inFlight < MAX_IN_FLIGHT) {
      issue("dm")
      dmIssued++
    }
    while (channelIssued < due(elapsedS, channelRate, channelTarget) && inFlight < MAX_IN_FLIGHT) {
      issue("channel")
      channelIssued++
    }
    if (inFlight >= MAX_IN_FLIGHT) behind = true
    await sleep(TICK_MS)
  }
  // More than a tick's worth still unsent: the sender (or the engine answering it) could not keep the pace.
  const unsent = dmTarget - dmIssued + (channelTarget - channelIssued) * names.length
  if (unsent > Math.max(2 * names.length, rate * 0.02)) behind = true
  for (; dmIssued < dmTarget; dmIssued++) issue("dm")
  for (; channelIssued < channelTarget; channelIssued++) issue("channel")
  const sendingEndedAt = now()
  while (inFlight > 0 && now() - sendingEndedAt < 10000) await sleep(TICK_MS)

  const accepted = messages.filter((m) => !m.failed)
  let readOnce = 0
  const countRead = () => {
    readOnce = 0
    for (const m of accepted) for (const name of m.recipients) if (fleet.count(m.mark, name) > 0) readOnce++
    return readOnce
  }
  const total = accepted.reduce((sum, m) => sum + m.recipients.length, 0)
  const drained = await fleet.waitFor(() => countRead() >= total, drainMs)
  fleet.poll()
  countRead()

  let duplicates = 0
  const latencies = []
  for (const m of accepted) {
    for (const name of m.recipients) {
      const n = fleet.count(m.mark, name)
      if (n > 1) duplicates += n - 1
      const readAt = fleet.first(m.mark, name)
      if (readAt !== undefined) latencies.push(readAt - m.sentAt)
    }
  }
  const offered = dmTarget + channelTarget * names.length
  const missing = total - readOnce
  const sustained = sendErrors === 0 && !behind && total === offered && missing === 0 && duplicates === 0
  return {
    rate,
    durationS,
    offeredDeliveries: offered,
    deliveries: total,
    achievedRate: total / durationS,
    missing,
    duplicates,
    sendErrors,
    ...(firstError ? { firstError } : {}),
    senderFellBehind: behind,
    drained,
    sustained,
    latency: summarize(latencies)
  }
}

/** Climbs the rate ladder until a step is not sustained; reports every step and the best one. */
export const runThroughput = async ({ fleet, engine, sender, channel, rates, stepMs, drainMs, dmShare, log }) => {
  const steps = []
  let best
  for (const [index, rate] of rates.entries()) {
    const result = await runStep({ fleet, engine, sender, channel, rate, durationMs: stepMs, drainMs, dmShare, step: index })
    steps.push(result)
    log(
      `  ${rate} deliveries/s for ${result.durationS} s: ${result.sustained ? "sustained" : "NOT sustained"}` +
        ` (read ${result.deliveries - result.missing}/${result.deliveries}, dup ${result.duplicates}, send errors ${result.sendErrors}` +
        `${result.senderFellBehind ? ", sender fell behind" : ""}, p50 ${result.latency.p50?.toFixed(1)} ms)`
    )
    if (!result.sustained) break
    best = result
  }
  return { channel: channel ?? null, dmShare, steps, best: best ?? null }
}
