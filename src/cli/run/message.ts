import type { DaemonConnection } from "../daemonHttp.js"
import { json, list, pick, table, text } from "../format.js"

// `relay-broker message <id>`: where a message is for each recipient, from the engine's delivery rows
// and the daemon's own records (GET /api/messages/{id}).

export const render = (answer: unknown): string => {
  const recipients = list(pick(answer, "recipients"))
  if (recipients.length === 0) return `message ${text(pick(answer, "message_id"))}: no recipients`
  return table(
    ["RECIPIENT", "STATE", "ENGINE", "NODE", "INJECTED", "READ"],
    recipients.map((recipient) => [
      text(pick(recipient, "name")),
      text(pick(recipient, "state")),
      text(pick(recipient, "engine_status")),
      text(pick(recipient, "node")),
      text(pick(recipient, "injected_at")),
      text(pick(recipient, "read_at"))
    ])
  )
}

export const message = async (daemon: DaemonConnection, options: { readonly id: string; readonly json: boolean }): Promise<void> => {
  const answer = await daemon.call("GET", `/api/messages/${encodeURIComponent(options.id)}`)
  console.log(options.json ? json(answer) : render(answer))
}
