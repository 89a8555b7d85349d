import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import { connectionOptions, runPlain } from "./client.js"
import { release } from "./run/agentControl.js"

export const command = Command.make(
  "release",
  {
    ...connectionOptions,
    name: Args.text({ name: "name" }).pipe(Args.withDescription("The agent to stop"))
  },
  (options) => runPlain("release", options, (daemon) => release(daemon, { name: options.name }))
).pipe(Command.withDescription("Stop an agent and unbind it from the node"))
