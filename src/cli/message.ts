import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { connectionOptions, runPlain } from "./client.js"
import { message } from "./run/message.js"

export { render } from "./run/message.js"

export const command = Command.make(
  "message",
  {
    ...connectionOptions,
    id: Args.text({ name: "id" }).pipe(Args.withDescription("The message id (a send prints it as message_id)")),
    json: Options.boolean("json").pipe(Options.withDescription("Print the daemon's answer as JSON"))
  },
  (options) => runPlain("message", options, (daemon) => message(daemon, { id: options.id, json: options.json }))
).pipe(Command.withDescription(
  "Show a message's delivery per recipient: queued, offline, delivered_to_node, injected, read or failed"
))
