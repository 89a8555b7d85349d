// The `mcp add` / `mcp remove` commands of droid and grok, as the stand-in harnesses run them: they
// parse their arguments the way that CLI does and write the config file that CLI writes.
//   droid mcp add [--env K=V]… [--type stdio|http] <name> [--] <command> [args…]  → ~/.factory/mcp.json
//   grok mcp add <name> [-t|--transport T] [-c|--command C] [-a|--args [a…]] [-e|--env [K=V…]]
//                                                                       → <cwd>/.grok/settings.json
// (grok's options are commander's: a variadic option takes values until the next "-…" token; `--opt=v`
// is one value; an unknown option is an error; `--env` splits K=V with split("=", 2).)
// grok connects to the server it just added ("✓ Connected…", exit 1 when that fails): `connect`.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"

const readJson = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : {})
const writeJson = (file, value) => {
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify(value, null, 2))
}

const droid = (args, { home }) => {
  const file = join(home, ".factory", "mcp.json")
  const [verb, ...rest] = args
  const config = readJson(file)
  config.mcpServers ??= {}
  if (verb === "remove") {
    if (config.mcpServers[rest[0]] === undefined) throw new Error(`MCP server "${rest[0]}" not found`)
    delete config.mcpServers[rest[0]]
    writeJson(file, config)
    return `Removed MCP server "${rest[0]}"`
  }
  if (verb !== "add") throw new Error(`unknown command mcp ${verb}`)
  const env = {}
  let type = "stdio"
  const positional = []
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]
    if (arg === "--") {
      positional.push(...rest.slice(i + 1))
      break
    }
    if (arg === "--env" || arg === "-e") {
      const [key, ...value] = rest[++i].split("=")
      env[key] = value.join("=")
    } else if (arg === "--type") type = rest[++i]
    else if (arg.startsWith("-")) throw new Error(`unknown option ${arg}`)
    else positional.push(arg)
  }
  const [name, command, ...commandArgs] = positional
  if (name === undefined || command === undefined) throw new Error("usage: droid mcp add <name> <command> [args…]")
  config.mcpServers[name] = type === "http"
    ? { type: "http", url: command }
    : { type: "stdio", command, args: commandArgs, env, disabled: false }
  writeJson(file, config)
  return `Added MCP server "${name}"`
}

/** commander's parsing of `grok mcp add`'s options. */
const grokOptions = (rest) => {
  const spec = { "-t": "transport", "--transport": "transport", "-c": "command", "--command": "command", "-a": "args", "--args": "args", "-e": "env", "--env": "env", "-u": "url", "--url": "url" }
  const variadic = new Set(["args", "env"])
  const options = { transport: "stdio", args: [], env: [] }
  const positional = []
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]
    if (!arg.startsWith("-")) {
      positional.push(arg)
      continue
    }
    const eq = arg.indexOf("=")
    const flag = eq > 0 && arg.startsWith("--") ? arg.slice(0, eq) : arg
    const key = spec[flag]
    if (key === undefined) throw new Error(`error: unknown option '${flag}'`)
    if (eq > 0 && arg.startsWith("--")) {
      if (variadic.has(key)) options[key].push(arg.slice(eq + 1))
      else options[key] = arg.slice(eq + 1)
      continue
    }
    if (variadic.has(key)) {
      while (i + 1 < rest.length && !rest[i + 1].startsWith("-")) options[key].push(rest[++i])
    } else options[key] = rest[++i]
  }
  return { options, positional }
}

const grok = async (args, { cwd, connect }) => {
  const file = join(cwd, ".grok", "settings.json")
  const [verb, ...rest] = args
  const settings = readJson(file)
  if (verb === "remove") {
    if (settings.mcpServers !== undefined) {
      delete settings.mcpServers[rest[0]]
      writeJson(file, settings)
    }
    return `✓ Removed MCP server: ${rest[0]}`
  }
  if (verb !== "add") throw new Error(`unknown command mcp ${verb}`)
  const { options, positional } = grokOptions(rest)
  const [name] = positional
  if (options.transport === "stdio" && options.command === undefined) throw new Error("Error: --command is required for stdio transport")
  const env = {}
  for (const pair of options.env) {
    const [key, value] = pair.split("=", 2)
    if (key && value) env[key] = value
  }
  const config = { name, transport: { type: options.transport, command: options.command, args: options.args, url: options.url, env } }
  settings.mcpServers = { ...settings.mcpServers, [name]: config }
  writeJson(file, settings)
  if (connect !== undefined) {
    const tools = await connect(config.transport)
    return `✓ Added MCP server: ${name}\n✓ Connected to MCP server: ${name}\n  Available tools: ${tools}`
  }
  return `✓ Added MCP server: ${name}`
}

/** Runs `<harness> mcp …`; answers what it prints, throws what it would print as an error (exit 1). */
export const runMcpCommand = (harness, args, context) => {
  if (harness === "droid") return Promise.resolve().then(() => droid(args, context))
  if (harness === "grok") return grok(args, context)
  return Promise.reject(new Error(`${harness} has no mcp command here`))
}
