// The `relay-broker` command tree (@effect/cli). `up` and `engine` hand their raw arguments to
// their own modules; the client commands talk to a running daemon's local API.
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Agents from "./agents.js"
import * as Attach from "./attach.js"
import { type Delegated, delegate } from "./delegate.js"
import type { CliExit } from "./errors.js"
import * as Logs from "./logs.js"
import * as Message from "./message.js"
import * as Release from "./release.js"
import * as Send from "./send.js"
import * as Spawn from "./spawn.js"
import * as Status from "./status.js"

export const version = "0.1.0"

const passThrough = Args.text({ name: "flags" }).pipe(Args.withDescription("Passed to the command as they are"), Args.repeated)

// Parsed here only for `--help` and after a global option; the arguments handed over are the raw ones.
const delegated = (command: Delegated, argv: ReadonlyArray<string>) =>
  Command.make(command, { flags: passThrough }, () =>
    Effect.promise(() => delegate(command, argv.slice(argv.indexOf(command) + 1))))

export const root = (argv: ReadonlyArray<string>) => {
  const up = delegated("up", argv).pipe(Command.withDescription(
    "Run the daemon in the foreground: the node, its agents and the local API (flags: relay-broker up --help). " +
      "With no engine URL (--base-url / RELAY_BASE_URL) it runs an embedded engine."
  ))
  const init = delegated("init", argv).pipe(Command.withDescription(
    "Upstream's launch command (what agent-relay and harness-driver run): init --instance-name N --channels general " +
      "[--persist] [--api-port N] [--state-dir D]; without --persist the broker is ephemeral (stops when its lease is not renewed)"
  ))
  const engine = delegated("engine", argv).pipe(Command.withDescription(
    "Run the embedded relaycast engine on its own: engine --port <port> --data <dir> [--host 127.0.0.1]"
  ))
  const mcp = delegated("mcp", argv).pipe(Command.withDescription(
    "Run the agent-relay MCP tool server over stdio for one agent, configured from its environment " +
      "(RELAY_BASE_URL, RELAY_AGENT_NAME, RELAY_AGENT_TOKEN or RELAY_AGENT_TOKEN_FILE, AGENT_RELAY_DAEMON_URL)"
  ))
  return Command.make("relay-broker").pipe(
    Command.withDescription("A relaycast node: runs AI coding agents in terminals and delivers their messages"),
    Command.withSubcommands([up, init, engine, mcp, Agents.command, Spawn.command, Release.command, Send.command, Message.command, Logs.command, Attach.command, Status.command])
  )
}

/** Resolves with the exit code: 0 success, the command's code after a failure it reported, 2 for bad usage. */
export const program = (argv: ReadonlyArray<string>): Effect.Effect<number> =>
  Effect.suspend(() =>
    Command.run(root(argv), { name: "relay-broker", version })(["node", "relay-broker", ...(argv.length === 0 ? ["--help"] : argv)])
  ).pipe(
    Effect.as(0),
    Effect.catchIf(
      (error): error is CliExit | ValidationError.ValidationError =>
        ValidationError.isValidationError(error) || (error as { _tag?: unknown })._tag === "CliExit",
      // A ValidationError has been printed by the parser already.
      (error) => Effect.succeed(ValidationError.isValidationError(error) ? 2 : (error as CliExit).code)
    ),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.succeed(0) : Effect.as(Console.error(Cause.pretty(cause)), 1)
    ),
    Effect.provide(NodeContext.layer)
  )

export const main = (argv: ReadonlyArray<string>): void =>
  NodeRuntime.runMain(program(argv), {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) && typeof exit.value === "number" ? exit.value : 1)
  })
