import { execFile, execFileSync, spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Duration, Effect, Schedule, type Scope } from "effect"
import { stopChild } from "../support/processes.js"

// Runs the built `relay-broker` executable (dist/main.js) as a user would, and a real daemon for it.

export const root = fileURLToPath(new URL("../..", import.meta.url))
const main = join(root, "dist", "main.js")

/**
 * Builds dist/ only when it is missing. The run's globalSetup already brought it up to date; building
 * again here, in the middle of a run, would delete dist/bin/ under the other test files' daemons.
 */
export const ensureBuilt = () => {
  if (existsSync(main) && existsSync(join(root, "dist", "bin"))) return
  execFileSync("node", [join(root, "scripts", "ensure-ready.mjs")], { cwd: root, stdio: "ignore" })
}

/** The environment without anything that would point a command or a daemon elsewhere. */
export const cleanEnv = (extra: Record<string, string> = {}): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^(RELAY_|RELAYCAST_|AGENT_RELAY_)/.test(key)) env[key] = value
  }
  return { ...env, NO_COLOR: "1", ...extra }
}

export interface CliResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const stripAnsi = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "")

/** `relay-broker <args>`, to completion. */
export const cli = (args: ReadonlyArray<string>, options: { readonly cwd?: string; readonly env?: Record<string, string> } = {}) =>
  Effect.async<CliResult>((resume) => {
    const child = execFile("node", [main, ...args], {
      cwd: options.cwd ?? root,
      env: options.env ?? cleanEnv(),
      timeout: 60_000
    }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
      resume(Effect.succeed({ code, stdout: stripAnsi(stdout), stderr: stripAnsi(stderr) }))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

export const tempDir = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

export interface RunningDaemon {
  readonly stateDir: string
  readonly pid: number
  readonly output: () => string
}

/**
 * `relay-broker up` with a temp state dir, an OS-assigned API port and, with no engine URL, its
 * embedded engine. Ready once connection.json exists; SIGTERM (then SIGKILL) when the scope closes.
 */
export const daemon: Effect.Effect<RunningDaemon, Error, Scope.Scope> = Effect.gen(function*() {
  const home = yield* tempDir("relay-cli-daemon-")
  const stateDir = join(home, "state")
  const child = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn("node", [main, "up", "--state-dir", stateDir, "--api-port", "0"], {
        cwd: home,
        env: cleanEnv({ XDG_DATA_HOME: join(home, "data"), HOME: home }),
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout.on("data", (chunk) => (output += String(chunk)))
      child.stderr.on("data", (chunk) => (output += String(chunk)))
      return { child, output: () => output }
    }),
    ({ child }) => stopChild(child)
  )
  const connection = join(stateDir, "connection.json")
  yield* Effect.suspend(() => {
    if (child.child.exitCode !== null) {
      return Effect.die(new Error(`the daemon exited (${child.child.exitCode}):\n${child.output()}`))
    }
    return existsSync(connection) ? Effect.void : Effect.fail("not yet")
  }).pipe(
    Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.intersect(Schedule.recurs(300)))),
    Effect.catchAll(() => Effect.fail(new Error(`the daemon wrote no connection.json within 30 s:\n${child.output()}`)))
  )
  const { pid } = JSON.parse(readFileSync(connection, "utf8")) as { pid: number }
  return { stateDir, pid, output: child.output }
})
