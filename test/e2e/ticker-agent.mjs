#!/usr/bin/env node
// A test agent whose terminal activity the test controls, for idleness: while "working" it prints a
// tick every 200 ms; typed lines steer it: `stop` (silent from now on), `go` (ticks again),
// `work N` (N ticks, then `done` and silence: a task that ends). It starts ticking unless given
// `--quiet`. What is typed is recorded, like recorder-agent.mjs, in `<cwd>/<RELAY_AGENT_NAME>-<pid>.raw`.
import { appendFileSync } from "node:fs"
import { join } from "node:path"

const name = process.env.RELAY_AGENT_NAME ?? "ticker"
const file = join(process.cwd(), `${name}-${process.pid}.raw`)
appendFileSync(file, "")

let ticksLeft = process.argv.includes("--quiet") ? 0 : Number.POSITIVE_INFINITY
let tick = 0
setInterval(() => {
  if (ticksLeft <= 0) return
  ticksLeft--
  process.stdout.write(`tick ${++tick}\r\n`)
  if (ticksLeft === 0) process.stdout.write("done\r\n")
}, 200)

let line = ""
const command = (text) => {
  const work = /^work (\d+)$/.exec(text)
  if (text === "stop") ticksLeft = 0
  else if (text === "go") ticksLeft = Number.POSITIVE_INFINITY
  else if (work !== null) ticksLeft = Number(work[1])
}

if (process.stdin.isTTY) process.stdin.setRawMode(true)
process.stdin.on("data", (chunk) => {
  appendFileSync(file, chunk)
  for (const char of String(chunk)) {
    if (char === "\r" || char === "\n") {
      command(line.trim())
      line = ""
    } else {
      line += char
    }
  }
})
for (const signal of ["SIGTERM", "SIGHUP", "SIGINT"]) process.on(signal, () => process.exit(0))

process.stdout.write(`[ticker] ready as ${name}\r\n`)
