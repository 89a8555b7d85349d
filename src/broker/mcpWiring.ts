// How each agent CLI is given the `agent-relay` MCP server at spawn (shared/reference/agent-tools.md
// §2, harnesses.md §3). claude, codex, gemini and opencode reach the daemon's `/mcp` over HTTP with
// the agent's token taken from its environment *by reference* (never written anywhere); cursor, droid
// and grok start `relay-broker mcp` over stdio. No entry holds a secret or anything of one agent, so
// agents sharing a config file (one cwd, one HOME) share one entry:
// - cursor expands `${env:NAME}` in its mcp.json: the entry names the agent's variables.
// - droid and grok write their entry with their own `mcp add`; which parent variables they hand a stdio
//   server is not something to count on, so the entry names the daemon's agents directory instead
//   (AGENT_RELAY_AGENTS_DIR), where the server finds its agent's 0600 file by its ancestor's pid.
// Pure: this module decides; the caller merges the files, runs the commands and undoes both on release.

export type WiredHarness = "claude" | "codex" | "gemini" | "opencode" | "cursor" | "droid" | "grok"

export const serverKey = "agent-relay"
export const tokenVariable = "RELAY_AGENT_TOKEN"
/** Where a stdio server without its agent's variables finds `<pid>.json` (src/mcp/agentFiles.ts). */
export const agentsDirVariable = "AGENT_RELAY_AGENTS_DIR"

/** What the stdio server reads from its agent's environment (src/mcp/stdio.ts). */
export const stdioVariables: ReadonlyArray<string> = [
  "RELAY_BASE_URL",
  "RELAY_AGENT_NAME",
  tokenVariable,
  "AGENT_RELAY_DAEMON_URL",
  "AGENT_RELAY_RESULT_URL",
  "AGENT_RELAY_RESULT_TOKEN",
  "AGENT_RELAY_RESULT_SCHEMA"
]

/** A JSON file to merge our entry into (created when absent). `entry` is set at `path` inside it. */
export interface FileMerge {
  readonly file: string
  readonly path: ReadonlyArray<string>
  readonly entry: unknown
}

export interface Wiring {
  readonly harness: WiredHarness
  readonly transport: "http" | "stdio"
  /** Put before the user's arguments. */
  readonly args: ReadonlyArray<string>
  readonly files: ReadonlyArray<FileMerge>
  /** Run, in order, before the agent starts (the CLI's own `mcp add`). */
  readonly commands: ReadonlyArray<{ readonly command: string; readonly args: ReadonlyArray<string> }>
  /** The file those commands write our entry into, at `path` (restored on release). */
  readonly commandFile?: { readonly file: string; readonly path: ReadonlyArray<string> }
}

export interface WiringInput {
  /** The program (`claude`, `/usr/bin/codex`, `cursor-agent`, …). */
  readonly command: string
  /** The user's arguments. */
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly home: string
  /** The daemon's `/mcp` URL. */
  readonly httpUrl: string
  /** The stdio server: this installation's `relay-broker mcp`, absolute paths. */
  readonly stdio: { readonly command: string; readonly args: ReadonlyArray<string> }
  /** The daemon's agents directory (0700; one 0600 `<pid>.json` per stdio-wired agent). */
  readonly agentsDir: string
}

const harnessNames: Readonly<Record<string, WiredHarness>> = {
  claude: "claude",
  codex: "codex",
  gemini: "gemini",
  opencode: "opencode",
  cursor: "cursor",
  "cursor-agent": "cursor",
  droid: "droid",
  grok: "grok"
}

export const wiredHarness = (command: string): WiredHarness | undefined => {
  const base = command.split("/").pop()?.replace(/\.(exe|cmd)$/i, "").toLowerCase() ?? ""
  return Object.hasOwn(harnessNames, base) ? harnessNames[base] : undefined
}

/** A string as a TOML basic string (what codex's `-c key=value` parses). */
export const tomlString = (value: string): string => JSON.stringify(value)

const bearer = (reference: string) => ({ Authorization: `Bearer ${reference}` })

const valuesOf = (args: ReadonlyArray<string>, flag: string): ReadonlyArray<string> => {
  const values: Array<string> = []
  args.forEach((arg, index) => {
    if (arg === flag && index + 1 < args.length) values.push(args[index + 1]!)
    else if (arg.startsWith(`${flag}=`)) values.push(arg.slice(flag.length + 1))
  })
  return values
}

/**
 * Set when the user's own arguments already configure an `agent-relay` server: then nothing is added.
 * (File-based wirings are checked when merging: an existing `agent-relay` entry is left as it is.)
 */
export const configuredByArgs = (harness: WiredHarness, args: ReadonlyArray<string>): boolean => {
  switch (harness) {
    case "claude":
      return valuesOf(args, "--mcp-config").some((value) => value.includes(`"${serverKey}"`))
    case "codex":
      return args.some((arg) => arg.includes(`mcp_servers.${serverKey}`) || arg.includes(`mcp_servers."${serverKey}"`))
    case "opencode":
      return false
    default:
      return false
  }
}

export const wiringFor = (input: WiringInput): Wiring | undefined => {
  const harness = wiredHarness(input.command)
  if (harness === undefined || configuredByArgs(harness, input.args)) return undefined
  const stdioEntry = { command: input.stdio.command, args: [...input.stdio.args] }
  switch (harness) {
    case "claude":
      return {
        harness,
        transport: "http",
        // Additive (no --strict-mcp-config); claude expands ${VAR} in headers.
        args: [
          "--mcp-config",
          JSON.stringify({ mcpServers: { [serverKey]: { type: "http", url: input.httpUrl, headers: bearer(`\${${tokenVariable}}`) } } })
        ],
        files: [],
        commands: []
      }
    case "codex":
      return {
        harness,
        transport: "http",
        args: [
          "-c",
          "check_for_update_on_startup=false",
          "-c",
          `mcp_servers.${serverKey}.url=${tomlString(input.httpUrl)}`,
          "-c",
          `mcp_servers.${serverKey}.bearer_token_env_var=${tomlString(tokenVariable)}`
        ],
        files: [],
        commands: []
      }
    case "gemini":
      return {
        harness,
        transport: "http",
        args: [],
        files: [
          // gemini expands $VAR / ${VAR} in headers; project settings count only in a trusted folder.
          {
            file: `${input.cwd}/.gemini/settings.json`,
            path: ["mcpServers", serverKey],
            entry: { type: "http", url: input.httpUrl, headers: bearer(`\${${tokenVariable}}`) }
          },
          { file: `${input.home}/.gemini/trustedFolders.json`, path: [input.cwd], entry: "TRUST_FOLDER" }
        ],
        commands: []
      }
    case "opencode":
      return {
        harness,
        transport: "http",
        // Upstream's form: an agent `agent-relay` that has the server's tools, selected with --agent
        // (unless the user picked an agent of their own).
        args: valuesOf(input.args, "--agent").length > 0 ? [] : ["--agent", serverKey],
        files: [
          {
            file: `${input.cwd}/opencode.json`,
            path: ["mcp", serverKey],
            entry: { type: "remote", url: input.httpUrl, enabled: true, headers: bearer(`{env:${tokenVariable}}`) }
          },
          {
            file: `${input.cwd}/opencode.json`,
            path: ["agent", serverKey],
            entry: { description: "Agent with the Agent Relay MCP tools", tools: { [`${serverKey}_*`]: true } }
          }
        ],
        commands: []
      }
    case "cursor":
      return {
        harness,
        transport: "stdio",
        args: [],
        files: [{
          file: `${input.cwd}/.cursor/mcp.json`,
          path: ["mcpServers", serverKey],
          entry: { ...stdioEntry, env: Object.fromEntries(stdioVariables.map((name) => [name, `\${env:${name}}`])) }
        }],
        commands: []
      }
    case "droid":
      return {
        harness,
        transport: "stdio",
        args: [],
        files: [],
        commands: [
          { command: input.command, args: ["mcp", "remove", serverKey] },
          {
            command: input.command,
            args: ["mcp", "add", "--env", `${agentsDirVariable}=${input.agentsDir}`, serverKey, "--", stdioEntry.command, ...stdioEntry.args]
          }
        ],
        commandFile: { file: `${input.home}/.factory/mcp.json`, path: ["mcpServers", serverKey] }
      }
    case "grok":
      return {
        harness,
        transport: "stdio",
        args: [],
        files: [],
        commands: [
          { command: input.command, args: ["mcp", "remove", serverKey] },
          {
            // grok's options are commander's: `--args=<value>` keeps a value that starts with "-" a value.
            command: input.command,
            args: [
              "mcp",
              "add",
              serverKey,
              "--transport",
              "stdio",
              "--command",
              stdioEntry.command,
              ...stdioEntry.args.map((arg) => `--args=${arg}`),
              `--env=${agentsDirVariable}=${input.agentsDir}`
            ]
          }
        ],
        commandFile: { file: `${input.cwd}/.grok/settings.json`, path: ["mcpServers", serverKey] }
      }
  }
}

export type MergeOutcome =
  | { readonly _tag: "Written"; readonly text: string }
  | { readonly _tag: "Unchanged" }
  | { readonly _tag: "Kept"; readonly reason: string }
  | { readonly _tag: "Invalid"; readonly reason: string }

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** An entry an earlier spawn of relay-broker wrote (its daemon may have moved): ours to update. */
export const isOurs = (entry: unknown): boolean => {
  const text = JSON.stringify(entry) ?? ""
  return text.includes(tokenVariable) || text.includes(agentsDirVariable) || /main\.js","mcp"\]/.test(text) ||
    text.includes(`"${serverKey}_*"`)
}

/**
 * `existing` (a file's text, or undefined when there is none) with `entry` set at `path`. Everything
 * else in the file is kept; a different entry already at `path` is the user's and is kept too (one
 * that an earlier relay-broker spawn wrote is updated).
 */
export const mergeEntry = (existing: string | undefined, merge: FileMerge): MergeOutcome => {
  let root: unknown = {}
  if (existing !== undefined && existing.trim() !== "") {
    try {
      root = JSON.parse(existing)
    } catch {
      return { _tag: "Invalid", reason: `${merge.file} is not valid JSON; it was left as it is` }
    }
  }
  if (!isRecord(root)) return { _tag: "Invalid", reason: `${merge.file} does not hold a JSON object` }
  const result: Record<string, unknown> = { ...root }
  let node = result
  for (const key of merge.path.slice(0, -1)) {
    const child = node[key]
    if (child !== undefined && !isRecord(child)) return { _tag: "Invalid", reason: `${merge.file}: ${key} is not an object` }
    node[key] = { ...(child ?? {}) }
    node = node[key] as Record<string, unknown>
  }
  const last = merge.path[merge.path.length - 1]!
  const current = node[last]
  if (JSON.stringify(current) === JSON.stringify(merge.entry)) return { _tag: "Unchanged" }
  if (current !== undefined && !isOurs(current)) {
    return { _tag: "Kept", reason: `${merge.file} already sets ${merge.path.join(".")}; it was left as it is` }
  }
  node[last] = merge.entry
  return { _tag: "Written", text: `${JSON.stringify(result, null, 2)}\n` }
}
