// Workload: readiness (in process, no broker or engine; no upstream equivalent).
// - spawn → ready for the stand-in TUI (test/fixtures/standin-tui.mjs, read as claude) that draws
//   its prompt after a 300 ms boot, and how long after its prompt bytes arrived readiness was decided;
// - the terminal emulator's cost per agent (dist/broker/TerminalScreen.js): CPU per MB of TUI-like
//   output, and memory (heap + typed arrays) per agent screen after that output (1000 lines of scrollback).
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { performance } from "node:perf_hooks"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

const importDist = (root, path) => import(pathToFileURL(join(root, "dist", path)).href)

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? undefined : sorted[Math.floor((sorted.length - 1) / 2)]
}

const gc = (() => {
  setFlagsFromString("--expose-gc")
  return runInNewContext("gc")
})()

/** Output like a TUI's: coloured lines, cursor moves, erased lines, a redraw of the input box now and then. */
const tuiOutput = (bytes) => {
  const parts = []
  let size = 0
  for (let i = 0; size < bytes; i++) {
    const part = i % 20 === 19
      ? `\x1b[s\x1b[40;1H\x1b[2K\x1b[38;5;244m❯ \x1b[0mtyping line ${i}\x1b[u`
      : `\x1b[1;3${i % 8}m⏺\x1b[0m line ${i}: ${"lorem ipsum dolor sit amet ".repeat(2)}\x1b[K\r\n`
    parts.push(part)
    size += part.length
  }
  return parts.join("")
}

const spawnToReady = async ({ root, runs, Effect, Layer }) => {
  const PtyHost = await importDist(root, "broker/PtyHost.js")
  const AgentReadiness = await importDist(root, "broker/AgentReadiness.js")
  const EventLog = await importDist(root, "broker/EventLog.js")
  const { readinessProfile } = await importDist(root, "broker/readinessTable.js")
  const Stream = await import("effect/Stream")
  const standin = join(root, "test", "fixtures", "standin-tui.mjs")
  const { Logger, LogLevel } = await import("effect")
  const services = Layer.mergeAll(PtyHost.layer, AgentReadiness.layer, Logger.minimumLogLevel(LogLevel.None)).pipe(
    Layer.provideMerge(EventLog.layer)
  )
  const readyMs = []
  const lagMs = []
  for (let run = 0; run < runs; run++) {
    const program = Effect.gen(function*() {
      const host = yield* PtyHost.PtyHost
      const readiness = yield* AgentReadiness.AgentReadiness
      const startedAt = performance.now()
      const pty = yield* host.spawn({
        command: process.execPath,
        args: [standin],
        env: { ...process.env, STANDIN_DEAF_MS: "300", STANDIN_DIR: process.env.TMPDIR ?? "/tmp", RELAY_AGENT_NAME: `bench-${run}` },
        cols: 120,
        rows: 40
      })
      let promptAt
      yield* Effect.forkScoped(Stream.runForEach(pty.output, (chunk) =>
        Effect.sync(() => {
          if (promptAt === undefined && chunk.includes("\x1b[?2004h")) promptAt = performance.now()
        })))
      const handle = yield* readiness.track({ name: `bench-${run}`, cli: "claude", pty, profile: readinessProfile("claude") })
      yield* handle.start
      const ready = yield* handle.awaitReady
      const readyAt = performance.now()
      if (ready.decidedBy !== "screen") throw new Error(`the stand-in was let through by ${ready.decidedBy}, not its screen`)
      readyMs.push(readyAt - startedAt)
      if (promptAt !== undefined) lagMs.push(readyAt - promptAt)
    })
    await Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(services)))
  }
  return { spawnToReadyMs: median(readyMs), afterPromptMs: median(lagMs), runs }
}

const emulatorCost = async ({ root, agents, mbPerAgent }) => {
  const { loadEmulator, makeScreen } = await importDist(root, "broker/TerminalScreen.js")
  const emulator = await loadEmulator()
  const output = tuiOutput(1024 * 1024)
  // The emulator keeps its rows in typed arrays: counted in `external`, not in `heapUsed`.
  const used = () => {
    const memory = process.memoryUsage()
    return memory.heapUsed + memory.external
  }
  gc()
  const heapBefore = used()
  const cpuBefore = process.cpuUsage()
  const screens = []
  for (let i = 0; i < agents; i++) {
    const screen = makeScreen(emulator, { cols: 120, rows: 40 })
    for (let mb = 0; mb < mbPerAgent; mb++) {
      // In PTY-sized chunks, as node-pty delivers them.
      for (let at = 0; at < output.length; at += 4096) screen.write(output.slice(at, at + 4096))
    }
    await screen.settled()
    screen.view()
    screens.push(screen)
  }
  const cpu = process.cpuUsage(cpuBefore)
  gc()
  const heapAfter = used()
  for (const screen of screens) screen.dispose()
  return {
    cpuMsPerMb: (cpu.user + cpu.system) / 1000 / (agents * mbPerAgent),
    heapMbPerAgent: (heapAfter - heapBefore) / agents / 2 ** 20,
    agents,
    mbPerAgent
  }
}

export const runReadiness = async ({ root, quick }) => {
  const { Effect, Layer } = await import("effect")
  const ready = await spawnToReady({ root, runs: quick ? 3 : 10, Effect, Layer })
  const emulator = await emulatorCost({ root, agents: quick ? 5 : 20, mbPerAgent: quick ? 1 : 4 })
  return { ...ready, emulator }
}
