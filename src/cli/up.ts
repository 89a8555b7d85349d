import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import { fileURLToPath } from "node:url"
import { join, relative } from "node:path"
import type { BrokerFlags } from "../broker/BrokerConfig.js"
import { BrokerConfig } from "../broker/BrokerConfig.js"
import { ControlApi } from "../broker/ControlApi.js"
import type { SessionOptions } from "../broker/BrokerSession.js"
import * as Daemon from "../broker/Daemon.js"
import { connectionFilePath } from "../broker/http/connectionFile.js"

// `relay-broker up`: the daemon in the foreground. stdout carries only the listening line
// (`[agent-relay] API listening on http://<bind>:<port>`); logs and the how-to go to stderr.
// SIGINT / SIGTERM / POST /api/shutdown close every layer in order and exit 0.

export const usage = [
  "usage: relay-broker up [--state-dir DIR] [--api-port N] [--api-bind ADDR] [--name NODE_NAME]",
  "                       [--base-url URL] [--workspace-key rk_...]",
  "  --state-dir      state directory (default <cwd>/.agentworkforce/relay)",
  "  --api-port       local API port, 0 = any free port (default 0)",
  "  --api-bind       local API address (default 127.0.0.1)",
  "  --name           this node's name (default the hostname)",
  "  --base-url       the engine's URL (default RELAY_BASE_URL; unset = run the embedded engine)",
  "  --workspace-key  the workspace key (default RELAY_WORKSPACE_KEY; unset = a local workspace)"
].join("\n")

const valueFlags = {
  "state-dir": "stateDir",
  "api-port": "apiPort",
  "api-bind": "apiBind",
  "name": "name",
  // Upstream's `init` spelling, so its launchers can start this broker too.
  "instance-name": "name",
  "base-url": "baseUrl",
  "workspace-key": "workspaceKey",
  // Accepted for upstream compatibility; this broker does not use them.
  "channels": undefined
} as const
const switchFlags: ReadonlySet<string> = new Set(["persist"])

/** The flags of `up`, or the reason they are wrong; `"help"` for --help. */
export const parseArgs = (argv: ReadonlyArray<string>): BrokerFlags | "help" | { readonly error: string } => {
  const flags: { -readonly [K in keyof BrokerFlags]: BrokerFlags[K] } = {}
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!
    if (arg === "--help" || arg === "-h") return "help"
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
    const flag = match?.[1]
    if (flag !== undefined && switchFlags.has(flag)) continue
    if (match === null || flag === undefined || !(flag in valueFlags)) return { error: `unknown argument '${arg}'` }
    const value = match[2] ?? argv[++index]
    if (value === undefined || value === "") return { error: `--${flag} needs a value` }
    const key = valueFlags[flag as keyof typeof valueFlags]
    if (key === undefined) continue
    if (key === "apiPort") {
      const port = Number(value)
      if (!/^\d+$/.test(value) || port > 65535) return { error: `--api-port: expected a port number 0-65535, got '${value}'` }
      flags.apiPort = port
    } else {
      flags[key] = value
    }
  }
  return flags
}

const logLevel = (): LogLevel.LogLevel => {
  const wanted = (process.env["RELAY_BROKER_LOG_LEVEL"] ?? "").toLowerCase()
  return LogLevel.allLevels.find((level) => level.label.toLowerCase() === wanted) ?? LogLevel.Info
}

export const StderrLogger = Layer.merge(
  Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)),
  Logger.minimumLogLevel(logLevel())
)

const mainScript = fileURLToPath(new URL("../main.js", import.meta.url))

/** Tells a newcomer, on stderr, how to put an agent on this node. The key stays in connection.json. */
const howToSpawn = Effect.gen(function*() {
  const config = yield* BrokerConfig
  const api = yield* ControlApi
  const connection = connectionFilePath(config.stateDir)
  const defaultStateDir = join(process.cwd(), ".agentworkforce", "relay")
  const stateFlag = config.stateDir === defaultStateDir ? "" : ` --state-dir ${JSON.stringify(config.stateDir)}`
  const cli = relative(process.cwd(), mainScript) || mainScript
  const keyFromFile = `$(node -p 'require(${JSON.stringify(connection)}).api_key')`
  yield* Console.error([
    `relay-broker is up: node "${config.nodeName}", engine ${config.baseUrl}, local API ${api.url}`,
    `  connection file (URL and API key): ${connection}`,
    "  spawn an agent (then: agents, release <name>, logs <name>):",
    `    node ${cli} spawn${stateFlag} worker-1 bash`,
    "  or with curl:",
    `    curl -s -X POST ${api.url}/api/spawn -H "X-API-Key: ${keyFromFile}" \\`,
    `      -H 'content-type: application/json' -d '{"name":"worker-1","cli":"bash"}'`,
    "  stop with Ctrl-C."
  ].join("\n"))
})

/** The daemon until it is stopped; `command` names it in the error line (`up` or `init`). */
export const program = (flags: BrokerFlags, session?: SessionOptions, command = "up") =>
  Effect.gen(function*() {
    if (command === "up") yield* howToSpawn
    yield* Daemon.untilShutdown
    yield* Effect.logInfo("shutting down")
  }).pipe(
    Effect.provide(Daemon.layer({ flags, ...(session === undefined ? {} : { session }) })),
    Effect.tapErrorCause((cause) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.void
      const failure = Cause.failureOption(cause)
      const message = Option.match(failure, {
        onNone: () => Cause.pretty(cause),
        onSome: (error) => error.message
      })
      return Console.error(`relay-broker ${command}: ${message}`)
    }),
    Effect.ensuring(Effect.logInfo("stopped")),
    Effect.provide(StderrLogger)
  )

export const run = (argv: ReadonlyArray<string>): void => {
  const flags = parseArgs(argv)
  if (flags === "help") {
    console.log(usage)
    return
  }
  if ("error" in flags) {
    console.error(`relay-broker up: ${flags.error}\n${usage}`)
    process.exit(2)
  }
  NodeRuntime.runMain(program(flags), { disablePrettyLogger: true, disableErrorReporting: true })
}
