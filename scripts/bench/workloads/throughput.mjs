// Workload 3: a stream of channel messages (each delivered to every agent) and DMs at increasing
// rates, in deliveries per second across the fleet. A rate is sustained when
// - the sender kept the pace (every message sent on schedule, every HTTP answer back in time),
// - every delivery was read exactly once (no loss, no duplicate), and
// - the fleet kept up: p99 latency (send → read) at most `latencyBoundMs`, so no backlog grew.
// Each step also splits the latency at the engine's deliver-frame write (its deliver log): the
// engine's part (send → frame written) and the broker's part (frame written → line read).
import { followJsonLines } from "../lib/sinks.mjs"
import { now, sleep } from "../lib/procs.mjs"
import { summarize } from "../lib/stats.mjs"

const TICK_MS = 5
const MAX_IN_FLIGHT = 256

/** One step: `rate` deliveries/s for `durationMs`, then wait up to `drainMs` for the fleet to read them. */
const runStep = async ({ fleet, engine, engineCpuMs, sender, broker, channel, rate, durationMs, drainMs, dmShare, latencyBoundMs, step, frames }) => {
  const names = fleet.agents.map((a) => a.name)
  const channelRate = channel ? (rate * (1 - dmShare)) / names.length : 0
  const dmRate = channel ? rate * dmShare : rate
  const messages = []
  let inFlight = 0
  let sendErrors = 0
  let firstError
  let dmIssued = 0
  let channelIssued = 0
  let slowestAnswerMs = 0

  const issue = (kind) => {
    const mark = `s${step}.${messages.length}`
    const recipients = kind === "dm" ? [names[dmIssued % names.length]] : names
    const message = { mark, recipients, sentAt: now() }
    messages.push(message)
    inFlight++
    const text = `bench#${mark} throughput`
    const sending = kind === "dm" ? engine.dm(sender.token, recipients[0], text) : engine.post(sender.token, channel, text)
    sending
      .then((msgId) => {
        message.msgId = msgId
      })
      .catch((error) => {
        sendErrors++
        firstError ??= String(error.message ?? error)
        message.failed = true
      })
      .finally(() => {
        inFlight--
        slowestAnswerMs = Math.max(slowestAnswerMs, now() - message.sentAt)
      })
  }

  // Exactly `target` messages of each kind, evenly spaced over the step (the first at t = 0).
  const durationS = durationMs / 1000
  const dmTarget = Math.round(dmRate * durationS)
  const channelTarget = Math.round(channelRate * durationS)
  const due = (elapsedS, perSecond, target) => Math.min(target, Math.floor(elapsedS * perSecond) + 1)
  const cpuBefore = broker.cpuMs()
  const engineCpuBefore = engineCpuMs()
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
  const total = accepted.reduce((sum, m) => sum + m.recipients.length, 0)
  const countRead = () => {
    let read = 0
    for (const m of accepted) for (const name of m.recipients) if (fleet.count(m.mark, name) > 0) read++
    return read
  }
  const drained = await fleet.waitFor(() => countRead() >= total, drainMs)
  const cpuAfter = broker.cpuMs()
  const engineCpuAfter = engineCpuMs()
  fleet.poll()
  frames.poll()
  const readOnce = countRead()

  let duplicates = 0
  const latencies = []
  const enginePart = []
  const brokerPart = []
  for (const m of accepted) {
    for (const name of m.recipients) {
      const n = fleet.count(m.mark, name)
      if (n > 1) duplicates += n - 1
      const readAt = fleet.first(m.mark, name)
      if (readAt === undefined) continue
      latencies.push(readAt - m.sentAt)
      const writtenAt = frames.firstWrite(m.msgId, name)
      if (writtenAt !== undefined) {
        enginePart.push(writtenAt - m.sentAt)
        brokerPart.push(readAt - writtenAt)
      }
    }
  }
  const offered = dmTarget + channelTarget * names.length
  const missing = total - readOnce
  const latency = summarize(latencies)
  const keptUp = latency.n > 0 && latency.p99 <= latencyBoundMs
  const sustained = sendErrors === 0 && !behind && total === offered && missing === 0 && duplicates === 0 && keptUp
  return {
    rate,
    durationS,
    offeredDeliveries: offered,
    deliveries: total,
    missing,
    duplicates,
    sendErrors,
    ...(firstError ? { firstError } : {}),
    senderFellBehind: behind,
    slowestAnswerMs,
    drained,
    keptUp,
    sustained,
    latency,
    engineLatency: summarize(enginePart),
    brokerLatency: summarize(brokerPart),
    // Includes the drain wait, when the broker should be idle; per 1 000 deliveries read.
    brokerCpuMsPer1000: cpuBefore === undefined || readOnce === 0 ? undefined : ((cpuAfter - cpuBefore) / readOnce) * 1000,
    engineCpuMsPer1000: engineCpuBefore === undefined || readOnce === 0 ? undefined : ((engineCpuAfter - engineCpuBefore) / readOnce) * 1000
  }
}

/** The engine's deliver log, followed: the first write time of each (msg_id, agent). */
const followFrames = (deliverLog) => {
  const first = new Map()
  const follower = followJsonLines(deliverLog, (entry) => {
    const key = `${entry.msg_id}|${entry.agent}`
    if (!first.has(key)) first.set(key, entry.t)
  })
  return { poll: follower.poll, close: follower.close, firstWrite: (msgId, agent) => first.get(`${msgId}|${agent}`) }
}

const cpu = (x) => (x === undefined || Number.isNaN(x) ? "n/a" : `${x.toFixed(x >= 10 ? 0 : 2)} ms`)
const ms = (x) => (x === undefined ? "n/a" : `${x.toFixed(x >= 100 ? 0 : 1)} ms`)

/** Climbs the rate ladder until a step is not sustained; reports every step and the best one. */
export const runThroughput = async ({ fleet, engine, engineCpuMs, sender, broker, channel, rates, stepMs, drainMs, dmShare, latencyBoundMs, deliverLog, log }) => {
  const frames = followFrames(deliverLog)
  const steps = []
  let best
  try {
    for (const [index, rate] of rates.entries()) {
      const result = await runStep({ fleet, engine, engineCpuMs, sender, broker, channel, rate, durationMs: stepMs, drainMs, dmShare, latencyBoundMs, step: index, frames })
      steps.push(result)
      const why = [
        result.missing > 0 ? `${result.missing} not read` : "",
        result.duplicates > 0 ? `${result.duplicates} duplicates` : "",
        result.sendErrors > 0 ? `${result.sendErrors} send errors (${result.firstError})` : "",
        result.senderFellBehind ? "the sender fell behind" : "",
        result.keptUp ? "" : `p99 over ${latencyBoundMs} ms`
      ].filter(Boolean)
      log(
        `  ${rate} deliveries/s for ${result.durationS} s: ${result.sustained ? "sustained" : `NOT sustained (${why.join(", ")})`}; ` +
          `latency p50 ${ms(result.latency.p50)} p99 ${ms(result.latency.p99)} ` +
          `(engine part p50 ${ms(result.engineLatency.p50)}, broker part p50 ${ms(result.brokerLatency.p50)} p99 ${ms(result.brokerLatency.p99)}); ` +
          `CPU per 1 000 deliveries: broker ${cpu(result.brokerCpuMsPer1000)}, engine ${cpu(result.engineCpuMsPer1000)}`
      )
      if (!result.sustained) break
      best = result
    }
  } finally {
    frames.close()
  }
  return { channel: channel ?? null, dmShare, latencyBoundMs, steps, best: best ?? null }
}

/**
 * One step at a fixed rate (whether or not it is sustained), for the CPU each delivery costs the
 * broker and the engine at that rate: `{ ...step, brokerCpuMsPerDelivery, engineCpuMsPerDelivery }`.
 */
export const runFixedRate = async ({ fleet, engine, engineCpuMs, sender, broker, channel, rate, stepMs, drainMs, dmShare, latencyBoundMs, deliverLog, log }) => {
  const frames = followFrames(deliverLog)
  try {
    const result = await runStep({ fleet, engine, engineCpuMs, sender, broker, channel, rate, durationMs: stepMs, drainMs, dmShare, latencyBoundMs, step: `f${rate}`, frames })
    const perDelivery = (per1000) => (per1000 === undefined ? undefined : per1000 / 1000)
    log(
      `  fixed ${rate} deliveries/s for ${result.durationS} s: ${result.sustained ? "sustained" : "not sustained"}; ` +
        `CPU per delivery: broker ${cpu(result.brokerCpuMsPer1000 / 1000)}, engine ${cpu(result.engineCpuMsPer1000 / 1000)}`
    )
    return { ...result, brokerCpuMsPerDelivery: perDelivery(result.brokerCpuMsPer1000), engineCpuMsPerDelivery: perDelivery(result.engineCpuMsPer1000) }
  } finally {
    frames.close()
  }
}
