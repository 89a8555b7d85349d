#!/usr/bin/env node
// A tiny real agent for demos and tests (plain node, no dependencies).
//
//   relay-broker spawn echo-1 node -- scripts/echo-agent.mjs
//
// It prints a ready line, reads what is typed into its terminal, and echoes each message it read.
// A message that contains "ping" is answered with a DM "pong" to its sender, through the engine's
// HTTP API (POST $RELAY_BASE_URL/v1/dm with Bearer $RELAY_AGENT_TOKEN).
//
// Input: the broker types a message as its text then Enter (\r). A relay message may span several
// lines: "<system-reminder>…</system-reminder>\nRelay message from <sender> [<ctx>]: <body>". In a
// terminal the agent reads raw bytes, so \n inside such a message is part of it and \r ends it; a
// plain line ends at \r or \n. Without a terminal (a pipe) every line is a message.

const name = process.env.RELAY_AGENT_NAME ?? "echo-agent"
const baseUrl = (process.env.RELAY_BASE_URL ?? "").replace(/\/+$/, "")
const token = process.env.RELAY_AGENT_TOKEN ?? ""

const say = (line) => process.stdout.write(`[echo-agent] ${line}\r\n`)

// eslint-disable-next-line no-control-regex
const escapeSequence = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -/]*[0-~]/g
const reminderBlock = /<system-reminder>[\s\S]*?<\/system-reminder>/g

/** The relay line's sender and body, or undefined for a plain line. */
const parseRelayMessage = (text) => {
  const at = text.indexOf("Relay message from ")
  if (at < 0) return undefined
  const rest = text.slice(at + "Relay message from ".length)
  const sender = /^[^\s[]+/.exec(rest)?.[0]
  if (sender === undefined) return undefined
  const colon = rest.indexOf("]: ")
  const body = colon >= 0 ? rest.slice(colon + 3) : rest.slice(sender.length).trim()
  return { sender, body }
}

const sendPong = async (to) => {
  if (baseUrl === "" || token === "") {
    say(`cannot answer ${to}: RELAY_BASE_URL or RELAY_AGENT_TOKEN is not set`)
    return
  }
  try {
    const response = await fetch(`${baseUrl}/v1/dm`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ to, text: "pong" })
    })
    if (response.ok) {
      say(`sent pong to ${to}`)
    } else {
      const body = await response.json().catch(() => ({}))
      const code = body?.error?.code ?? body?.code ?? ""
      say(`pong to ${to} failed: HTTP ${response.status} ${code}`.trimEnd())
    }
  } catch (error) {
    say(`pong to ${to} failed: ${error?.message ?? error}`)
  }
}

const pending = new Set()

const onMessage = (raw) => {
  const text = raw.replace(escapeSequence, "").replace(reminderBlock, "").trim()
  if (text.length === 0) return
  say(`read: ${text.replace(/\n/g, "\\n")}`)
  const relay = parseRelayMessage(text)
  const body = relay?.body ?? text
  if (!/ping/i.test(body)) return
  if (relay === undefined) {
    say("pong (no sender to answer)")
    return
  }
  const sent = sendPong(relay.sender)
  pending.add(sent)
  void sent.finally(() => pending.delete(sent))
}

// Answers already on their way are sent before the agent goes.
const stop = (code = 0) => {
  void Promise.allSettled([...pending]).then(() => process.exit(code))
}

// A message that began as a relay message keeps its inner newlines until Enter.
const isRelayStart = (buffer) => {
  const visible = buffer.replace(escapeSequence, "").trimStart()
  return visible.startsWith("<system-reminder>") || visible.startsWith("Relay message from ")
}

let buffer = ""
let skipLineFeed = false
const readRaw = (chunk) => {
  for (const char of chunk) {
    if (skipLineFeed && char === "\n") {
      skipLineFeed = false
      continue
    }
    skipLineFeed = false
    if (char === "\r") {
      onMessage(buffer)
      buffer = ""
      skipLineFeed = true
    } else if (char === "\n") {
      if (isRelayStart(buffer)) {
        buffer += "\n"
      } else {
        onMessage(buffer)
        buffer = ""
      }
    } else if (char === "\x03") {
      stop(130)
    } else if (char === "\x04") {
      if (buffer.length === 0) stop(0)
    } else if (char === "\x7f" || char === "\b") {
      buffer = buffer.slice(0, -1)
    } else {
      buffer += char
    }
  }
}

const readLines = (chunk) => {
  buffer += chunk
  let newline = buffer.indexOf("\n")
  while (newline >= 0) {
    onMessage(buffer.slice(0, newline))
    buffer = buffer.slice(newline + 1)
    newline = buffer.indexOf("\n")
  }
}

process.stdin.setEncoding("utf8")
if (process.stdin.isTTY) {
  process.stdin.setRawMode(true)
  process.stdin.on("data", readRaw)
} else {
  process.stdin.on("data", readLines)
  process.stdin.on("end", () => {
    onMessage(buffer)
    stop(0)
  })
}
process.on("SIGTERM", () => stop(0))
process.on("SIGHUP", () => stop(0))

say(`ready as ${name}`)
