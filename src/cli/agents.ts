import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { connectionOptions, runPlain } from "./client.js"
import { agents } from "./run/agents.js"

export { queuedPerAgent, readinessOf, render } from "./run/agents.js"

export const command = Command.make(
  "agents",
  {
    ...connectionOptions,
    json: Options.boolean("json").pipe(Options.withDescription("Print the daemon's raw JSON"))
  },
  (options) => runPlain("agents", options, (daemon) => agents(daemon, { json: options.json }))
).pipe(Command.withDescription("List the live agents: name, cli, pid, status (restarting ones with their attempt and when), readiness (and how it was decided), last activity, pending deliveries"))
