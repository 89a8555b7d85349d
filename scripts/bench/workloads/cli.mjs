// Workload 7: a CLI client command against the running broker, as a user types it:
// `node dist/main.js agents --url <api> --api-key <key>`, N times, exec → exit and peak RSS.
// Ours only (upstream's CLI is a different program with its own startup); median of the runs.
import { median } from "../lib/stats.mjs"
import { runOnce } from "../lib/runOnce.mjs"

export const runCli = async ({ entry, broker, runs, env }) => {
  const samples = []
  for (let i = 0; i < runs; i++) {
    const result = await runOnce(process.execPath, [entry, "agents", "--url", broker.url, "--api-key", broker.apiKey], { env })
    if (result.code !== 0) throw new Error(`agents exited ${result.code}: ${result.stderr.trim().slice(0, 300)}`)
    samples.push({ wallMs: result.wallMs, peakRssMb: result.peakRssMb })
  }
  const rss = samples.map((s) => s.peakRssMb).filter((x) => x !== undefined)
  return {
    command: "agents",
    runs,
    wallMs: median(samples.map((s) => s.wallMs)),
    peakRssMb: rss.length === 0 ? undefined : median(rss),
    samples
  }
}
