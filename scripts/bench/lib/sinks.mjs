// Reading what the sink agents (scripts/sink-agent.mjs) recorded: one JSON line per line they read.
import { closeSync, existsSync, openSync, readSync, statSync, watch } from "node:fs"

/**
 * Follows a growing JSON-lines file. `poll()` reads what was appended since the last call and hands
 * each parsed entry to `onEntry`. `waitFor(predicate, timeoutMs)` polls (on file change, and at
 * least every 20 ms) until the predicate holds; resolves true, or false on timeout.
 */
export const followJsonLines = (path, onEntry) => {
  let offset = 0
  let pending = ""
  const buffer = Buffer.alloc(1 << 16)
  const poll = () => {
    if (!existsSync(path)) return
    const size = statSync(path).size
    if (size <= offset) return
    const fd = openSync(path, "r")
    try {
      while (offset < size) {
        const read = readSync(fd, buffer, 0, Math.min(buffer.length, size - offset), offset)
        if (read <= 0) break
        offset += read
        pending += buffer.toString("utf8", 0, read)
      }
    } finally {
      closeSync(fd)
    }
    let newline = pending.indexOf("\n")
    while (newline >= 0) {
      const line = pending.slice(0, newline)
      pending = pending.slice(newline + 1)
      if (line.length > 0) {
        try {
          onEntry(JSON.parse(line))
        } catch {
          // A torn line cannot happen with the sink's single writes; skip anything unreadable.
        }
      }
      newline = pending.indexOf("\n")
    }
  }
  let watcher
  const waiters = new Set()
  const wake = () => {
    poll()
    for (const waiter of waiters) waiter()
  }
  const ensureWatcher = () => {
    if (watcher === undefined && existsSync(path)) {
      try {
        watcher = watch(path, wake)
      } catch {
        watcher = null
      }
    }
  }
  const waitFor = (predicate, timeoutMs) =>
    new Promise((resolve) => {
      poll()
      if (predicate()) return resolve(true)
      ensureWatcher()
      const finish = (result) => {
        clearTimeout(timer)
        clearInterval(ticker)
        waiters.delete(check)
        resolve(result)
      }
      const check = () => {
        if (predicate()) finish(true)
      }
      const ticker = setInterval(() => {
        ensureWatcher()
        wake()
      }, 20)
      const timer = setTimeout(() => finish(predicate()), timeoutMs)
      waiters.add(check)
    })
  const close = () => watcher?.close()
  return { poll, waitFor, close }
}

/** Every entry of a JSON-lines file (the whole file, read once). */
export const readJsonLines = (path) => {
  const entries = []
  followJsonLines(path, (entry) => entries.push(entry)).poll()
  return entries
}
