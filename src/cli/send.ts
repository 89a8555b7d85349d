import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { connect, connectionOptions } from "./client.js"
import { DaemonFailed, reported } from "./errors.js"
import { pick, record, text } from "./format.js"

/** The daemon's answer as `key=value` pairs, `success` left out (it is implied). */
export const describe = (answer: unknown): string =>
  Object.entries(record(answer))
    .filter(([key, value]) => key !== "success" && value !== undefined && value !== null)
    .map(([key, value]) => `${key}=${text(value)}`)
    .join(" ")

const optional = <K extends string>(key: K, value: Option.Option<string>) =>
  Option.match(value, { onNone: () => ({}), onSome: (present) => ({ [key]: present }) })

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
    Effect.gen(function*() {
      const daemon = yield* connect(options)
      const answer = yield* daemon.call("POST", "/api/send", {
        to: options.to,
        text: options.text,
        ...optional("from", options.from),
        ...optional("thread", options.thread),
        ...(options.steer ? { mode: "steer" } : {})
      })
      if (pick(answer, "success") === false) {
        return yield* new DaemonFailed({ status: 200, detail: text(pick(answer, "error"), "the daemon did not send the message") })
      }
      const details = describe(answer)
      yield* Console.log(details === "" ? `sent to ${options.to}` : `sent to ${options.to}: ${details}`)
    }).pipe(reported("send"))
).pipe(Command.withDescription("Send a message to an agent or a #channel and print what the daemon reported"))
