import { Effect } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { launchScript, type LaunchedScript, stopChild } from "./processes.js"

// `node dist/main.js <command> …` as a real child process, for the e2e tests that drive the daemon
// over its API. Build first (`npm run build`; npm test does it through scripts/ensure-ready.mjs).

export const mainJs = fileURLToPath(new URL("../../dist/main.js", import.meta.url))

export const listeningLine = /^\[agent-relay\] API listening on (http:\/\/127\.0\.0\.1:(\d+))$/

/** Resolves once `check` holds (re-checked every 25 ms), or rejects when the process exits first. */
export const until = <A>(daemon: LaunchedScript, check: () => A | undefined): Promise<A> =>
  new Promise((resolve, reject) => {
    const tick = () => {
      const value = check()
      if (value !== undefined) return resolve(value)
      if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) {
        return reject(new Error(`the daemon exited (${daemon.child.exitCode ?? daemon.child.signalCode}):\n${daemon.stderr.join("\n")}`))
      }
      setTimeout(tick, 25)
    }
    tick()
  })

export interface RunningDaemon extends LaunchedScript {
  readonly url: string
  readonly apiKey: string
}

/**
 * Starts `node dist/main.js <args>` and waits for its listening line and connection.json in
 * `stateDir`; SIGKILLed at the end of the scope if still alive.
 */
export const startDaemon = (args: ReadonlyArray<string>, stateDir: string, env: NodeJS.ProcessEnv, cwd?: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const daemon = launchScript(mainJs, args, env, cwd)
      const url = await until(daemon, () => {
        const line = daemon.stdout.find((candidate) => listeningLine.test(candidate))
        return line === undefined ? undefined : listeningLine.exec(line)![1]!
      })
      const connection = JSON.parse(readFileSync(join(stateDir, "connection.json"), "utf8")) as { api_key: string }
      return { ...daemon, url, apiKey: connection.api_key }
    }),
    (daemon) => stopChild(daemon.child, "SIGKILL")
  )

export const tempRoot = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (root) => Effect.sync(() => rmSync(root, { recursive: true, force: true }))
  )

/** One API call: status and parsed JSON body (null when empty). */
export const api = (url: string, key: string | undefined, method: string, path: string, body?: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: {
        ...(key === undefined ? {} : { "x-api-key": key }),
        ...(body === undefined ? {} : { "content-type": "application/json" })
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await response.text()
    return { status: response.status, body: text === "" ? null : JSON.parse(text) as any }
  })
