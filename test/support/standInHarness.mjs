// A stand-in for a real agent CLI (claude, codex, gemini, opencode, cursor-agent) in a terminal:
//   node standInHarness.mjs <harness> [the args the CLI was launched with…]
// It finds its `agent-relay` MCP server in its launch exactly as that CLI would (mcpWiringParsers.mjs),
// starts or connects to it with the official MCP SDK client (initialize, tools/list), prints
// `[stand-in] tools <n>`, then reads its terminal: every relay message typed into it is answered
// through the tools only: a DM with send_dm, a channel message with reply_to_thread. A message whose
// body starts with "re:" is an answer and gets none (so two stand-ins do not talk for ever).
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import { serverFor } from "./mcpWiringParsers.mjs"

const [harness, ...args] = process.argv.slice(2)
const say = (line) => process.stdout.write(`[stand-in] ${line}\r\n`)

const server = serverFor(harness, { args, env: process.env, cwd: process.cwd() })
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
    say(`tools ${tools.length}`)
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

  let buffer = ""
  if (process.stdin.isTTY) process.stdin.setRawMode(true)
  process.stdin.on("data", (chunk) => {
    buffer += chunk.toString("utf8")
    const end = Math.max(buffer.lastIndexOf("\r"), buffer.lastIndexOf("\n"))
    if (end < 0) return
    const complete = buffer.slice(0, end + 1)
    buffer = buffer.slice(end + 1)
    handle(complete).catch((error) => say(`reply failed: ${error?.message ?? error}`))
  })
  // The stand-in also sends on request: a line "ASK <agent> <text>" or "POST <channel> <text>".
  process.stdin.on("data", (chunk) => {
    const text = chunk.toString("utf8").replace(escapes, "")
    for (const [, to, body] of text.matchAll(/ASK (\S+) ([^\r\n]+)/g)) call("send_dm", { to, text: body }).catch(() => undefined)
    for (const [, channel, body] of text.matchAll(/POST (\S+) ([^\r\n]+)/g)) call("post_message", { channel, text: body }).catch(() => undefined)
  })
}
say(`ready ${harness}`)
setInterval(() => undefined, 1 << 30)
