#!/usr/bin/env node
// The `relay-broker` executable: one @effect/cli command tree. `up` and `engine` hand their raw
// arguments to their own modules; the client commands talk to a running daemon's local API.
import { Args, Command, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Exit } from "effect"
import * as Agents from "./cli/agents.js"
import type { CliExit } from "./cli/errors.js"
import * as Logs from "./cli/logs.js"
import * as Release from "./cli/release.js"
import * as Send from "./cli/send.js"
import * as Spawn from "./cli/spawn.js"
import * as Status from "./cli/status.js"

const version = "0.1.0"
const argv = process.argv.slice(2)

type Delegated = "up" | "engine"

const delegate = (command: Delegated, rest: ReadonlyArray<string>): Promise<void> =>
  (command === "up" ? import("./cli/up.js") : import("./cli/engine.js")).then((module) => module.run(rest))

const passThrough = Args.text({ name: "flags" }).pipe(Args.withDescription("Passed to the command as they are"), Args.repeated)

// Reached only through the tree (e.g. after a global option): the arguments after the command's name.
const delegated = (command: Delegated) =>
  Command.make(command, { flags: passThrough }, () =>
    Effect.promise(() => delegate(command, argv.slice(argv.indexOf(command) + 1))))

const up = delegated("up").pipe(Command.withDescription(
  "Run the daemon in the foreground: the node, its agents and the local API. Flags: --state-dir DIR, " +
    "--api-port N (0 = any), --api-bind ADDR, --name NODE_NAME. With no RELAY_BASE_URL it starts an embedded engine."
))
const engine = delegated("engine").pipe(Command.withDescription("Run the embedded relaycast engine on its own"))

const root = Command.make("relay-broker").pipe(
  Command.withDescription("A relaycast node: runs AI coding agents in terminals and delivers their messages"),
  Command.withSubcommands([up, engine, Agents.command, Spawn.command, Release.command, Send.command, Logs.command, Status.command])
)

const cli = Command.run(root, { name: "relay-broker", version })

/** 0 on success, the command's code after a reported failure, 2 for bad usage (the parser said why). */
const program = Effect.suspend(() => cli(["node", "relay-broker", ...(argv.length === 0 ? ["--help"] : argv)])).pipe(
  Effect.as(0),
  Effect.catchIf(
    (error): error is CliExit | ValidationError.ValidationError =>
      ValidationError.isValidationError(error) || (error as { _tag?: unknown })._tag === "CliExit",
    (error) => Effect.succeed(ValidationError.isValidationError(error) ? 2 : (error as CliExit).code)
  ),
  Effect.catchAllCause((cause) =>
    Cause.isInterruptedOnly(cause) ? Effect.succeed(0) : Effect.as(Console.error(Cause.pretty(cause)), 1)
  ),
  Effect.provide(NodeContext.layer)
)

const [first, ...rest] = argv
if ((first === "up" || first === "engine") && !rest.some((arg) => arg === "--help" || arg === "-h")) {
  await delegate(first, rest)
} else {
  NodeRuntime.runMain(program, {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) && typeof exit.value === "number" ? exit.value : 1)
  })
}
