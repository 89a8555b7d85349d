import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { connectionOptions, runPlain } from "./client.js"
import { status } from "./run/status.js"

export { render } from "./run/status.js"

export const command = Command.make(
  "status",
  {
    ...connectionOptions,
    json: Options.boolean("json").pipe(Options.withDescription("Print the daemon's raw JSON"))
  },
  (options) => runPlain("status", options, (daemon) => status(daemon, { json: options.json }))
).pipe(Command.withDescription("The daemon's node connection, agents, dead letters and delivery counters"))
