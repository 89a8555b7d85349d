#!/usr/bin/env node
// The benchmark's agent: a program that sits in a terminal, reads every line typed into it, and
// records when it read it (`performance.timeOrigin + performance.now()`, ms since the epoch, sub-ms).
//
//   node scripts/sink-agent.mjs --out <file.jsonl> [--watch-pid <pid>]
//
// Each line read becomes one JSON line in --out (or $SINK_AGENT_OUT): {"t", "agent", "len", "mark"?}.
// `mark` is the first `bench#<id>` token of the line, which the benchmark puts in every message it
// sends; the rest of the line is not recorded. Lines are written with a synchronous append so that
// nothing is lost when the agent is killed. With --watch-pid the agent exits when that process is
// gone, so a crashed benchmark leaves no orphans.
import { closeSync, openSync, writeSync } from "node:fs"
import { performance } from "node:perf_hooks"

const args = process.argv.slice(2)
const option = (name) => {
  const at = args.indexOf(name)
  return at >= 0 && at + 1 < args.length ? args[at + 1] : undefined
}

const out = option("--out") ?? process.env.SINK_AGENT_OUT
if (!out) {
  console.error("sink-agent: --out <file> (or SINK_AGENT_OUT) is required")
  process.exit(2)
}
const agent = process.env.RELAY_AGENT_NAME ?? option("--name") ?? ""
const fd = openSync(out, "a")
const markPattern = /bench#([A-Za-z0-9_.:-]+)/

const record = (line) => {
  const t = performance.timeOrigin + performance.now()
  const mark = markPattern.exec(line)?.[1]
  const entry = mark === undefined ? { t, agent, len: line.length } : { t, agent, len: line.length, mark }
  writeSync(fd, `${JSON.stringify(entry)}\n`)
}

let pending = ""
process.stdin.setEncoding("utf8")
process.stdin.on("data", (chunk) => {
  pending += chunk
  let newline = pending.search(/[\r\n]/)
  while (newline >= 0) {
    const line = pending.slice(0, newline)
    pending = pending.slice(newline + 1)
    if (line.length > 0) record(line)
    newline = pending.search(/[\r\n]/)
  }
})

const stop = () => {
  try {
    closeSync(fd)
  } finally {
    process.exit(0)
  }
}
process.stdin.on("end", stop)
process.stdin.on("error", stop)
process.on("SIGTERM", stop)
process.on("SIGHUP", stop)

const watched = Number(option("--watch-pid"))
if (Number.isInteger(watched) && watched > 0) {
  setInterval(() => {
    try {
      process.kill(watched, 0)
    } catch {
      stop()
    }
  }, 1000).unref()
}

// A prompt, so that harnesses that wait for one see the agent as ready.
process.stdout.write("sink> ")
