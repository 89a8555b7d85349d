import { ClientFailure, connectDaemon, type ConnectionFlags, type DaemonConnection } from "./daemonHttp.js"
import { agents } from "./run/agents.js"
import { release, send, snapshot, spawn } from "./run/agentControl.js"
import { message } from "./run/message.js"
import { status } from "./run/status.js"

// The client commands' quick path: a command line in the plain shape that `relay-broker --help`
// documents (known options, each once, `--name value`, the right number of arguments) runs here,
// without loading Effect or @effect/cli. Anything else (help, bad usage, `--name=value`, a boolean
// option followed by a value it may take) is left to the full parser in app.ts, which prints the
// same results for these commands and owns every message about usage. Both run the same code
// (src/cli/run/*).

export interface Parsed {
  readonly args: ReadonlyArray<string>
  readonly values: Readonly<Record<string, string>>
  readonly switches: ReadonlySet<string>
}

export interface Spec {
  /** Required arguments; with `rest`, any further ones are collected (spawn's program arguments). */
  readonly args: number
  readonly rest?: boolean
  readonly values?: ReadonlyArray<string>
  readonly switches?: ReadonlyArray<string>
  readonly run: (daemon: DaemonConnection, parsed: Parsed) => Promise<void>
}

const connectionOptions = ["state-dir", "url", "api-key"]

export const specs: Readonly<Record<string, Spec>> = {
  agents: { args: 0, switches: ["json"], run: (daemon, { switches }) => agents(daemon, { json: switches.has("json") }) },
  status: { args: 0, switches: ["json"], run: (daemon, { switches }) => status(daemon, { json: switches.has("json") }) },
  message: {
    args: 1,
    switches: ["json"],
    run: (daemon, { args, switches }) => message(daemon, { id: args[0]!, json: switches.has("json") })
  },
  release: { args: 1, run: (daemon, { args }) => release(daemon, { name: args[0]! }) },
  send: {
    args: 2,
    values: ["from", "thread"],
    switches: ["steer"],
    run: (daemon, { args, switches, values }) =>
      send(daemon, { to: args[0]!, text: args[1]!, from: values["from"], thread: values["thread"], steer: switches.has("steer") })
  },
  spawn: {
    args: 2,
    rest: true,
    values: ["task", "cwd"],
    run: (daemon, { args, values }) =>
      spawn(daemon, { name: args[0]!, cli: args[1]!, args: args.slice(2), task: values["task"], cwd: values["cwd"] })
  },
  // `logs --follow` streams over /ws: the full path.
  logs: { args: 1, run: async (daemon, { args }) => void process.stdout.write(await snapshot(daemon, args[0]!)) }
}

// @effect/cli lets a boolean option take one of these as its value (`--json false`).
const booleanWords: ReadonlySet<string> = new Set(["true", "false", "yes", "no", "on", "off", "y", "n", "1", "0"])

/** The command line as `spec` reads it, or `undefined` when it is not in the plain shape. */
export const parse = (spec: Spec, argv: ReadonlyArray<string>): Parsed | undefined => {
  const values: Record<string, string> = {}
  const switches = new Set<string>()
  const args: Array<string> = []
  const valueOptions = new Set([...connectionOptions, ...(spec.values ?? [])])
  const switchOptions = new Set(spec.switches ?? [])
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!
    if (arg === "--") {
      // Everything after the first `--` is an argument, as the full parser reads it.
      args.push(...argv.slice(index + 1))
      break
    }
    if (!arg.startsWith("-")) {
      args.push(arg)
      continue
    }
    const name = arg.slice(2)
    if (!arg.startsWith("--") || name in values || switches.has(name)) return undefined
    if (switchOptions.has(name)) {
      const next = argv[index + 1]
      if (next !== undefined && booleanWords.has(next.toLowerCase())) return undefined
      switches.add(name)
    } else if (valueOptions.has(name)) {
      const value = argv[++index]
      if (value === undefined || value.startsWith("-")) return undefined
      values[name] = value
    } else {
      return undefined
    }
  }
  if (spec.rest === true ? args.length < spec.args : args.length !== spec.args) return undefined
  return { args, values, switches }
}

const connectionFlags = (values: Readonly<Record<string, string>>): ConnectionFlags => ({
  stateDir: values["state-dir"],
  url: values["url"],
  apiKey: values["api-key"]
})

/**
 * Runs `argv` when it is a client command in the plain shape and resolves `true` (the exit code is
 * set); resolves `false`, having done nothing, when the full parser must read it.
 */
export const runQuick = async (argv: ReadonlyArray<string>): Promise<boolean> => {
  const [command, ...rest] = argv
  const spec = command === undefined || !Object.hasOwn(specs, command) ? undefined : specs[command]
  const parsed = spec === undefined ? undefined : parse(spec, rest)
  if (spec === undefined || parsed === undefined) return false
  try {
    await spec.run(await connectDaemon(connectionFlags(parsed.values)), parsed)
  } catch (error) {
    if (!(error instanceof ClientFailure)) throw error
    console.error(`relay-broker ${command}: ${error.message}`)
    process.exitCode = error.exitCode
  }
  return true
}
