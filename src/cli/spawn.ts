import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Path from "@effect/platform/Path"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { connect, connectionOptions } from "./client.js"
import { DaemonFailed, reported } from "./errors.js"
import { pick, text } from "./format.js"

export const command = Command.make(
  "spawn",
  {
    ...connectionOptions,
    name: Args.text({ name: "name" }).pipe(Args.withDescription("The agent's name")),
    cli: Args.text({ name: "cli" }).pipe(Args.withDescription("The program to run in its terminal: claude, codex, bash, …")),
    args: Args.text({ name: "args" }).pipe(Args.withDescription("Arguments for the program, after --"), Args.repeated),
    task: Options.text("task").pipe(Options.withDescription("The agent's first message"), Options.optional),
    cwd: Options.text("cwd").pipe(Options.withDescription("Its working directory (default: this directory)"), Options.optional)
  },
  (options) =>
    Effect.gen(function*() {
      const path = yield* Path.Path
      const daemon = yield* connect(options)
      // The daemon runs elsewhere: a relative --cwd means relative to where this command runs.
      const cwd = path.resolve(Option.getOrElse(options.cwd, () => process.cwd()))
      const answer = yield* daemon.call("POST", "/api/spawn", {
        name: options.name,
        cli: options.cli,
        args: options.args,
        cwd,
        ...Option.match(options.task, { onNone: () => ({}), onSome: (task) => ({ task }) })
      })
      if (pick(answer, "success") === false) {
        return yield* new DaemonFailed({ status: 200, detail: text(pick(answer, "error"), "the daemon refused the spawn") })
      }
      const warning = pick(answer, "warning")
      if (typeof warning === "string" && warning !== "") yield* Console.error(`relay-broker spawn: warning: ${warning}`)
      yield* Console.log(text(pick(answer, "pid")))
    }).pipe(reported("spawn"))
).pipe(Command.withDescription("Start an agent in a terminal on the daemon and print its pid: spawn <name> <cli> [-- args…]"))
