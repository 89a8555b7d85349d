// How each real agent CLI finds its `agent-relay` MCP server in what it was launched with, and what
// it would connect to (shared/reference/harnesses.md §3): where the config is, which variable
// references it expands, and the environment a stdio server gets. Used by the stand-in harnesses
// (test/support/standInHarness.mjs) and the wiring property test. Plain JS: the stand-ins run it.
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

const SERVER = "agent-relay"

/** claude: `${VAR}` and `${VAR:-default}`. */
export const expandClaude = (text, env) =>
  text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_, name, fallback) => env[name] ?? fallback ?? "")

/** gemini: `$VAR` and `${VAR}`. */
export const expandGemini = (text, env) =>
  text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, a, b) => env[a ?? b] ?? "")

/** cursor: `${env:NAME}`, `${userHome}`, `${workspaceFolder}`, `${workspaceFolderBasename}`, `${pathSeparator}` / `${/}`. */
export const expandCursor = (text, env, cwd, home) =>
  text.replace(/\$\{(env:([A-Za-z_][A-Za-z0-9_]*)|userHome|workspaceFolder|workspaceFolderBasename|pathSeparator|\/)\}/g, (_, what, name) => {
    if (name !== undefined) return env[name] ?? ""
    if (what === "userHome") return home
    if (what === "workspaceFolder") return cwd
    if (what === "workspaceFolderBasename") return cwd.split("/").pop()
    return "/"
  })

/** opencode: `{env:VAR}`. */
export const expandOpencode = (text, env) => text.replace(/\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name) => env[name] ?? "")

const mapValues = (record, f) => Object.fromEntries(Object.entries(record ?? {}).map(([k, v]) => [k, f(String(v))]))

const readJson = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : undefined)

const valuesOf = (args, flags) => {
  const values = []
  args.forEach((arg, i) => {
    for (const flag of flags) {
      if (arg === flag && i + 1 < args.length) values.push(args[i + 1])
      else if (arg.startsWith(`${flag}=`)) values.push(arg.slice(flag.length + 1))
    }
  })
  return values
}

const claude = ({ args, env }) => {
  let entry
  for (const value of valuesOf(args, ["--mcp-config"])) {
    const config = value.trim().startsWith("{") ? JSON.parse(value) : readJson(value)
    entry = config?.mcpServers?.[SERVER] ?? entry
  }
  if (entry === undefined) return undefined
  if (entry.type === "http" || entry.url !== undefined) {
    return { transport: "http", url: entry.url, headers: mapValues(entry.headers, (v) => expandClaude(v, env)) }
  }
  return { transport: "stdio", command: entry.command, args: entry.args ?? [], env: { ...env, ...mapValues(entry.env, (v) => expandClaude(v, env)) } }
}

/** A codex `-c` value: TOML when it parses (strings, arrays of strings, booleans, numbers), else the literal text. */
export const tomlValue = (text) => {
  const trimmed = text.trim()
  try {
    if (trimmed.startsWith("\"") || trimmed.startsWith("[")) return JSON.parse(trimmed)
  } catch {
    return trimmed
  }
  if (trimmed === "true" || trimmed === "false") return trimmed === "true"
  if (/^-?\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed)
  return trimmed
}

const splitKey = (key) => [...key.matchAll(/"([^"]*)"|([^.]+)/g)].map((m) => m[1] ?? m[2])

const codex = ({ args, env }) => {
  const config = {}
  for (const value of valuesOf(args, ["-c", "--config"])) {
    const eq = value.indexOf("=")
    if (eq < 0) continue
    const path = splitKey(value.slice(0, eq).trim())
    let node = config
    for (const key of path.slice(0, -1)) node = node[key] ??= {}
    node[path[path.length - 1]] = tomlValue(value.slice(eq + 1))
  }
  const entry = config.mcp_servers?.[SERVER]
  if (entry === undefined) return undefined
  if (entry.url !== undefined) {
    const headers = { ...entry.http_headers }
    if (entry.bearer_token_env_var !== undefined) headers.Authorization = `Bearer ${env[entry.bearer_token_env_var] ?? ""}`
    for (const [header, variable] of Object.entries(entry.env_http_headers ?? {})) headers[header] = env[variable] ?? ""
    return { transport: "http", url: entry.url, headers }
  }
  const base = Object.fromEntries(["HOME", "LANG", "PATH", "TERM", "TMPDIR"].filter((k) => env[k] !== undefined).map((k) => [k, env[k]]))
  const passed = Object.fromEntries((entry.env_vars ?? []).filter((k) => env[k] !== undefined).map((k) => [k, env[k]]))
  return { transport: "stdio", command: entry.command, args: entry.args ?? [], env: { ...base, ...passed, ...entry.env } }
}

const geminiSecret = /TOKEN|SECRET|KEY|AUTH|PASSWORD|CREDENTIAL/i

const gemini = ({ env, cwd, home }) => {
  const trusted = readJson(join(home, ".gemini", "trustedFolders.json")) ?? {}
  const user = readJson(join(home, ".gemini", "settings.json"))?.mcpServers ?? {}
  // Project settings are skipped in an untrusted folder.
  const project = trusted[cwd] === "TRUST_FOLDER" ? readJson(join(cwd, ".gemini", "settings.json"))?.mcpServers ?? {} : {}
  const entry = { ...user, ...project }[SERVER]
  if (entry === undefined) return undefined
  const url = entry.httpUrl ?? entry.url
  if (url !== undefined) return { transport: "http", url, headers: mapValues(entry.headers, (v) => expandGemini(v, env)) }
  const inherited = Object.fromEntries(Object.entries(env).filter(([k]) => !geminiSecret.test(k)))
  return { transport: "stdio", command: entry.command, args: entry.args ?? [], env: { ...inherited, ...mapValues(entry.env, (v) => expandGemini(v, env)) } }
}

/** opencode's tool names for an MCP server: `<server>_<tool>`; an agent's `tools` map takes globs. */
export const opencodeAllows = (agent, tool) => {
  let allowed = true
  for (const [pattern, on] of Object.entries(agent?.tools ?? {})) {
    const glob = new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`)
    if (glob.test(`${SERVER}_${tool}`)) allowed = on === true
  }
  return allowed
}

const opencode = ({ args, env, cwd }) => {
  const config = readJson(join(cwd, "opencode.json"))
  const entry = config?.mcp?.[SERVER]
  if (entry === undefined || entry.enabled === false) return undefined
  // `--agent <name>` must name an agent of the config (opencode refuses to start otherwise).
  const agentName = valuesOf(args, ["--agent"]).at(-1)
  const agent = agentName === undefined ? undefined : config?.agent?.[agentName]
  if (agentName !== undefined && agent === undefined) throw new Error(`opencode: agent ${agentName} is not defined in opencode.json`)
  const selected = agentName === undefined ? undefined : { name: agentName, allows: (tool) => opencodeAllows(agent, tool) }
  if (entry.type === "remote") {
    return { transport: "http", url: entry.url, headers: mapValues(entry.headers, (v) => expandOpencode(v, env)), agent: selected }
  }
  const [command, ...rest] = entry.command
  return { transport: "stdio", command, args: rest, env: { ...env, ...mapValues(entry.environment, (v) => expandOpencode(v, env)) }, agent: selected }
}

const cursor = ({ env, cwd, home }) => {
  const entry = readJson(join(cwd, ".cursor", "mcp.json"))?.mcpServers?.[SERVER] ?? readJson(join(home, ".cursor", "mcp.json"))?.mcpServers?.[SERVER]
  if (entry === undefined) return undefined
  const expand = (v) => expandCursor(v, env, cwd, home)
  if (entry.url !== undefined) return { transport: "http", url: expand(entry.url), headers: mapValues(entry.headers, expand) }
  return { transport: "stdio", command: expand(entry.command), args: (entry.args ?? []).map(expand), env: { ...env, ...mapValues(entry.env, expand) } }
}

/** The variables the MCP SDK's stdio client passes when given an `env` (its getDefaultEnvironment on POSIX). */
export const sdkDefaultEnv = (env) =>
  Object.fromEntries(["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"].filter((k) => env[k] !== undefined && !env[k].startsWith("()")).map((k) => [k, env[k]]))

/**
 * droid: `~/.factory/mcp.json` (what `droid mcp add` writes), `<cwd>/.factory/mcp.json` over it. Its
 * docs do not say which parent variables a stdio server gets nor whether `env` values are expanded;
 * this stand-in takes the strictest reading: literal `env`, over the MCP SDK's default variables only.
 */
const droid = ({ env, cwd, home }) => {
  const user = readJson(join(home, ".factory", "mcp.json"))?.mcpServers ?? {}
  const project = readJson(join(cwd, ".factory", "mcp.json"))?.mcpServers ?? {}
  const entry = { ...user, ...project }[SERVER]
  if (entry === undefined || entry.disabled === true) return undefined
  if (entry.type === "http") return { transport: "http", url: entry.url, headers: entry.headers ?? {} }
  return { transport: "stdio", command: entry.command, args: entry.args ?? [], env: { ...sdkDefaultEnv(env), ...entry.env } }
}

/**
 * grok (@vibe-kit/grok-cli, the version with `grok mcp add`): `<cwd>/.grok/mcp.json`, then the project
 * settings `<cwd>/.grok/settings.json` (what `mcp add` writes), then `~/.grok/mcp.json`; the first
 * that names the server wins. A stdio server gets the whole parent environment, then the entry's `env`
 * (literal), then grok's own quieting variables.
 */
export const grokEntry = ({ cwd, home }) => {
  const fromMcp = (file) => {
    const servers = readJson(file)?.mcpServers ?? readJson(file)?.servers
    return servers?.[SERVER] === undefined ? undefined : { name: SERVER, ...servers[SERVER] }
  }
  return fromMcp(join(cwd, ".grok", "mcp.json")) ?? readJson(join(cwd, ".grok", "settings.json"))?.mcpServers?.[SERVER] ?? fromMcp(join(home, ".grok", "mcp.json"))
}

export const grokStdioEnv = (env, entryEnv) => ({ ...env, ...entryEnv, MCP_REMOTE_QUIET: "1", MCP_REMOTE_SILENT: "1", DEBUG: "", NODE_ENV: "production" })

const grok = ({ env, cwd, home }) => {
  const entry = grokEntry({ cwd, home })
  if (entry === undefined) return undefined
  const transport = entry.transport ?? { type: "stdio", command: entry.command, args: entry.args, env: entry.env }
  if (transport.type !== "stdio") return { transport: "http", url: transport.url, headers: transport.headers ?? {} }
  return { transport: "stdio", command: transport.command, args: transport.args ?? [], env: grokStdioEnv(env, transport.env) }
}

const parsers = { claude, codex, gemini, opencode, cursor, "cursor-agent": cursor, droid, grok }

/**
 * The agent-relay server `harness` would start or reach, launched with `args` in `cwd`, with `env`
 * (its own environment; `home` defaults to env.HOME). Undefined when it is not configured.
 */
export const serverFor = (harness, { args, env, cwd, home }) =>
  parsers[harness]?.({ args, env, cwd, home: home ?? env.HOME })
