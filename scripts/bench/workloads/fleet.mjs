// The agents of a run: sink agents spawned through the broker's /api/spawn, each recording to its own file.
import { join } from "node:path"
import { followJsonLines } from "../lib/sinks.mjs"

/** Runs `fn` over `items` with at most `limit` at a time. */
export const mapLimit = async (items, limit, fn) => {
  const results = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await fn(items[index], index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}

/**
 * A set of sink agents on one broker. `received` maps `mark|agent` to the read times of that line,
 * fed by following every agent's file; `poll()` catches up, `waitFor()` waits on any file.
 */
export const makeFleet = ({ broker, root, dir }) => {
  const agents = []
  const received = new Map()
  const followers = []
  let lines = 0

  const follow = (name, file) => {
    const follower = followJsonLines(file, (entry) => {
      lines++
      if (entry.mark === undefined) return
      const key = `${entry.mark}|${name}`
      const times = received.get(key)
      if (times === undefined) received.set(key, [entry.t])
      else times.push(entry.t)
    })
    followers.push(follower)
  }

  const spawn = async (names, { channels = [] } = {}) => {
    await mapLimit(names, 4, async (name) => {
      const file = join(dir, `${name}.jsonl`)
      await broker.spawnAgent(name, {
        command: process.execPath,
        args: [join(root, "scripts", "sink-agent.mjs"), "--out", file, "--name", name, "--watch-pid", String(process.pid)],
        channels
      })
      agents.push({ name, file })
      follow(name, file)
    })
  }

  const poll = () => {
    for (const follower of followers) follower.poll()
  }

  /** Waits until `predicate()` holds, polling every agent's file; resolves true or false (timeout). */
  const waitFor = async (predicate, timeoutMs) => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      poll()
      if (predicate()) return true
      const remaining = deadline - Date.now()
      if (remaining <= 0) return false
      // The first follower's watcher wakes us early for single-agent waits; the cap keeps polling cheap.
      await (followers[0]?.waitFor(predicate, Math.min(remaining, 50)) ?? new Promise((r) => setTimeout(r, 50)))
    }
  }

  const first = (mark, name) => received.get(`${mark}|${name}`)?.[0]
  const count = (mark, name) => received.get(`${mark}|${name}`)?.length ?? 0
  const close = () => followers.forEach((f) => f.close())

  return { agents, spawn, poll, waitFor, first, count, received, close, lines: () => lines }
}

/** DMs every agent once and waits for every one to read it: proves each agent is bound and delivering. */
export const warmUp = async ({ fleet, engine, sender, tag, timeoutMs }) => {
  const names = fleet.agents.map((a) => a.name)
  await mapLimit(names, 8, (name) => engine.dm(sender.token, name, `bench#${tag}-${name} warm-up`))
  const ok = await fleet.waitFor(() => names.every((name) => fleet.count(`${tag}-${name}`, name) > 0), timeoutMs)
  if (!ok) {
    const missing = names.filter((name) => fleet.count(`${tag}-${name}`, name) === 0)
    throw new Error(`warm-up: ${missing.length} of ${names.length} agents never read their message (${missing.slice(0, 5).join(", ")}…)`)
  }
}
