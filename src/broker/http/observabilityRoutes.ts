import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { readFileSync } from "node:fs"
import { type AgentInfo, AgentRegistry } from "../AgentRegistry.js"
import { AgentSupervisor, type CrashRecord } from "../AgentSupervisor.js"
import { type BrokerEvent, EventLog } from "../EventLog.js"
import { agentNotFound, failure, json, queryParam } from "./responses.js"

// Read-only views harness-driver 9.1.6 asks for (`getMetrics`, `getCrashInsights`, the dashboard's
// threads and event replay), computed from the registry and the event log's replay buffer.

/** Resident memory of a process from /proc (Linux); null where it cannot be read. */
const memoryBytes = (pid: number): number | null => {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? null : Number(match[1]) * 1024
  } catch {
    return null
  }
}

const agentStats = (agent: AgentInfo, now: number) => ({
  name: agent.name,
  pid: agent.pid,
  memory_bytes: memoryBytes(agent.pid),
  uptime_secs: Math.max(0, Math.floor((now - agent.startedAt) / 1000)),
  cli: agent.cli,
  status: agent.status,
  last_activity_ms: agent.lastActivityAt
})

/** `GET /api/metrics[?agent=]` → `{agents:[…], broker:{…}}`; 404 `agent_not_found` for an unknown agent. */
const metrics = (startedAt: number) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const wanted = queryParam(request.url, "agent")
    const agents = yield* (yield* AgentRegistry).list
    const now = yield* Clock.currentTimeMillis
    const selected = wanted === undefined ? agents : agents.filter((agent) => agent.name === wanted)
    if (wanted !== undefined && selected.length === 0) return agentNotFound(wanted)
    const events = yield* (yield* EventLog).recent
    return json({
      agents: selected.map((agent) => agentStats(agent, now)),
      broker: {
        uptime_secs: Math.floor((now - startedAt) / 1000),
        active_agents: agents.length,
        total_spawned: events.filter((event) => event.kind === "agent_spawned").length,
        total_crashes: (yield* crashRecords).length,
        memory_bytes: process.memoryUsage().rss,
        pid: process.pid
      }
    })
  })

/** Agent exits that were not a release: a non-zero code or a signal. */
const crashes = (events: ReadonlyArray<BrokerEvent>) =>
  events.filter((event) => event.kind === "agent_exited" && ((event["code"] ?? 0) !== 0 || event["signal"] != null))

const crashReason = (event: BrokerEvent): string =>
  event["signal"] != null ? `signal ${String(event["signal"])}` : `exit code ${String(event["code"])}`

/** The crashes AgentSupervisor recorded (every agent's), else those still in the event log's replay buffer. */
const crashRecords = Effect.gen(function*() {
  const supervisor = yield* Effect.serviceOption(AgentSupervisor)
  if (Option.isSome(supervisor)) return yield* supervisor.value.crashes
  return crashes(yield* (yield* EventLog).recent).map((event): CrashRecord => ({
    name: String(event["name"]),
    code: typeof event["code"] === "number" ? event["code"] : null,
    signal: typeof event["signal"] === "number" || typeof event["signal"] === "string" ? event["signal"] : null,
    reason: crashReason(event),
    timestamp: new Date(typeof event["timestamp"] === "number" ? event["timestamp"] : 0).toISOString(),
    uptime_secs: 0,
    restarted: false
  }))
})

/** `GET /api/crash-insights` → `{total_crashes, recent, patterns, health_score}`. */
const crashInsights = Effect.gen(function*() {
  const found = yield* crashRecords
  const byReason = new Map<string, Array<string>>()
  for (const crash of found) byReason.set(crash.reason, [...(byReason.get(crash.reason) ?? []), crash.name])
  return json({
    total_crashes: found.length,
    recent: found.slice(-20).reverse(),
    patterns: [...byReason].map(([reason, agents]) => ({ pattern: reason, count: agents.length, agents: [...new Set(agents)] })),
    // 100 with no crash; each recent crash costs 10 points.
    health_score: Math.max(0, 100 - found.length * 10)
  })
})

/** `GET /api/threads` → `{threads}`: the threads of the messages delivered here (replay buffer). */
const threads = Effect.gen(function*() {
  const events = yield* (yield* EventLog).recent
  const byThread = new Map<string, { thread_id: string; message_count: number; participants: Set<string>; last_activity: unknown }>()
  for (const event of events) {
    const thread = event["thread_id"]
    if (event.kind !== "relay_inbound" || typeof thread !== "string") continue
    const entry = byThread.get(thread) ?? { thread_id: thread, message_count: 0, participants: new Set(), last_activity: null }
    entry.message_count += 1
    for (const who of [event["from"], event["name"]]) if (typeof who === "string") entry.participants.add(who)
    entry.last_activity = event["timestamp"] ?? null
    byThread.set(thread, entry)
  }
  return json({
    threads: [...byThread.values()].map((entry) => ({ ...entry, participants: [...entry.participants] }))
  })
})

/** `GET /api/events/replay?sinceSeq=N` → `{events, gap, oldestAvailable, currentSeq}`. */
const replay = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const raw = queryParam(request.url, "sinceSeq") ?? queryParam(request.url, "since_seq") ?? "0"
  if (!/^\d+$/.test(raw)) return failure(400, "invalid_since_seq", "sinceSeq: expected a non-negative whole number")
  const sinceSeq = Number(raw)
  const buffer = yield* (yield* EventLog).recent
  const oldest = buffer[0]?.seq ?? null
  return json({
    events: buffer.filter((event) => (event.seq ?? 0) > sinceSeq),
    gap: oldest !== null && sinceSeq + 1 < oldest,
    oldestAvailable: oldest,
    currentSeq: buffer[buffer.length - 1]?.seq ?? sinceSeq
  })
})

export const observabilityRoutes = (startedAt: number) =>
  HttpRouter.empty.pipe(
    HttpRouter.get("/api/metrics", metrics(startedAt)),
    HttpRouter.get("/api/crash-insights", crashInsights),
    HttpRouter.get("/api/threads", threads),
    HttpRouter.get("/api/events/replay", replay)
  )
