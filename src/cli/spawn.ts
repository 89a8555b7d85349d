import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Option from "effect/Option"
import { connectionOptions, runPlain } from "./client.js"
import { spawn } from "./run/agentControl.js"

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
    runPlain("spawn", options, (daemon) =>
      spawn(daemon, {
        name: options.name,
        cli: options.cli,
        args: options.args,
        task: Option.getOrUndefined(options.task),
        cwd: Option.getOrUndefined(options.cwd)
      }))
).pipe(Command.withDescription("Start an agent in a terminal on the daemon and print its pid: spawn <name> <cli> [-- args…]"))
