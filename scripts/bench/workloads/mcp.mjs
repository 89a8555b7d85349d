// Workload: the agent tool server, as a harness starts it (`node dist/main.js mcp`, the stdio MCP
// server bundled as dist/bin/stdio.js). N runs, each: exec → the `initialize` request answered on
// stdout, the process's peak RSS (VmHWM) then; then one tool call (`check_inbox`) and the peak RSS
// after it, since the first call loads the HTTP client; stdin closed, it exits. Median.
// No engine or broker: RELAY_BASE_URL points at a closed port, so the call fails at once (connection
// refused) after loading everything a real call loads. Ours only; no upstream column.
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { pathToFileURL } from "node:url"
import { now } from "../lib/procs.mjs"
import { median } from "../lib/stats.mjs"

const toolCall = { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "check_inbox", arguments: {} } }
const initialized = { jsonrpc: "2.0", method: "notifications/initialized" }

const initialize = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "relay-bench", version: "0" } }
}

/** VmHWM (peak resident set) of a live process in MB; undefined where /proc is not there. */
const peakRssMb = (pid) => {
  try {
    const kb = Number(/^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1])
    return Number.isFinite(kb) && kb > 0 ? kb / 1024 : undefined
  } catch {
    return undefined
  }
}

/** The Node flags a harness launches the server with (dist/mcp/launch.js, beside the bundle), so the figures are the real launch's. */
const launchFlags = async (entry) => {
  try {
    return [...(await import(pathToFileURL(join(dirname(entry), "mcp", "launch.js")).href)).stdioNodeFlags]
  } catch {
    return []
  }
}

const runOnce = ({ entry, flags, env, timeoutMs }) =>
  new Promise((resolve, reject) => {
    const startedAt = now()
    const child = spawn(process.execPath, [...flags, entry, "mcp"], { env, stdio: ["pipe", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let answered = false
    let wallMs
    let rss
    child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk))
    const fail = (error) => {
      clearTimeout(timer)
      child.kill("SIGKILL")
      reject(error)
    }
    const timer = setTimeout(() => fail(new Error(`mcp: no answer within ${timeoutMs} ms: ${stderr.trim().slice(0, 300)}`)), timeoutMs)
    child.on("error", fail)
    const onMessage = (message) => {
      if (message.id === 1 && !answered) {
        answered = true
        wallMs = now() - startedAt
        if (message.error !== undefined) return fail(new Error(`mcp: initialize failed: ${JSON.stringify(message.error)}`))
        rss = peakRssMb(child.pid)
        child.stdin.write(`${JSON.stringify(initialized)}\n${JSON.stringify(toolCall)}\n`)
        return
      }
      if (message.id !== 2) return
      clearTimeout(timer)
      if (message.error !== undefined) return fail(new Error(`mcp: tools/call failed: ${JSON.stringify(message.error)}`))
      const afterCallRssMb = peakRssMb(child.pid)
      child.once("exit", () => resolve({ wallMs, peakRssMb: rss, afterCallRssMb, server: message.result?.serverInfo }))
      child.stdin.end()
    }
    child.stdout.setEncoding("utf8").on("data", (chunk) => {
      stdout += chunk
      const lines = stdout.split("\n")
      stdout = lines.pop()
      for (const line of lines) {
        let message
        try {
          message = JSON.parse(line)
        } catch {
          continue
        }
        onMessage(message)
      }
    })
    child.on("exit", (code) => {
      if (!answered) fail(new Error(`mcp exited ${code} before answering initialize: ${stderr.trim().slice(0, 300)}`))
    })
    // Written at once, as a harness does: the server reads it once it is up.
    child.stdin.write(`${JSON.stringify(initialize)}\n`)
  })

export const runMcp = async ({ entry, runs, timeoutMs = 30000 }) => {
  const env = {
    ...process.env,
    RELAY_BASE_URL: "http://127.0.0.1:9",
    RELAY_AGENT_TOKEN: "at_live_bench_only",
    RELAY_AGENT_NAME: "bench-agent"
  }
  delete env.AGENT_RELAY_DAEMON_URL
  delete env.RELAY_AGENT_TOKEN_FILE
  const samples = []
  const flags = await launchFlags(entry)
  for (let i = 0; i < runs; i++) samples.push(await runOnce({ entry, flags, env, timeoutMs }))
  const known = (key) => samples.map((s) => s[key]).filter((x) => x !== undefined)
  const rss = known("peakRssMb")
  const afterCall = known("afterCallRssMb")
  return {
    command: [...flags, "mcp"].join(" "),
    runs,
    initializeMs: median(samples.map((s) => s.wallMs)),
    peakRssMb: rss.length === 0 ? undefined : median(rss),
    afterCallRssMb: afterCall.length === 0 ? undefined : median(afterCall),
    server: samples[0]?.server,
    samples: samples.map(({ wallMs, peakRssMb, afterCallRssMb }) => ({ wallMs, peakRssMb, afterCallRssMb }))
  }
}
