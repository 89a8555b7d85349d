import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { EmbeddedEngine } from "../engine/index.js"

// `relay-broker engine --port <p> --data <dir> [--host 127.0.0.1]`: the embedded engine alone.
// stdout carries only `engine listening on http://<host>:<port>`; logs go to stderr.

const usage = "usage: relay-broker engine --port <port> --data <dir> [--host 127.0.0.1]"

interface EngineArgs {
  readonly port: number
  readonly dataDir: string
  readonly host: string
}

export const parseArgs = (argv: ReadonlyArray<string>): EngineArgs | string => {
  const values = new Map<string, string>()
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!
    const match = /^--(port|data|host)(?:=(.*))?$/.exec(arg)
    if (match === null) return `unknown argument '${arg}'`
    const value = match[2] ?? argv[++index]
    if (value === undefined || value === "") return `--${match[1]} needs a value`
    values.set(match[1]!, value)
  }
  const portText = values.get("port") ?? "0"
  const port = Number(portText)
  if (!Number.isInteger(port) || port < 0 || port > 65535) return `invalid --port '${portText}'`
  const dataDir = values.get("data")
  if (dataDir === undefined) return "--data <dir> is required"
  return { port, dataDir, host: values.get("host") ?? "127.0.0.1" }
}

const StderrLogger = Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))

export const run = (argv: ReadonlyArray<string>): void => {
  const args = parseArgs(argv)
  if (typeof args === "string") {
    console.error(`relay-broker engine: ${args}\n${usage}`)
    process.exit(2)
  }
  const program = Effect.gen(function*() {
    const engine = yield* EmbeddedEngine.start({ dataDir: args.dataDir, port: args.port, host: args.host })
    yield* Console.log(`engine listening on ${engine.url}`)
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    Effect.tapErrorTag("EngineStartError", (error) => Console.error(`relay-broker engine: ${error.message}`)),
    Effect.provide(Layer.merge(StderrLogger, Logger.minimumLogLevel(LogLevel.Info)))
  )
  NodeRuntime.runMain(program, { disablePrettyLogger: true, disableErrorReporting: true })
}
