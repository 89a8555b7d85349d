import type { DaemonConnection } from "../daemonHttp.js"
import { ago, fields, json, list, numberOr, pick, record, text } from "../format.js"
import { readinessOf } from "./agents.js"

// `/api/status`, `/api/node-delivery` and `/api/dead-letters` in one readable page. The daemon's
// field names are read tolerantly (snake_case or camelCase, nested or flat).

/** The node-connection record: in `/api/node-delivery` (`node`, or flat), else `/api/status`'s `node`. */
const nodeOf = (nodeDelivery: unknown, status: unknown): unknown => {
  const nested = pick(nodeDelivery, "node", "connection")
  if (nested !== undefined) return nested
  if (pick(nodeDelivery, "connected") !== undefined) return nodeDelivery
  return pick(status, "node") ?? { connected: pick(status, "node_connected", "nodeConnected") }
}

const nodeLine = (node: unknown, now: number): string => {
  const connected = pick(node, "connected")
  if (typeof connected !== "boolean") return "unknown"
  const since = pick(node, "since", "connected_since", "connectedSince")
  const sinceText = typeof since === "number" || typeof since === "string" ? ` since ${new Date(since).toISOString()} (${ago(since, now)})` : ""
  const reconnects = numberOr(pick(node, "reconnects", "reconnect_count"), 0)
  const lastError = text(pick(node, "lastError", "last_error"), "none")
  return `${connected ? "connected" : "disconnected"}${sinceText} · ${reconnects} reconnects · last error: ${lastError}`
}

const identityLine = (node: unknown): string | undefined => {
  const id = pick(node, "nodeId", "node_id")
  const name = pick(node, "nodeName", "node_name")
  return id === undefined && name === undefined ? undefined : `${text(name)} (${text(id)})`
}

const agentsLine = (status: unknown): string => {
  const agents = list(pick(status, "agents"))
  const count = numberOr(pick(status, "agent_count", "agentCount"), agents.length)
  const names = agents.map((agent) => {
    if (typeof agent === "string") return agent
    const readiness = readinessOf(agent)
    return readiness === "-" ? text(pick(agent, "name")) : `${text(pick(agent, "name"))} (${readiness})`
  })
  return names.length === 0 ? String(count) : `${count}: ${names.join(", ")}`
}

const deadLettersOf = (answer: unknown): ReadonlyArray<unknown> =>
  Array.isArray(answer) ? answer : list(pick(answer, "dead_letters", "deadLetters", "entries", "items", "letters"))

const deadLetterLine = (letter: unknown): string =>
  `${text(pick(letter, "id", "dead_letter_id"))}  to ${text(pick(letter, "agent", "worker_name", "to", "name"))}  ` +
  `${text(pick(letter, "reason"))}${pick(letter, "detail") !== undefined ? `: ${text(pick(letter, "detail"))}` : ""}`

/** Delivery counters summed over the agents of `/api/node-delivery` (`agents[].counts`), or its own totals. */
const countersOf = (nodeDelivery: unknown): ReadonlyArray<readonly [string, number]> => {
  const groups = [
    ...list(pick(nodeDelivery, "agents")).map((agent) => pick(agent, "counts", "counters")),
    pick(nodeDelivery, "counts", "counters", "totals")
  ]
  const totals = new Map<string, number>()
  for (const group of groups) {
    for (const [key, value] of Object.entries(record(group))) {
      if (typeof value === "number") totals.set(key, (totals.get(key) ?? 0) + value)
    }
  }
  return [...totals]
}

/** `agents[]` of `/api/node-delivery` whose worker is stalled, as `name: reason`. */
const stalledOf = (nodeDelivery: unknown): ReadonlyArray<string> =>
  list(pick(nodeDelivery, "agents")).flatMap((agent) => {
    const worker = pick(agent, "worker")
    return pick(worker, "state") === "stalled"
      ? [`${text(pick(agent, "agent", "name"))}: ${text(pick(worker, "stalled_reason", "stalledReason"))}`]
      : []
  })

/** `agents[]` whose cursor saves fail (their acks wait), as `name: error`. */
const unsavedOf = (nodeDelivery: unknown): ReadonlyArray<string> =>
  list(pick(nodeDelivery, "agents")).flatMap((agent) => {
    const durability = pick(agent, "durability")
    if (pick(durability, "cursor_saved") !== false) return []
    const pending = pick(durability, "pending_ack")
    return [
      `${text(pick(agent, "agent", "name"))}: ${text(pick(durability, "save_error"))}` +
      (typeof pending === "number" ? ` (ack ${pending} waits)` : "")
    ]
  })

/** `label  N`, then one `- line` per entry; nothing when `lines` is empty unless `always`. */
const listed = (label: string, lines: ReadonlyArray<string>, always = false): ReadonlyArray<readonly [string, string]> =>
  lines.length === 0 && !always ? [] : [[label, String(lines.length)], ...lines.map((line) => ["", `- ${line}`] as const)]

export const render = (
  answers: { readonly status: unknown; readonly nodeDelivery: unknown; readonly deadLetters: unknown },
  now = Date.now()
): string => {
  const letters = answers.deadLetters === undefined ? undefined : deadLettersOf(answers.deadLetters)
  const deadCount = letters?.length ?? pick(answers.status, "dead_letter_count", "deadLetterCount")
  const node = nodeOf(answers.nodeDelivery, answers.status)
  const identity = identityLine(node)
  const counters = countersOf(answers.nodeDelivery)
  const entries: Array<readonly [string, string]> = [
    ["node", nodeLine(node, now)],
    ...(identity !== undefined ? [["", identity] as const] : []),
    ["agents", agentsLine(answers.status)],
    ["pending", String(numberOr(pick(answers.status, "pending_delivery_count", "pendingDeliveryCount"), list(pick(answers.status, "pending_deliveries")).length))],
    ["dead letters", text(deadCount)],
    ...(letters ?? []).slice(0, 20).map((letter) => ["", `- ${deadLetterLine(letter)}`] as const),
    ...listed("stalled", stalledOf(answers.nodeDelivery), answers.nodeDelivery !== undefined),
    ...listed("unsaved cursors", unsavedOf(answers.nodeDelivery)),
    ["deliveries", counters.length === 0 ? "-" : counters.map(([key, value]) => `${key} ${value}`).join(" · ")]
  ]
  return fields(entries)
}

/** An answer, or `undefined` when that call failed (an older daemon lacks the route). */
const optional = (answer: Promise<unknown>): Promise<unknown> => answer.catch(() => undefined)

export const status = async (daemon: DaemonConnection, options: { readonly json: boolean }): Promise<void> => {
  const [status, nodeDelivery, deadLetters] = await Promise.all([
    daemon.call("GET", "/api/status"),
    // Older daemons lack these two routes: print what there is.
    optional(daemon.call("GET", "/api/node-delivery")),
    optional(daemon.call("GET", "/api/dead-letters"))
  ])
  console.log(options.json
    ? json({ status, node_delivery: nodeDelivery ?? null, dead_letters: deadLetters ?? null })
    : render({ status, nodeDelivery, deadLetters }))
}
