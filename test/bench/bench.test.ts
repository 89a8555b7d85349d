// The benchmark's own parts: its statistics and table, the sink agent in a real terminal, and a
// smoke run of the quick micro benchmark. Figures are never asserted, only that they are produced.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import pty from "node-pty"

const root = fileURLToPath(new URL("../..", import.meta.url))
// Plain ESM scripts without type declarations: imported through a variable, typed here.
const importScript = (path: string): Promise<any> => import(join(root, path))

interface Summary {
  readonly n: number
  readonly p50?: number
  readonly p90?: number
  readonly p99?: number
  readonly max?: number
  readonly mean?: number
}

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "bench-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("bench statistics", () => {
  it.live("nearest-rank percentiles of 1..100, and nothing for no samples", () =>
    Effect.gen(function*() {
      const { summarize } = yield* Effect.promise(() => importScript("scripts/bench/lib/stats.mjs"))
      const samples = Array.from({ length: 100 }, (_, i) => 100 - i)
      const summary: Summary = summarize(samples)
      assert.deepStrictEqual(
        { n: summary.n, p50: summary.p50, p90: summary.p90, p99: summary.p99, max: summary.max, mean: summary.mean },
        { n: 100, p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 }
      )
      assert.deepStrictEqual(summarize([]), { n: 0 })
    }))

  it.live("the table shows n/a for a missing peer figure and the ratio as how many times better we are", () =>
    Effect.gen(function*() {
      const { renderTable, ratioOf } = yield* Effect.promise(() => importScript("scripts/bench/lib/table.mjs"))
      assert.strictEqual(ratioOf({ us: 2, upstream: 200 }), 100)
      assert.strictEqual(ratioOf({ us: 5000, upstream: 250, higherIsBetter: true }), 20)
      assert.strictEqual(ratioOf({ us: 2, upstream: undefined }), undefined)
      const text: string = renderTable([
        { label: "latency p50", unit: "ms", us: 1.5, upstream: 180, goal: "≤ 5 ms" },
        { label: "startup", unit: "ms", us: 120, upstream: undefined },
        { label: "micro", unit: "ops/s", us: 12345, peer: false, higherIsBetter: true }
      ])
      const [header, , latency, startup, micro] = text.split("\n")
      assert.match(header!, /^figure\s+us\s+upstream\s+ratio\s+goal$/)
      assert.match(latency!, /^latency p50\s+1\.50 ms\s+180 ms\s+120×\s+≤ 5 ms$/)
      assert.match(startup!, /^startup\s+120 ms\s+n\/a\s+n\/a$/)
      assert.match(micro!, /^micro\s+12,345 ops\/s\s+—$/)
    }))
})

describe("sink agent", () => {
  it.scopedLive("records every line typed into its terminal, with the bench mark it carries", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = join(dir, "sink.jsonl")
      const term = yield* Effect.acquireRelease(
        Effect.sync(() =>
          pty.spawn(process.execPath, [join(root, "scripts", "sink-agent.mjs"), "--out", out, "--watch-pid", String(process.pid)], {
            cols: 120,
            rows: 30,
            env: { ...process.env, RELAY_AGENT_NAME: "sink-a" }
          })
        ),
        (term) => Effect.sync(() => term.kill())
      )
      const output: Array<string> = []
      term.onData((data) => output.push(data))
      // The prompt means the agent is reading.
      yield* waitUntil(() => output.join("").includes("sink> "))
      const typed = ["Relay message from bob [ws / 42]: bench#m-1 hello", "second line without a mark", "bench#m.2 again"]
      for (const line of typed) term.write(`${line}\r`)
      yield* waitUntil(() => readLines(out).length >= 3)
      const lines = readLines(out)
      assert.deepStrictEqual(
        lines.map((entry) => ({ agent: entry.agent, mark: entry.mark, len: entry.len })),
        [
          { agent: "sink-a", mark: "m-1", len: typed[0]!.length },
          { agent: "sink-a", mark: undefined, len: typed[1]!.length },
          { agent: "sink-a", mark: "m.2", len: typed[2]!.length }
        ]
      )
      assert.isTrue(lines.every((entry) => typeof entry.t === "number" && entry.t > 1.6e12))
      assert.isTrue(lines[0]!.t <= lines[1]!.t && lines[1]!.t <= lines[2]!.t)
    }))
})

describe("npm run bench", () => {
  it.scopedLive("the quick micro benchmark runs and writes its figures as JSON", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = join(dir, "result.json")
      const { stdout } = yield* Effect.promise(() => run(["--quick", "--only", "micro", "--out", out]))
      assert.match(stdout, /micro: wire decode\+encode of deliver/)
      assert.match(stdout, /machine: \d+ cores/)
      const result = JSON.parse(readFileSync(out, "utf8"))
      assert.strictEqual(result.quick, true)
      const wire = result.rows.find((row: { label: string }) => row.label.startsWith("micro: wire"))
      assert.strictEqual(typeof wire.us, "number")
    }))
})

interface SinkEntry {
  readonly t: number
  readonly agent: string
  readonly len: number
  readonly mark?: string
}

const readLines = (path: string): Array<SinkEntry> => {
  try {
    return readFileSync(path, "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as SinkEntry)
  } catch {
    return []
  }
}

/** Polls `condition` every 20 ms for up to 10 s; dies if it never holds. */
const waitUntil = (condition: () => boolean) =>
  Effect.suspend(() => (condition() ? Effect.void : Effect.fail("not yet"))).pipe(
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(500)))),
    Effect.orDieWith(() => new Error("condition not met within 10 s"))
  )

const run = (args: ReadonlyArray<string>) =>
  new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile(process.execPath, [join(root, "scripts", "bench", "run.mjs"), ...args], { cwd: root, timeout: 60_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve({ stdout, stderr })
    )
  })
