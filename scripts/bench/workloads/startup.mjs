// Workload 5: exec → `API listening` line → node online in the engine, median of N cold starts
// (each with a fresh state dir, so no cached node token).
import { join } from "node:path"
import { measureStartup } from "../lib/brokers.mjs"
import { median } from "../lib/stats.mjs"

export const runStartup = async (kind, { runs, entry, binary, engine, workspaceKey, dir, logDir }) => {
  const samples = []
  for (let i = 0; i < runs; i++) {
    const name = `startup-${kind}-${i}`
    samples.push(await measureStartup(kind, { entry, binary, engine, workspaceKey, name, stateDir: join(dir, name), logDir }))
  }
  return {
    runs,
    listeningMs: median(samples.map((s) => s.listeningMs)),
    onlineMs: median(samples.map((s) => s.onlineMs)),
    samples
  }
}
