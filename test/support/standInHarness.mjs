// A stand-in for a real agent CLI (claude, codex, gemini, opencode, cursor-agent, droid, grok) in a terminal:
//   node standInHarness.mjs <harness> [the args the CLI was launched with…]
//   node standInHarness.mjs droid|grok mcp add|remove …   (that CLI's own command: standInMcpCommands.mjs)
// It finds its `agent-relay` MCP server in its launch exactly as that CLI would (mcpWiringParsers.mjs),
// starts or connects to it with the official MCP SDK client (initialize, tools/list), prints
// `[stand-in] tools <n>`, then reads its terminal: every relay message typed into it is answered
// through the tools only: a DM with send_dm, a channel message with reply_to_thread. A message whose
// body starts with "re:" is an answer and gets none (so two stand-ins do not talk for ever).
// Its terminal behaves like the CLI's: bracketed paste, a prompt glyph, typed text echoed.
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import { grokStdioEnv, serverFor } from "./mcpWiringParsers.mjs"
import { runMcpCommand } from "./standInMcpCommands.mjs"

const [harness, ...args] = process.argv.slice(2)

if ((harness === "droid" || harness === "grok") && args[0] === "mcp") {
  // grok connects to the server it added, with the environment it gives a stdio server.
  const connect = async (transport) => {
    const client = new Client({ name: "stand-in-grok-mcp-add", version: "1" })
    await client.connect(new StdioClientTransport({ command: transport.command, args: transport.args, env: grokStdioEnv(process.env, transport.env) }))
    const { tools } = await client.listTools()
    await client.close()
    return tools.length
  }
  try {
    console.log(await runMcpCommand(harness, args.slice(1), { cwd: process.cwd(), home: process.env.HOME, connect }))
    process.exit(0)
  } catch (error) {
    console.error(error?.message ?? String(error))
    process.exit(1)
  }
}
let promptLine = ""
// A line above the input line, which is drawn again under it (as a TUI keeps its input box last).
const say = (line) => process.stdout.write(`\r\x1b[K[stand-in] ${line}\r\n${promptLine}`)

let server
try {
  server = serverFor(harness, { args, env: process.env, cwd: process.cwd() })
} catch (error) {
  say(`config error: ${error?.message ?? error}`)
  process.exit(2)
}
if (server === undefined) {
  say("no agent-relay server configured")
} else {
  const client = new Client({ name: `stand-in-${harness}`, version: "1" })
  const transport = server.transport === "http"
    ? new StreamableHTTPClientTransport(new URL(server.url), { requestInit: { headers: server.headers } })
    : new StdioClientTransport({ command: server.command, args: server.args, env: server.env, stderr: "inherit" })
  try {
    await client.connect(transport)
    const { tools } = await client.listTools()
    // opencode with --agent: the agent's `tools` map decides which of the server's tools it gets.
    const usable = server.agent === undefined ? tools : tools.filter((tool) => server.agent.allows(tool.name))
    say(`tools ${usable.length}${server.agent === undefined ? "" : ` (agent ${server.agent.name})`}`)
  } catch (error) {
    say(`mcp failed: ${error?.message ?? error}`)
    process.exit(3)
  }

  const call = async (name, toolArgs) => {
    const result = await client.callTool({ name, arguments: toolArgs })
    const states = result.structuredContent?.delivery?.recipients?.map((r) => `${r.name}=${r.state}`).join(",") ?? ""
    say(`${name} ${result.isError ? "error" : "ok"} ${states} ${result.isError ? result.content?.[0]?.text ?? "" : ""}`.trimEnd())
    return result
  }

  // eslint-disable-next-line no-control-regex
  const escapes = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -/]*[0-~]/g
  const relay = /Relay message from (\S+)( in #(\S+))?(?: \(reply in thread \S+\))? \[(?:[^\]]*\/ )?([^\]\s]+)\]: ([^\r\n]*)/g

  const handle = async (text) => {
    for (const match of text.replace(escapes, "").matchAll(relay)) {
      const [, from, , channel, id, body] = match
      say(`seen ${from} ${channel ?? "dm"} ${body}`)
      if (body.startsWith("re:")) continue
      if (channel !== undefined) await call("reply_to_thread", { message_id: id, text: `re: ${body}` })
      else await call("send_dm", { to: from, text: `re: ${body}` })
    }
  }

  // Like the real TUI: bracketed paste on, an input line that echoes what is typed (a long paste as
  // that CLI's placeholder), Enter submits. What it submits is either a relay message (answered) or
  // a line "ASK <agent> <text>" / "POST <channel> <text>" (sent).
  const glyph = { claude: "❯", codex: "›", gemini: ">", opencode: ">", cursor: ">", "cursor-agent": ">", droid: ">", grok: "❯" }[harness] ?? ">"
  const placeholder = (text) => {
    const lines = text.split("\n").length
    switch (harness) {
      case "codex": return `[Pasted Content ${text.length} chars]`
      case "gemini": return `[Pasted Text: ${lines} lines]`
      case "opencode": return `[Pasted ~${lines} lines]`
      default: return `[Pasted text #1 +${lines - 1} lines]`
    }
  }
  let input = ""
  let shown = ""
  let pending = ""
  const drawInput = () => {
    promptLine = `${glyph} ${shown.slice(-70)}`
    process.stdout.write(`\r\x1b[K${promptLine}`)
  }
  const submit = () => {
    const text = input
    input = ""
    shown = ""
    drawInput()
    for (const [, to, body] of text.replace(escapes, "").matchAll(/^ASK (\S+) ([^\r\n]+)/gm)) call("send_dm", { to, text: body }).catch(() => undefined)
    for (const [, channel, body] of text.replace(escapes, "").matchAll(/^POST (\S+) ([^\r\n]+)/gm)) call("post_message", { channel, text: body }).catch(() => undefined)
    handle(text).catch((error) => say(`reply failed: ${error?.message ?? error}`))
  }
  if (process.stdin.isTTY) process.stdin.setRawMode(true)
  process.stdin.on("data", (chunk) => {
    pending += chunk.toString("utf8")
    for (;;) {
      if (pending.length === 0) return
      if (pending.startsWith("\x1b[200~")) {
        const end = pending.indexOf("\x1b[201~")
        if (end < 0) return
        const text = pending.slice(6, end)
        pending = pending.slice(end + 6)
        input += text
        shown += text.includes("\n") || text.length > 800 ? placeholder(text) : text
        drawInput()
        continue
      }
      const char = pending[0]
      pending = pending.slice(1)
      if (char === "\r") submit()
      else if (char === "\x15") {
        input = ""
        shown = ""
        drawInput()
      } else if (char >= " " || char === "\n") {
        input += char
        shown += char === "\n" ? " " : char
        drawInput()
      }
    }
  })
  process.stdout.write("\x1b[?2004h")
  if (harness === "opencode") process.stdout.write("\x1b]12;#eeeeee\x07\x1b[1 q\x1b[?25h")
  drawInput()
}
say(`ready ${harness}`)
setInterval(() => undefined, 1 << 30)
