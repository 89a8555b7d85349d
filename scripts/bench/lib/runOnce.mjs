// One short-lived command, to completion: its wall time (exec → exit) and its peak RSS.
// The peak comes from GNU time (`/usr/bin/time -f %M`, the kernel's maxrss of the child) when it is
// there; without it the RSS is undefined and only the wall time is reported.
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import os from "node:os"
import { join } from "node:path"
import { now } from "./procs.mjs"

const GNU_TIME = "/usr/bin/time"
const hasGnuTime = existsSync(GNU_TIME)

/** Resolves with `{ wallMs, peakRssMb, code, stdout, stderr }`; rejects only when it cannot start or times out. */
export const runOnce = (command, args, { env = process.env, cwd, timeoutMs = 30000 } = {}) =>
  new Promise((resolve, reject) => {
    const scratch = hasGnuTime ? mkdtempSync(join(os.tmpdir(), "relay-bench-time-")) : undefined
    const timeFile = scratch && join(scratch, "rss")
    const [file, argv] = hasGnuTime ? [GNU_TIME, ["-f", "%M", "-o", timeFile, command, ...args]] : [command, args]
    const startedAt = now()
    const child = spawn(file, argv, { env, cwd, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${command} ${args.join(" ")}: no exit within ${timeoutMs} ms`))
    }, timeoutMs)
    child.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on("exit", (code) => {
      const wallMs = now() - startedAt
      clearTimeout(timer)
      let peakRssMb
      if (timeFile) {
        const kb = Number(readFileSync(timeFile, "utf8").trim().split("\n").at(-1))
        if (Number.isFinite(kb) && kb > 0) peakRssMb = kb / 1024
        rmSync(scratch, { recursive: true, force: true })
      }
      resolve({ wallMs, peakRssMb, code, stdout, stderr })
    })
  })
