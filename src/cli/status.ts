import { Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { connect, connectionOptions } from "./client.js"
import { reported } from "./errors.js"
import { ago, fields, json, list, numberOr, pick, record, text } from "./format.js"

// `/api/status`, `/api/node-delivery` and `/api/dead-letters` in one readable page. The daemon's
// field names are read tolerantly (snake_case or camelCase, nested or flat).

const nodeLine = (node: unknown, status: unknown, now: number): string => {
  const source = pick(node, "node", "connection") ?? node
  const connected = pick(source, "connected", "nodeConnected", "node_connected") ?? pick(status, "node_connected", "nodeConnected")
  if (connected === undefined) return "unknown"
  const since = pick(source, "since", "connected_since", "connectedSince")
  const sinceText = typeof since === "number" || typeof since === "string" ? ` since ${new Date(since).toISOString()} (${ago(since, now)})` : ""
  const reconnects = numberOr(pick(source, "reconnects", "reconnect_count"), 0)
  const lastError = text(pick(source, "lastError", "last_error"), "none")
  return `${connected === true ? "connected" : "disconnected"}${sinceText} · ${reconnects} reconnects · last error: ${lastError}`
}

const identityLine = (node: unknown): string | undefined => {
  const source = pick(node, "node", "connection") ?? node
  const id = pick(source, "nodeId", "node_id")
  const name = pick(source, "nodeName", "node_name")
  return id === undefined && name === undefined ? undefined : `${text(name)} (${text(id)})`
}

const agentsLine = (status: unknown): string => {
  const agents = list(pick(status, "agents"))
  const count = numberOr(pick(status, "agent_count", "agentCount"), agents.length)
  const names = agents.map((agent) => typeof agent === "string" ? agent : text(pick(agent, "name")))
  return names.length === 0 ? String(count) : `${count}: ${names.join(", ")}`
}

const deadLettersOf = (answer: unknown): ReadonlyArray<unknown> =>
  Array.isArray(answer) ? answer : list(pick(answer, "dead_letters", "deadLetters", "items", "letters"))

const deadLetterLine = (letter: unknown): string =>
  `${text(pick(letter, "id", "dead_letter_id"))}  to ${text(pick(letter, "agent", "worker_name", "to", "name"))}  ${text(pick(letter, "reason", "last_error", "error"))}`

/** Every counter the node-delivery answer carries: numbers at the top, or under `counters`/`deliveries`/`stats`. */
const countersLine = (node: unknown): string => {
  const skip = new Set(["since", "reconnects", "remints", "reconnect_count"])
  const groups = [pick(node, "counters"), pick(node, "deliveries"), pick(node, "stats"), node]
  const counters = groups.flatMap((group) =>
    Object.entries(record(group)).filter((entry): entry is [string, number] => typeof entry[1] === "number" && !skip.has(entry[0]))
  )
  return counters.length === 0 ? "-" : counters.map(([key, value]) => `${key} ${value}`).join(" · ")
}

export const render = (
  answers: { readonly status: unknown; readonly nodeDelivery: unknown; readonly deadLetters: unknown },
  now = Date.now()
): string => {
  const letters = answers.deadLetters === undefined ? undefined : deadLettersOf(answers.deadLetters)
  const identity = identityLine(answers.nodeDelivery)
  const entries: Array<readonly [string, string]> = [
    ["node", nodeLine(answers.nodeDelivery, answers.status, now)],
    ...(identity !== undefined ? [["", identity] as const] : []),
    ["agents", agentsLine(answers.status)],
    ["pending", String(numberOr(pick(answers.status, "pending_delivery_count", "pendingDeliveryCount"), list(pick(answers.status, "pending_deliveries")).length))],
    ["dead letters", letters === undefined ? "-" : String(letters.length)],
    ...(letters ?? []).slice(0, 20).map((letter) => ["", `- ${deadLetterLine(letter)}`] as const),
    ["deliveries", countersLine(answers.nodeDelivery)]
  ]
  return fields(entries)
}

export const command = Command.make(
  "status",
  {
    ...connectionOptions,
    json: Options.boolean("json").pipe(Options.withDescription("Print the daemon's raw JSON"))
  },
  (options) =>
    Effect.gen(function*() {
      const daemon = yield* connect(options)
      const [status, nodeDelivery, deadLetters] = yield* Effect.all([
        daemon.call("GET", "/api/status"),
        // Older daemons lack these two routes: print what there is.
        Effect.option(daemon.call("GET", "/api/node-delivery")),
        Effect.option(daemon.call("GET", "/api/dead-letters"))
      ], { concurrency: "unbounded" })
      const answers = { status, nodeDelivery: Option.getOrUndefined(nodeDelivery), deadLetters: Option.getOrUndefined(deadLetters) }
      yield* Console.log(options.json
        ? json({ status, node_delivery: answers.nodeDelivery ?? null, dead_letters: answers.deadLetters ?? null })
        : render(answers))
    }).pipe(reported("status"))
).pipe(Command.withDescription("The daemon's node connection, agents, dead letters and delivery counters"))
