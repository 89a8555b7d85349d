#!/usr/bin/env node
// `npm run bench [-- --quick] [--no-upstream] [--upstream-bin <path>] [--only a,b] [--brokers us,upstream] [--keep]`
//
// Runs the same workloads against our broker and the upstream Rust broker v9.1.6, each on a fresh
// embedded engine (a separate process on loopback), prints one table (us / upstream / ratio), and
// writes bench-results/latest.json. Figures are printed, never asserted. The upstream column is
// "n/a" when the peer cannot be installed or run. See scripts/bench/README.md.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs"
import os from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { startBroker } from "./lib/brokers.mjs"
import { engineClient, startEngine } from "./lib/engine.mjs"
import { closeHttp } from "./lib/http.mjs"
import { installCleanup, isAborting, sleep, stopAll } from "./lib/procs.mjs"
import { listProcesses, treeCpuMs } from "./lib/proctree.mjs"
import { renderTable } from "./lib/table.mjs"
import { ensureUpstream } from "./lib/upstream.mjs"
import { makeFleet, warmUp } from "./workloads/fleet.mjs"
import { runLatency } from "./workloads/latency.mjs"
import { microDecisions, microWire } from "./workloads/micro.mjs"
import { runStartup } from "./workloads/startup.mjs"
import { runCli } from "./workloads/cli.mjs"
import { runReadiness } from "./workloads/readiness.mjs"
import { runMcp } from "./workloads/mcp.mjs"
import { runFixedRate, runThroughput } from "./workloads/throughput.mjs"

const root = fileURLToPath(new URL("../..", import.meta.url))
const argv = process.argv.slice(2)
const flag = (name) => argv.includes(name)
const option = (name) => {
  const at = argv.indexOf(name)
  return at >= 0 ? argv[at + 1] : undefined
}
const quick = flag("--quick")
// The relay-broker entry point to measure (`engine` and `up`); another build can be compared with --main.
const entry = resolve(option("--main") ?? join(root, "dist", "main.js"))
const WORKLOADS = ["micro", "readiness", "mcp", "startup", "cli", "latency", "memory", "throughput", "cpu"]
// Workloads that run in this process, without a broker.
const IN_PROCESS = ["micro", "readiness", "mcp"]
const only = option("--only")?.split(",") ?? WORKLOADS
const wants = (name) => only.includes(name)
const brokers = option("--brokers")?.split(",") ?? ["us", "upstream"]

const settings = quick
  ? { agents: 10, latencyCount: 30, latencyWarmup: 3, perMessageTimeoutMs: 5000, rates: [50, 200, 800], stepMs: 2000, fixedRate: 1000, fixedStepMs: 3000, cliRuns: 3, mcpRuns: 3, drainMs: 2000, startupRuns: 3, microMs: 300, idleSettleMs: 300, installTimeoutMs: 15000 }
  : { agents: 50, latencyCount: 1000, latencyWarmup: 20, perMessageTimeoutMs: 10000, rates: [50, 100, 200, 400, 800, 1600, 3200, 6400, 12800], stepMs: 30000, fixedRate: 1000, fixedStepMs: 20000, cliRuns: 10, mcpRuns: 10, drainMs: 5000, startupRuns: 10, microMs: 2000, idleSettleMs: 2000, installTimeoutMs: 120000 }
if (option("--agents")) settings.agents = Number(option("--agents"))
if (option("--messages")) settings.latencyCount = Number(option("--messages"))
if (option("--step-seconds")) settings.stepMs = Number(option("--step-seconds")) * 1000
if (option("--rates")) settings.rates = option("--rates").split(",").map(Number)
const DM_SHARE = 0.1
// A throughput step only counts as sustained if its p99 latency stays under this (no growing backlog).
const LATENCY_BOUND_MS = 1000
// Channel traffic goes to #general: the engine joins every agent registered through a node to it, so
// both brokers' agents are members (upstream does not join agents to the channels named at spawn).
const CHANNEL = "general"

const log = (line) => console.error(`[bench] ${line}`)
const errorText = (error) => (error instanceof Error ? error.message : String(error))

const machine = () => {
  const cpus = os.cpus()
  return {
    cores: cpus.length,
    cpu: cpus[0]?.model?.trim() ?? "unknown",
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2)))
  }
}

/** Runs one workload, recording its result or its error; never throws. */
const attempt = async (bucket, name, fn) => {
  try {
    bucket.results[name] = await fn()
  } catch (error) {
    bucket.errors[name] = errorText(error)
    log(`${bucket.kind} ${name} failed: ${errorText(error)}`)
  }
}

/** Every workload that needs a broker, for one kind, on its own engine. */
const runKind = async (kind, { binary, runDir }) => {
  const bucket = { kind, results: {}, errors: {}, notes: [] }
  const dir = join(runDir, kind)
  const logDir = join(dir, "logs")
  mkdirSync(logDir, { recursive: true })
  const deliverLog = join(dir, "engine-deliver.jsonl")
  let engineProc
  try {
    log(`${kind}: starting the engine`)
    const started = await startEngine({ entry, dataDir: join(dir, "engine-data"), deliverLog, logDir })
    engineProc = started.proc
    const engine = engineClient(started.url)
    if (wants("startup")) {
      // Its own workspace, so that the startup brokers' identities do not join the session's #general.
      const startupKey = (await engine.createWorkspace(`bench-${kind}-startup`)).api_key
      log(`${kind}: startup × ${settings.startupRuns}`)
      await attempt(bucket, "startup", () =>
        runStartup(kind, { runs: settings.startupRuns, entry, binary, engine, workspaceKey: startupKey, dir: join(dir, "startup"), logDir })
      )
    }
    const workspaceKey = (await engine.createWorkspace(`bench-${kind}`)).api_key
    const sender = await engine.registerAgent(workspaceKey, "bench-sender")
    if (!["cli", "latency", "memory", "throughput", "cpu"].some(wants)) return bucket

    let broker
    try {
      log(`${kind}: starting the broker`)
      broker = await startBroker(kind, { entry, binary, engine, workspaceKey, name: `bench-${kind}`, stateDir: join(dir, "broker"), logDir })
    } catch (error) {
      for (const name of ["cli", "latency", "memory", "throughput", "cpu"]) if (wants(name)) bucket.errors[name] = `broker did not start: ${errorText(error)}`
      log(`${kind}: broker did not start: ${errorText(error)}`)
      return bucket
    }
    const memory = {}
    const fleet = makeFleet({ broker, root, dir: join(dir, "agents") })
    mkdirSync(join(dir, "agents"), { recursive: true })
    try {
      await sleep(settings.idleSettleMs)
      memory.idle = broker.memory()

      const names = Array.from({ length: settings.agents }, (_, i) => `sink-${i}`)
      log(`${kind}: spawning ${names[0]}`)
      await fleet.spawn(names.slice(0, 1), { channels: [CHANNEL] })
      await warmUp({ fleet, engine, sender, tag: "w0", timeoutMs: 30000 })

      if (wants("cli") && kind === "us") {
        log(`${kind}: cli \`agents\` × ${settings.cliRuns}`)
        await attempt(bucket, "cli", () => runCli({ entry, broker, runs: settings.cliRuns, env: process.env }))
      }

      if (wants("latency")) {
        log(`${kind}: latency, ${settings.latencyCount} DMs one at a time`)
        await attempt(bucket, "latency", () =>
          runLatency({ fleet, engine, sender, agent: names[0], count: settings.latencyCount, warmup: settings.latencyWarmup, perMessageTimeoutMs: settings.perMessageTimeoutMs, deliverLog })
        )
      }
      if (!["memory", "throughput", "cpu"].some(wants)) return bucket

      log(`${kind}: spawning ${names.length - 1} more agents`)
      await fleet.spawn(names.slice(1), { channels: [CHANNEL] })
      await warmUp({ fleet, engine, sender, tag: "w1", timeoutMs: 60000 })
      await sleep(settings.idleSettleMs)
      memory.withAgents = { agents: names.length, ...broker.memory() }

      if (wants("throughput")) {
        const members = new Set(((await engine.channel(sender.token, CHANNEL))?.members ?? []).map((m) => m.agent_name ?? m.name))
        const inChannel = names.every((name) => members.has(name))
        if (!inChannel) bucket.notes.push(`not every agent is a member of #${CHANNEL}; throughput used DMs only`)
        log(`${kind}: throughput, ${names.length} agents, ${inChannel ? `#${CHANNEL} + DMs` : "DMs only"}`)
        await attempt(bucket, "throughput", () =>
          runThroughput({ fleet, engine, engineCpuMs: () => treeCpuMs(engineProc.pid, () => false), sender, broker, channel: inChannel ? CHANNEL : undefined, rates: settings.rates, stepMs: settings.stepMs, drainMs: settings.drainMs, dmShare: DM_SHARE, latencyBoundMs: LATENCY_BOUND_MS, deliverLog, log })
        )
        if (bucket.results.throughput?.best?.rate === settings.rates.at(-1)) {
          bucket.notes.push(`every rate up to ${settings.rates.at(-1)} deliveries/s was sustained: the ladder's top, not a limit`)
        }
      }
      if (wants("cpu")) {
        log(`${kind}: CPU per delivery at a fixed ${settings.fixedRate} deliveries/s`)
        await attempt(bucket, "cpu", () =>
          runFixedRate({ fleet, engine, engineCpuMs: () => treeCpuMs(engineProc.pid, () => false), sender, broker, channel: CHANNEL, rate: settings.fixedRate, stepMs: settings.fixedStepMs, drainMs: settings.drainMs, dmShare: DM_SHARE, latencyBoundMs: LATENCY_BOUND_MS, deliverLog, log })
        )
      }
      if (wants("throughput") || wants("cpu")) {
        memory.afterThroughput = broker.memory()
        try {
          memory.afterThroughputGc = await broker.memoryAfterGc()
        } catch (error) {
          bucket.notes.push(`RSS after GC: ${errorText(error)}`)
        }
      }
      bucket.results.memory = memory
    } catch (error) {
      bucket.errors.session = errorText(error)
      if (Object.keys(memory).length > 0) bucket.results.memory = memory
      log(`${kind}: ${errorText(error)}`)
    } finally {
      fleet.close()
      await broker.stop()
    }
  } catch (error) {
    bucket.errors.setup = errorText(error)
    log(`${kind}: ${errorText(error)}`)
  } finally {
    await engineProc?.stop()
  }
  return bucket
}

const rowsOf = (us, upstream, micro) => {
  const pick = (bucket, path) => path.split(".").reduce((value, key) => (value === undefined || value === null ? undefined : value[key]), bucket?.results)
  const n = settings.agents
  const row = (label, unit, path, extra = {}) => ({ label, unit, us: pick(us, path), upstream: upstream ? pick(upstream, path) : undefined, ...extra })
  const throughputBest = (bucket) => {
    const t = bucket?.results.throughput
    if (!t) return undefined
    return t.best ? t.best.rate : `< ${settings.rates[0]}`
  }
  const rows = []
  if (wants("latency")) {
    for (const q of ["p50", "p90", "p99", "max"]) rows.push(row(`latency ${q} (send → agent reads)`, "ms", `latency.endToEnd.${q}`, q === "p50" ? { goal: "≤ 5 ms" } : {}))
    rows.push(row("broker overhead p50 (deliver frame → read)", "ms", "latency.overhead.p50", { goal: "≤ 2 ms" }))
    rows.push(row("broker overhead p99", "ms", "latency.overhead.p99", { goal: "≤ 10 ms" }))
    rows.push(row("  engine part p50 (send → deliver frame)", "ms", "latency.enginePart.p50"))
  }
  if (wants("throughput")) {
    rows.push({ label: `throughput sustained, ${n} agents (deliveries/s)`, unit: "msg/s", us: throughputBest(us), upstream: upstream ? throughputBest(upstream) : undefined, higherIsBetter: true, goal: "≥ 3,000/s" })
    rows.push(row("  latency p50 at that rate", "ms", "throughput.best.latency.p50"))
    rows.push(row("  latency p99 at that rate", "ms", "throughput.best.latency.p99"))
    rows.push(row("  broker part p99 (frame → read)", "ms", "throughput.best.brokerLatency.p99"))
    rows.push(row("  broker CPU per 1,000 deliveries", "ms", "throughput.best.brokerCpuMsPer1000"))
    rows.push(row("  engine CPU per 1,000 deliveries", "ms", "throughput.best.engineCpuMsPer1000"))
  }
  if (wants("memory") || wants("throughput")) {
    rows.push(row("broker RSS idle", "MB", "memory.idle.selfMb", { goal: "≤ 70 MB" }))
    rows.push(row(`broker RSS with ${n} agents`, "MB", "memory.withAgents.selfMb", { goal: "≤ 150 MB" }))
    rows.push(row(`  per-agent helper processes, ${n} agents`, "MB", "memory.withAgents.helpersMb"))
    const withHelpers = (bucket) => {
      const m = bucket?.results.memory?.withAgents
      return m?.selfMb === undefined ? undefined : m.selfMb + m.helpersMb
    }
    rows.push({ label: `  broker + helpers, ${n} agents`, unit: "MB", us: withHelpers(us), upstream: upstream ? withHelpers(upstream) : undefined })
    rows.push(row(`  the ${n} agents themselves (same program)`, "MB", "memory.withAgents.agentsMb"))
    if (wants("throughput") || wants("cpu")) {
      rows.push(row("broker RSS after throughput", "MB", "memory.afterThroughput.selfMb"))
      rows.push(row("  the same after a full GC", "MB", "memory.afterThroughputGc.selfMb", { goal: "≤ 110 MB" }))
    }
  }
  if (wants("cpu")) {
    rows.push(row(`broker CPU per delivery at ${settings.fixedRate}/s`, "ms", "cpu.brokerCpuMsPerDelivery", { goal: "≤ 0.25 ms" }))
    rows.push(row(`engine CPU per delivery at ${settings.fixedRate}/s`, "ms", "cpu.engineCpuMsPerDelivery", { goal: "≤ 0.25 ms" }))
  }
  if (wants("cli")) {
    rows.push({ label: "CLI `agents`: exec → exit (median)", unit: "ms", us: us?.results.cli?.wallMs, peer: false, goal: "≤ 120 ms" })
    rows.push({ label: "CLI `agents`: peak RSS", unit: "MB", us: us?.results.cli?.peakRssMb, peer: false, goal: "≤ 50 MB" })
  }
  if (wants("mcp")) {
    rows.push({ label: "tool server `mcp`: exec → initialize answered (median)", unit: "ms", us: micro.mcp?.initializeMs, peer: false, goal: "≤ 200 ms" })
    rows.push({ label: "tool server `mcp`: peak RSS", unit: "MB", us: micro.mcp?.peakRssMb, peer: false, goal: "≤ 50 MB" })
    rows.push({ label: "tool server `mcp`: peak RSS after its first tool call", unit: "MB", us: micro.mcp?.afterCallRssMb, peer: false, goal: "≤ 50 MB" })
  }
  if (wants("startup")) {
    rows.push(row("startup: exec → API listening (median)", "ms", "startup.listeningMs", { goal: "≤ 200 ms" }))
    rows.push(row("startup: exec → node online (median)", "ms", "startup.onlineMs"))
  }
  if (wants("micro")) {
    rows.push({ label: "micro: wire decode+encode of deliver", unit: "ops/s", us: micro.wire, peer: false, higherIsBetter: true })
    rows.push({ label: "micro: DeliveryBook decision (step)", unit: "ops/s", us: micro.decisions, peer: false, higherIsBetter: true })
  }
  if (wants("readiness")) {
    const r = micro.readiness
    rows.push({ label: "stand-in TUI: spawn → ready (prompt drawn at ~300 ms + node boot)", unit: "ms", us: r?.spawnToReadyMs, peer: false, goal: "< 25,000 ms (upstream fallback)" })
    rows.push({ label: "  readiness decided after its prompt arrived", unit: "ms", us: r?.afterPromptMs, peer: false })
    rows.push({ label: "terminal emulator CPU per MB of TUI output", unit: "ms", us: r?.emulator.cpuMsPerMb, peer: false })
    rows.push({ label: "terminal emulator memory per agent (1,000 lines scrollback)", unit: "MB", us: r?.emulator.heapMbPerAgent, peer: false })
  }
  return rows
}

const run = async () => {
  installCleanup()
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` (npm run bench does it for you)`)
  const runDir = mkdtempSync(join(os.tmpdir(), "relay-bench-"))
  const loadavgAtStart = machine().loadavg
  const startedAt = new Date()
  log(`${quick ? "quick" : "full"} run in ${runDir}`)
  const micro = {}
  const microErrors = {}
  let us
  let upstream
  let upstreamInfo
  try {
    if (wants("micro")) {
      log("micro benchmarks")
      try {
        micro.wire = await microWire({ root, durationMs: settings.microMs })
      } catch (error) {
        microErrors.wire = errorText(error)
      }
      try {
        micro.decisions = await microDecisions({ root, durationMs: settings.microMs })
        if (micro.decisions === undefined) microErrors.decisions = "dist/broker/deliveryDecisions.js not built (or its API differs)"
      } catch (error) {
        microErrors.decisions = errorText(error)
      }
    }
    if (wants("readiness")) {
      log("readiness: spawn → ready, emulator cost")
      try {
        micro.readiness = await runReadiness({ root, quick })
      } catch (error) {
        microErrors.readiness = errorText(error)
      }
    }
    if (wants("mcp")) {
      log(`mcp: the agent tool server, exec → initialize × ${settings.mcpRuns}`)
      try {
        micro.mcp = await runMcp({ entry, runs: settings.mcpRuns })
      } catch (error) {
        microErrors.mcp = errorText(error)
      }
    }
    const needsBrokers = WORKLOADS.some((w) => !IN_PROCESS.includes(w) && wants(w))
    if (needsBrokers) {
      upstreamInfo = flag("--no-upstream") || !brokers.includes("upstream")
        ? { reason: "--no-upstream" }
        : await ensureUpstream({ root, explicit: option("--upstream-bin"), installTimeoutMs: settings.installTimeoutMs })
      if (upstreamInfo.reason) log(`upstream: n/a (${upstreamInfo.reason})`)
      else log(`upstream: ${upstreamInfo.version} at ${upstreamInfo.binary}`)
      if (brokers.includes("us")) us = await runKind("us", { runDir })
      if (upstreamInfo.binary && brokers.includes("upstream")) upstream = await runKind("upstream", { binary: upstreamInfo.binary, runDir })
    }
  } finally {
    await stopAll()
    // Anything still alive that was started with a path inside the run folder (agents re-parented
    // after their broker died) is ours: stop it by pid.
    for (const p of listProcesses()) {
      if (p.pid !== process.pid && p.cmd.includes(runDir)) {
        try {
          process.kill(p.pid, "SIGKILL")
        } catch {
          // Gone.
        }
      }
    }
    closeHttp()
    if (flag("--keep")) log(`kept ${runDir}`)
    else rmSync(runDir, { recursive: true, force: true })
  }

  if (isAborting()) return 130
  const rows = rowsOf(us, upstream, micro)
  const info = { ...machine(), loadavgAtStart }
  console.log("")
  console.log(renderTable(rows))
  console.log("")
  console.log("ratio = how many times better we are: upstream ÷ us for times and memory, us ÷ upstream for rates.")
  console.log(`machine: ${info.cores} cores (${info.cpu}), Node ${info.node}, ${info.platform}, ${info.memoryGb} GB RAM, load ${loadavgAtStart[0]} at start / ${info.loadavg[0]} at end; ${quick ? "quick run" : "full run"}; upstream ${upstreamInfo?.version ?? `n/a (${upstreamInfo?.reason ?? "not run"})`}`)
  const errors = { us: us?.errors ?? {}, upstream: upstream?.errors ?? {}, micro: microErrors }
  for (const [kind, list] of Object.entries(errors)) for (const [name, text] of Object.entries(list)) console.log(`note: ${kind} ${name}: ${text.length > 400 ? `${text.slice(0, 400)}…` : text}`)
  for (const bucket of [us, upstream]) for (const note of bucket?.notes ?? []) console.log(`note: ${bucket.kind}: ${note}`)

  const resultsDir = join(root, "bench-results")
  mkdirSync(resultsDir, { recursive: true })
  const out = option("--out") ?? join(resultsDir, "latest.json")
  writeFileSync(
    out,
    `${JSON.stringify({ date: startedAt.toISOString(), quick, settings, machine: info, upstream: upstreamInfo ?? null, rows, results: { us: us ?? null, upstream: upstream ?? null, micro }, errors }, null, 2)}\n`
  )
  console.log(`results: ${out}`)
  // The run fails only when our own side could not run; the upstream column may always be n/a.
  return Object.keys(errors.us).length + Object.keys(microErrors).filter((k) => k === "wire" || k === "mcp").length === 0 ? 0 : 1
}

run().then(
  (code) => process.exit(code),
  async (error) => {
    console.error(`bench: ${error instanceof Error ? error.stack : error}`)
    await stopAll()
    process.exit(1)
  }
)
