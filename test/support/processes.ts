import { type ChildProcess, spawn } from "node:child_process"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { Effect } from "effect"

// Process checks shared by the tests that start real processes.

/** Whether a process with this pid exists (signal 0 checks without signalling). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** SIGTERM (or `signal`), then SIGKILL after 10 s; completes once the process is gone. */
export const stopChild = (child: ChildProcess, signal: NodeJS.Signals = "SIGTERM") =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const force = setTimeout(() => child.kill("SIGKILL"), 10_000)
    child.once("exit", () => {
      clearTimeout(force)
      resume(Effect.void)
    })
    child.kill(signal)
  })

/** The environment of a fresh machine: no engine, no keys; data dirs inside the test's temp dir. */
export const freshMachineEnv = (root: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const name of Object.keys(env)) {
    if (/^(RELAY_|RELAYCAST_|AGENT_RELAY_)/.test(name)) delete env[name]
  }
  return { ...env, AGENT_RELAY_DATA_DIR: join(root, "data"), XDG_DATA_HOME: join(root, "xdg"), ...extra }
}

/** A Node script run as a child process, its output collected line by line. */
export interface LaunchedScript {
  readonly child: ChildProcess
  readonly stdout: Array<string>
  readonly stderr: Array<string>
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>
}

/** Runs `node <script> <args>` with `env` (in `cwd` when given), collecting its stdout and stderr lines. */
export const launchScript = (
  script: string,
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv,
  cwd?: string
): LaunchedScript => {
  const child = spawn(process.execPath, [script, ...args], { env, stdio: ["ignore", "pipe", "pipe"], ...(cwd === undefined ? {} : { cwd }) })
  const stdout: Array<string> = []
  const stderr: Array<string> = []
  createInterface({ input: child.stdout! }).on("line", (line) => stdout.push(line))
  createInterface({ input: child.stderr! }).on("line", (line) => stderr.push(line))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  return { child, stdout, stderr, exited }
}
