// `relay-broker mcp`: the agent-relay tool server over stdio, configured from the agent's environment
// (as upstream's `agent-relay mcp`): RELAY_BASE_URL, RELAY_AGENT_NAME, RELAY_AGENT_TOKEN (or
// RELAY_AGENT_TOKEN_FILE, a 0600 file), AGENT_RELAY_DAEMON_URL (the relay-broker daemon that runs the
// agent, for the tools it answers), AGENT_RELAY_RESULT_URL / _TOKEN / _SCHEMA. A harness that passes
// none of them gets AGENT_RELAY_AGENTS_DIR in its entry instead: the agent's own file there
// (agentFiles.ts) supplies them.
// This module is an entry of its own and loads only the MCP SDK and src/mcp: it is one process per
// agent, started by the harness, and must answer `initialize` fast.
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { findAgentVariables } from "./agentFiles.js"
import type { ResultCallback, ToolContext } from "./context.js"
import { makeRelayHttp } from "./relayHttp.js"
import { createToolServer } from "./server.js"

/** A variable's value; unset, empty or an unexpanded `${…}` template counts as absent (upstream's rule). */
export const readEnv = (env: NodeJS.ProcessEnv, key: string): string | undefined => {
  const value = env[key]?.trim()
  if (value === undefined || value === "" || /^\$\{.+\}$/.test(value) || /^\$[A-Z_][A-Z0-9_]*$/.test(value)) return undefined
  return value
}

export class StdioConfigError extends Error {}

const tokenOf = (env: NodeJS.ProcessEnv): string => {
  const direct = readEnv(env, "RELAY_AGENT_TOKEN")
  if (direct !== undefined) return direct
  const file = readEnv(env, "RELAY_AGENT_TOKEN_FILE")
  if (file === undefined) throw new StdioConfigError("RELAY_AGENT_TOKEN (or RELAY_AGENT_TOKEN_FILE) is not set")
  try {
    return readFileSync(file, "utf8").trim()
  } catch (error) {
    throw new StdioConfigError(`RELAY_AGENT_TOKEN_FILE: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`)
  }
}

const resultOf = (env: NodeJS.ProcessEnv): ResultCallback | undefined => {
  const url = readEnv(env, "AGENT_RELAY_RESULT_URL")
  const token = readEnv(env, "AGENT_RELAY_RESULT_TOKEN")
  if (url === undefined || token === undefined) return undefined
  const raw = readEnv(env, "AGENT_RELAY_RESULT_SCHEMA")
  let schema: unknown = undefined
  if (raw !== undefined) {
    try {
      schema = JSON.parse(raw)
    } catch {
      schema = raw
    }
  }
  return { url, token, schema }
}

/** The tool context from an agent's environment; a missing variable is a StdioConfigError naming it. */
export const contextFromEnv = (env: NodeJS.ProcessEnv): ToolContext => {
  const baseUrl = readEnv(env, "RELAY_BASE_URL")
  if (baseUrl === undefined) throw new StdioConfigError("RELAY_BASE_URL is not set (the relaycast engine's URL)")
  const agentName = readEnv(env, "RELAY_AGENT_NAME")
  if (agentName === undefined) throw new StdioConfigError("RELAY_AGENT_NAME is not set")
  const token = tokenOf(env)
  const daemonUrl = readEnv(env, "AGENT_RELAY_DAEMON_URL")
  return {
    agentName,
    engine: makeRelayHttp({ baseUrl, token }),
    broker: daemonUrl === undefined ? undefined : makeRelayHttp({ baseUrl: daemonUrl, token, timeoutMs: 60_000 }),
    result: resultOf(env)
  }
}

// Defined by the bundler (scripts/build.mjs), as in BrokerConfig (not imported: it loads Effect's Config).
declare const __RELAY_BROKER_VERSION__: string | undefined

const version = (): string => {
  if (typeof __RELAY_BROKER_VERSION__ === "string") return __RELAY_BROKER_VERSION__
  try {
    return (createRequire(import.meta.url)("../../package.json") as { version: string }).version
  } catch {
    return "unknown"
  }
}

/** The environment, completed from the agent's file when it lacks the agent's token and names the agents directory. */
const withAgentFile = async (env: NodeJS.ProcessEnv): Promise<NodeJS.ProcessEnv> => {
  const dir = readEnv(env, "AGENT_RELAY_AGENTS_DIR")
  if (dir === undefined || readEnv(env, "RELAY_AGENT_TOKEN") !== undefined || readEnv(env, "RELAY_AGENT_TOKEN_FILE") !== undefined) return env
  const found = await findAgentVariables(dir)
  if (found === undefined) throw new StdioConfigError(`RELAY_AGENT_TOKEN is not set and no agent of ${dir} is an ancestor of this process`)
  return { ...env, ...found }
}

export const run = async (given: NodeJS.ProcessEnv = process.env): Promise<void> => {
  let context: ToolContext
  let env = given
  try {
    env = await withAgentFile(given)
    context = contextFromEnv(env)
  } catch (error) {
    process.stderr.write(`relay-broker mcp: ${(error as Error).message}\n`)
    process.exitCode = 1
    return
  }
  const server = createToolServer(context, {
    version: readEnv(env, "AGENT_RELAY_CLI_VERSION") ?? version(),
    // The harness has the tools: tell the daemon (its strongest sign that the agent is up).
    onInitialized: (client) => {
      context.broker?.call("POST", "/api/agent/ready", { body: { transport: "stdio", client: client ?? null } }).catch(() => undefined)
    }
  })
  const transport = new StdioServerTransport()
  transport.onclose = () => process.exit(0)
  process.stdin.on("end", () => process.exit(0))
  await server.connect(transport)
}
