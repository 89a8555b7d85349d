import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { BrokerFlags } from "../broker/BrokerConfig.js"
import type { SessionOptions } from "../broker/BrokerSession.js"
import { program, StderrLogger } from "./up.js"

// `relay-broker init`: upstream's launch command, exactly as agent-relay 9.1.6 and harness-driver
// 9.1.6 run it (`init --instance-name N [--workspace-key rk_…] --channels general [--persist]
// [--api-port P] [--api-bind A] [--state-dir D]`). The same daemon as `up`, with upstream's defaults:
// without --persist it is ephemeral (it stops when its owner stops renewing the lease) and keeps its
// state in a temporary directory unless one is given.

export const usage = [
  "usage: relay-broker init --instance-name NAME [--workspace-key rk_...] [--channels a,b] [--persist]",
  "                         [--api-port N] [--api-bind ADDR] [--state-dir DIR]",
  "  --instance-name  this node's name (default AGENT_RELAY_BROKER_NAME, else the hostname)",
  "  --workspace-key  the workspace key (default RELAY_WORKSPACE_KEY; unset = a local workspace)",
  "  --channels       channels every agent spawned here joins (comma-separated)",
  "  --persist        run until stopped; without it the broker stops when POST /api/session/renew",
  "                   has not been called for 120 s",
  "  --api-port       local API port, 0 = any free port (default 0)",
  "  --api-bind       local API address (default 127.0.0.1)",
  "  --state-dir      state directory (default AGENT_RELAY_STATE_DIR; else <cwd>/.agentworkforce/relay",
  "                   with --persist, a temporary directory without)",
  "  also read: RELAY_BROKER_API_KEY, RELAY_BASE_URL, AGENT_RELAY_WORKSPACE_KEY, RELAY_API_KEY"
].join("\n")

export interface InitArgs {
  readonly flags: BrokerFlags
  readonly session: SessionOptions
  /** No state dir was given and the broker is ephemeral: it uses a temporary one. */
  readonly temporaryState: boolean
}

const valueFlags = new Set(["instance-name", "workspace-key", "channels", "api-port", "api-bind", "state-dir", "name", "base-url"])

/** The arguments of `init`, or what is wrong with them; `"help"` for --help. */
export const parseArgs = (
  argv: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv = process.env
): InitArgs | "help" | { readonly error: string } => {
  const values = new Map<string, string>()
  let persist = false
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!
    if (arg === "--help" || arg === "-h") return "help"
    if (arg === "--persist") {
      persist = true
      continue
    }
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
    const flag = match?.[1]
    if (match === null || flag === undefined || !valueFlags.has(flag)) return { error: `unknown argument '${arg}'` }
    const value = match[2] ?? argv[++index]
    // `--channels ""` is upstream's "no channels".
    if (value === undefined || (value === "" && flag !== "channels")) return { error: `--${flag} needs a value` }
    values.set(flag, value)
  }
  const portText = values.get("api-port")
  const port = portText === undefined ? 0 : Number(portText)
  if (portText !== undefined && (!/^\d+$/.test(portText) || port > 65535)) {
    return { error: `--api-port: expected a port number 0-65535, got '${portText}'` }
  }
  const stateDir = values.get("state-dir") ?? (env["AGENT_RELAY_STATE_DIR"]?.trim() || undefined)
  const name = values.get("instance-name") ?? values.get("name") ?? (env["AGENT_RELAY_BROKER_NAME"]?.trim() || undefined)
  const channels = (values.get("channels") ?? "").split(",").map((channel) => channel.trim()).filter((channel) => channel !== "")
  return {
    flags: {
      apiPort: port,
      ...(stateDir === undefined ? {} : { stateDir }),
      ...(name === undefined ? {} : { name }),
      ...(values.has("api-bind") ? { apiBind: values.get("api-bind") } : {}),
      ...(values.has("workspace-key") ? { workspaceKey: values.get("workspace-key") } : {}),
      ...(values.has("base-url") ? { baseUrl: values.get("base-url") } : {})
    },
    session: { mode: persist ? "persist" : "ephemeral", channels },
    temporaryState: stateDir === undefined && !persist
  }
}

export const run = (argv: ReadonlyArray<string>): void => {
  const parsed = parseArgs(argv)
  if (parsed === "help") {
    console.log(usage)
    return
  }
  if ("error" in parsed) {
    console.error(`relay-broker init: ${parsed.error}\n${usage}`)
    process.exit(2)
  }
  const temporary = parsed.temporaryState ? mkdtempSync(join(tmpdir(), "relay-broker-")) : undefined
  const flags = temporary === undefined ? parsed.flags : { ...parsed.flags, stateDir: temporary }
  const removeTemporary = Effect.sync(() => {
    if (temporary !== undefined) rmSync(temporary, { recursive: true, force: true })
  })
  NodeRuntime.runMain(
    program(flags, parsed.session, "init").pipe(Effect.ensuring(removeTemporary), Effect.provide(StderrLogger)),
    { disablePrettyLogger: true, disableErrorReporting: true }
  )
}
