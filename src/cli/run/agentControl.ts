import { resolve } from "node:path"
import { ClientFailure, type DaemonConnection } from "../daemonHttp.js"
import { pick, record, text } from "../format.js"

// `send`, `spawn`, `release` and the snapshot of `logs`: one call each, one line (or the screen) printed.

/** A 200 answer with `success: false` is a refusal: `fallback` when it does not say why. */
const refused = (answer: unknown, fallback: string): ClientFailure =>
  new ClientFailure("DaemonFailed", text(pick(answer, "error"), fallback), 200)

/** The daemon's answer as `key=value` pairs, `success` left out (it is implied). */
export const describe = (answer: unknown): string =>
  Object.entries(record(answer))
    .filter(([key, value]) => key !== "success" && value !== undefined && value !== null)
    .map(([key, value]) => `${key}=${text(value)}`)
    .join(" ")

export interface SendOptions {
  readonly to: string
  readonly text: string
  readonly from?: string | undefined
  readonly thread?: string | undefined
  readonly steer: boolean
}

export const send = async (daemon: DaemonConnection, options: SendOptions): Promise<void> => {
  const answer = await daemon.call("POST", "/api/send", {
    to: options.to,
    text: options.text,
    ...(options.from !== undefined ? { from: options.from } : {}),
    ...(options.thread !== undefined ? { thread: options.thread } : {}),
    ...(options.steer ? { mode: "steer" } : {})
  })
  if (pick(answer, "success") === false) throw refused(answer, "the daemon did not send the message")
  const details = describe(answer)
  console.log(details === "" ? `sent to ${options.to}` : `sent to ${options.to}: ${details}`)
}

export interface SpawnOptions {
  readonly name: string
  readonly cli: string
  readonly args: ReadonlyArray<string>
  readonly task?: string | undefined
  readonly cwd?: string | undefined
}

export const spawn = async (daemon: DaemonConnection, options: SpawnOptions): Promise<void> => {
  const answer = await daemon.call("POST", "/api/spawn", {
    name: options.name,
    cli: options.cli,
    args: options.args,
    // The daemon runs elsewhere: a relative --cwd means relative to where this command runs.
    cwd: resolve(options.cwd ?? process.cwd()),
    ...(options.task !== undefined ? { task: options.task } : {})
  })
  if (pick(answer, "success") === false) throw refused(answer, "the daemon refused the spawn")
  const warning = pick(answer, "warning")
  if (typeof warning === "string" && warning !== "") console.error(`relay-broker spawn: warning: ${warning}`)
  console.log(text(pick(answer, "pid")))
}

export const release = async (daemon: DaemonConnection, options: { readonly name: string }): Promise<void> => {
  const answer = await daemon.call("DELETE", `/api/spawned/${encodeURIComponent(options.name)}`)
  if (pick(answer, "success") === false) throw refused(answer, "the daemon refused the release")
  console.log(`released ${options.name}`)
}

/** The agent's screen as plain text, ending with a newline unless empty. */
export const snapshot = async (daemon: DaemonConnection, name: string): Promise<string> => {
  const answer = await daemon.call("GET", `/api/spawned/${encodeURIComponent(name)}/snapshot?format=plain`)
  const screen = text(pick(answer, "screen", "text", "output"), "")
  return screen === "" || screen.endsWith("\n") ? screen : `${screen}\n`
}
