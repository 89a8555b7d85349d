import type { DaemonConnection } from "../daemonHttp.js"
import { ago, json, list, pick, table, text } from "../format.js"

// `relay-broker agents`: the live agents of `/api/spawned` as a table (or its raw JSON).

const pendingFields = ["pending_messages", "pending_deliveries", "pendingDeliveries", "pending"] as const

const pendingOf = (agent: unknown, queued: ReadonlyMap<string, number> | undefined): string => {
  const own = pick(agent, ...pendingFields)
  if (typeof own === "number") return String(own)
  if (Array.isArray(own)) return String(own.length)
  if (queued === undefined) return "-"
  return String(queued.get(text(pick(agent, "name"), "")) ?? 0)
}

/**
 * Pending deliveries per agent, for daemons whose agent rows do not carry the count: the local queue
 * of `/api/status` plus the node deliveries held behind a gap in `/api/node-delivery`.
 */
export const queuedPerAgent = (status: unknown, nodeDelivery: unknown): ReadonlyMap<string, number> => {
  const counts = new Map<string, number>()
  const add = (name: string, count: number) => {
    if (name !== "") counts.set(name, (counts.get(name) ?? 0) + count)
  }
  for (const delivery of list(pick(status, "pending_deliveries"))) {
    add(text(pick(delivery, "worker_name", "agent", "name", "to"), ""), 1)
  }
  for (const agent of list(pick(nodeDelivery, "agents"))) {
    add(text(pick(agent, "agent", "name"), ""), list(pick(agent, "held")).length)
  }
  return counts
}

/** `ready (screen)`, `starting`, `blocked: <the screen's first line>`; a warning is marked `!`. */
export const readinessOf = (agent: unknown): string => {
  const state = pick(agent, "readiness")
  if (typeof state !== "string") return "-"
  if (state === "blocked") return `blocked: ${text(pick(agent, "blocked_screen"), "")}`
  const source = pick(agent, "readiness_source")
  const warned = typeof pick(agent, "readiness_warning") === "string" ? "!" : ""
  return typeof source === "string" ? `${state} (${source})${warned}` : state
}

/** `working`, `idle`, …; an agent in its restart cooldown: `restarting #2 in 3s`. */
const stateOf = (agent: unknown, now: number): string => {
  const state = text(pick(agent, "current_state", "status", "state"))
  if (state !== "restarting") return state
  const due = Date.parse(text(pick(agent, "next_restart_at"), ""))
  const attempt = pick(agent, "restart_count")
  return [
    state,
    typeof attempt === "number" ? `#${attempt}` : undefined,
    Number.isFinite(due) ? `in ${Math.max(0, Math.ceil((due - now) / 1000))}s` : undefined
  ].filter((part) => part !== undefined).join(" ")
}

export const render = (spawned: unknown, queued: ReadonlyMap<string, number> | undefined, now = Date.now()): string => {
  const agents = list(pick(spawned, "agents"))
  if (agents.length === 0) return "no live agents"
  // Upstream's `team`, as a column when any agent has one.
  const teams = agents.some((agent) => typeof pick(agent, "team") === "string")
  return table(
    ["NAME", ...(teams ? ["TEAM"] : []), "CLI", "PID", "STATUS", "READY", "LAST ACTIVITY", "PENDING"],
    agents.map((agent) => [
      text(pick(agent, "name")),
      ...(teams ? [text(pick(agent, "team"))] : []),
      text(pick(agent, "cli", "runtime")),
      text(pick(agent, "pid", "workerPid")),
      stateOf(agent, now),
      readinessOf(agent),
      ago(pick(agent, "last_activity_at", "last_activity_ms", "lastActivityAt"), now),
      pendingOf(agent, queued)
    ])
  )
}

/** An answer, or `undefined` when that call failed (an older daemon lacks the route). */
const optional = (answer: Promise<unknown>): Promise<unknown> => answer.catch(() => undefined)

export const agents = async (daemon: DaemonConnection, options: { readonly json: boolean }): Promise<void> => {
  const spawned = await daemon.call("GET", "/api/spawned")
  if (options.json) return console.log(json(spawned))
  const needsQueue = list(pick(spawned, "agents")).some((agent) => pick(agent, ...pendingFields) === undefined)
  const [status, nodeDelivery] = needsQueue
    ? await Promise.all([optional(daemon.call("GET", "/api/status")), optional(daemon.call("GET", "/api/node-delivery"))])
    : [undefined, undefined]
  const queued = status === undefined && nodeDelivery === undefined ? undefined : queuedPerAgent(status, nodeDelivery)
  console.log(render(spawned, queued))
}
