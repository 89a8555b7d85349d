#!/usr/bin/env node
// A test agent that records, byte for byte, what is typed into its terminal.
// Every stdin chunk is appended to `<cwd>/<RELAY_AGENT_NAME>-<pid>.raw`: one file per agent
// session, so a test can tell which session a message reached and whether it came twice.
// The terminal is put in raw mode, so the line discipline interprets nothing (^C stays a byte).
import { appendFileSync } from "node:fs"
import { join } from "node:path"

const name = process.env.RELAY_AGENT_NAME ?? "recorder"
const file = join(process.cwd(), `${name}-${process.pid}.raw`)
appendFileSync(file, "")

if (process.stdin.isTTY) process.stdin.setRawMode(true)
process.stdin.on("data", (chunk) => appendFileSync(file, chunk))
process.stdin.on("end", () => process.exit(0))
for (const signal of ["SIGTERM", "SIGHUP", "SIGINT"]) process.on(signal, () => process.exit(0))

process.stdout.write(`[recorder] ready as ${name}\r\n`)
