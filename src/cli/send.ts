import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Option from "effect/Option"
import { connectionOptions, runPlain } from "./client.js"
import { send } from "./run/agentControl.js"

export { describe } from "./run/agentControl.js"

export const command = Command.make(
  "send",
  {
    ...connectionOptions,
    to: Args.text({ name: "to" }).pipe(Args.withDescription("An agent's name, or #channel")),
    text: Args.text({ name: "text" }).pipe(Args.withDescription("The message")),
    from: Options.text("from").pipe(Options.withDescription("Send as this agent (one of the daemon's)"), Options.optional),
    thread: Options.text("thread").pipe(Options.withDescription("Reply in this thread (a message id)"), Options.optional),
    steer: Options.boolean("steer").pipe(Options.withDescription("Interrupt the agent instead of waiting for its turn to end"))
  },
  (options) =>
    runPlain("send", options, (daemon) =>
      send(daemon, {
        to: options.to,
        text: options.text,
        from: Option.getOrUndefined(options.from),
        thread: Option.getOrUndefined(options.thread),
        steer: options.steer
      }))
).pipe(Command.withDescription("Send a message to an agent or a #channel and print what the daemon reported"))
