// Every process the benchmark starts goes through here, so that all of them, and everything they
// started (agents live in their own terminal sessions), are killed at the end, even on error.
import { spawn } from "node:child_process"
import { createWriteStream } from "node:fs"
import { performance } from "node:perf_hooks"
import { listProcesses, processTree } from "./proctree.mjs"

export const now = () => performance.timeOrigin + performance.now()
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const running = new Set()

/**
 * Starts `command args` with piped output. Returns a handle:
 * `waitForLine(regex, timeoutMs)` resolves with `{ match, at }` (`at`: when the line was read),
 * `stop()` kills its whole process tree, `exited` settles when it ends.
 */
export const start = (label, command, args, { env = process.env, cwd, logFile } = {}) => {
  const startedAt = now()
  const child = spawn(command, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] })
  const log = logFile ? createWriteStream(logFile, { flags: "a" }) : undefined
  const lines = []
  const waiters = new Set()
  let exitInfo

  const onLine = (stream, line) => {
    const at = now()
    lines.push({ stream, line, at })
    if (lines.length > 500) lines.shift()
    log?.write(`${stream}: ${line}\n`)
    for (const waiter of waiters) waiter(line, at)
  }
  for (const [name, stream] of [["stdout", child.stdout], ["stderr", child.stderr]]) {
    let pending = ""
    stream.setEncoding("utf8")
    stream.on("data", (chunk) => {
      pending += chunk
      let newline = pending.indexOf("\n")
      while (newline >= 0) {
        onLine(name, pending.slice(0, newline).replace(/\r$/, ""))
        pending = pending.slice(newline + 1)
        newline = pending.indexOf("\n")
      }
    })
  }

  const exited = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exitInfo = { code, signal }
      running.delete(handle)
      log?.end()
      resolve(exitInfo)
    })
    child.on("error", (error) => {
      exitInfo = { code: null, signal: null, error }
      running.delete(handle)
      resolve(exitInfo)
    })
  })

  const waitForLine = (pattern, timeoutMs) =>
    new Promise((resolve, reject) => {
      for (const { line, at } of lines) {
        const match = pattern.exec(line)
        if (match) return resolve({ match, at })
      }
      const done = (fn) => {
        clearTimeout(timer)
        waiters.delete(waiter)
        fn()
      }
      const waiter = (line, at) => {
        const match = pattern.exec(line)
        if (match) done(() => resolve({ match, at }))
      }
      const timer = setTimeout(() => done(() => reject(new Error(`${label}: no line matching ${pattern} within ${timeoutMs} ms${tail()}`))), timeoutMs)
      waiters.add(waiter)
      exited.then((info) => done(() => reject(new Error(`${label} exited (${JSON.stringify(info)}) before printing ${pattern}${tail()}`))))
    })

  const tail = () => (lines.length === 0 ? "" : `; last output:\n  ${lines.slice(-8).map((l) => l.line).join("\n  ")}`)

  const handle = {
    label,
    pid: child.pid,
    startedAt,
    exited,
    lines,
    waitForLine,
    isRunning: () => exitInfo === undefined,
    stop: (graceMs = 3000) => killTree(child.pid, exited, graceMs)
  }
  running.add(handle)
  return handle
}

const signalAll = (pids, signal) => {
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // Already gone.
    }
  }
}

const alive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** SIGTERM to the process and every descendant (found before any dies), then SIGKILL after the grace. */
export const killTree = async (pid, exited, graceMs = 3000) => {
  if (pid === undefined) return
  const pids = processTree(pid, listProcesses()).map((p) => p.pid)
  if (pids.length === 0) return
  signalAll(pids, "SIGTERM")
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline && pids.some(alive)) await sleep(50)
  signalAll(pids.filter(alive), "SIGKILL")
  if (exited) await Promise.race([exited, sleep(1000)])
}

/** Kills everything still running. Safe to call more than once. */
export const stopAll = async () => {
  await Promise.all([...running].map((handle) => handle.stop(2000)))
}

/** Synchronous last resort (process exit): SIGKILL every tracked tree. */
const killAllNow = () => {
  const processes = listProcesses()
  for (const handle of running) signalAll(processTree(handle.pid, processes).map((p) => p.pid), "SIGKILL")
}

let installed = false
let aborting = false
/** True once Ctrl-C (or another stop signal) arrived: the run's figures are incomplete. */
export const isAborting = () => aborting
/** Kill every started process on exit, Ctrl-C, or a crash. */
export const installCleanup = () => {
  if (installed) return
  installed = true
  process.on("exit", killAllNow)
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => {
      aborting = true
      console.error(`\nbench: ${signal}, stopping every process it started`)
      stopAll().finally(() => process.exit(130))
    })
  }
}
