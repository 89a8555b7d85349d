import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { connect, connectionOptions } from "./client.js"
import { reported } from "./errors.js"
import { json, list, pick, table, text } from "./format.js"

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

export const command = Command.make(
  "message",
  {
    ...connectionOptions,
    id: Args.text({ name: "id" }).pipe(Args.withDescription("The message id (a send prints it as message_id)")),
    json: Options.boolean("json").pipe(Options.withDescription("Print the daemon's answer as JSON"))
  },
  (options) =>
    Effect.gen(function*() {
      const daemon = yield* connect(options)
      const answer = yield* daemon.call("GET", `/api/messages/${encodeURIComponent(options.id)}`)
      yield* Console.log(options.json ? json(answer) : render(answer))
    }).pipe(reported("message"))
).pipe(Command.withDescription(
  "Show a message's delivery per recipient: queued, offline, delivered_to_node, injected, read or failed"
))
