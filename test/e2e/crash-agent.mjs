#!/usr/bin/env node
// A test agent for supervision: it records what is typed into its terminal, like recorder-agent.mjs
// (one `<cwd>/<RELAY_AGENT_NAME>-<pid>.raw` file per run), and exits with code 3 when a message
// asks it to ("crash-now" in the input): a crash the test controls, after the message was recorded.
import { appendFileSync } from "node:fs"
import { join } from "node:path"

const name = process.env.RELAY_AGENT_NAME ?? "crasher"
const file = join(process.cwd(), `${name}-${process.pid}.raw`)
appendFileSync(file, "")

let seen = ""
if (process.stdin.isTTY) process.stdin.setRawMode(true)
process.stdin.on("data", (chunk) => {
  appendFileSync(file, chunk)
  seen += String(chunk)
  // After the whole message (its Enter): the delivery is typed and acked before the process goes.
  if (seen.includes("crash-now") && /[\r\n]/.test(seen.slice(seen.indexOf("crash-now")))) {
    setTimeout(() => process.exit(3), 300)
  }
})
for (const signal of ["SIGTERM", "SIGHUP", "SIGINT"]) process.on(signal, () => process.exit(0))

process.stdout.write(`[crash-agent] ready as ${name}\r\n`)
