import { readFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { exchange } from "../http/plainExchange.js"
import { record } from "./format.js"

// How a client command finds the running daemon and calls its local HTTP API, in plain
// TypeScript over node:http: a client command loads this and its own formatting, not Effect, not
// @effect/cli and not Node's fetch (which loads a second HTTP stack with a WebAssembly parser, about
// 40 MB and 150 ms for one request). The Effect commands (src/cli/client.ts) use it too.

export type FailureKind = "NoDaemon" | "DaemonFailed" | "UsageError"

/** What a client command reports: one line on stderr, then exit 1 (2 for bad usage). */
export const failureMessage = (kind: FailureKind, detail: string, status: number): string =>
  kind === "NoDaemon"
    ? `no daemon running (${detail})`
    : kind === "DaemonFailed" && status > 0
    ? `${detail} (HTTP ${status})`
    : detail

/**
 * A client command's expected failure. `NoDaemon`: no connection.json, a dead pid, or nothing
 * answering; `DaemonFailed`: a non-2xx answer or one that is not JSON (`status` 0: no answer at
 * all); `UsageError`: a command line the parser cannot see is wrong (`--url` without a key).
 */
export class ClientFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    readonly detail: string,
    readonly status = 0,
    readonly code?: string
  ) {
    super(failureMessage(kind, detail, status))
  }

  get exitCode(): 1 | 2 {
    return this.kind === "UsageError" ? 2 : 1
  }
}

/** The options every client command takes (`undefined`: not given). */
export interface ConnectionFlags {
  readonly stateDir?: string | undefined
  readonly url?: string | undefined
  readonly apiKey?: string | undefined
}

export type Method = "GET" | "POST" | "PUT" | "DELETE"

export interface DaemonConnection {
  /** Where the connection came from, for messages: the connection.json path or the URL. */
  readonly source: string
  readonly url: string
  readonly apiKey: string
  /** A JSON request; resolves with the parsed body of a 2xx answer, rejects with a ClientFailure. */
  readonly call: (method: Method, path: string, body?: unknown, signal?: AbortSignal) => Promise<unknown>
}

const requestTimeoutMs = 40_000
// Until the daemon's engine handshake completes it answers 503 "Broker is starting, please retry".
const startingRetry = { everyMs: 500, times: 30 } as const

const envValue = (name: string): string | undefined => {
  const value = process.env[name]
  return value === undefined || value === "" ? undefined : value
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

const oneLine = (text: string): string => text.replace(/\s+/g, " ").trim()

/** The daemon's two error shapes (`{success:false, error}` and `{code, message}`) plus `{error:{code,message}}`. */
const failureOf = (status: number, text: string): ClientFailure => {
  let parsed: unknown = undefined
  try {
    parsed = JSON.parse(text)
  } catch {
    // not JSON: the text itself is the message
  }
  const body = record(parsed)
  const nested = record(body.error)
  const detail = [body.error, nested.message, body.message, body.reason]
    .find((candidate): candidate is string => typeof candidate === "string" && candidate !== "")
  const code = [body.code, nested.code].find((candidate): candidate is string => typeof candidate === "string")
  return new ClientFailure(
    "DaemonFailed",
    oneLine(detail ?? (parsed === undefined && text.trim() !== "" ? text : `the daemon answered HTTP ${status}`)),
    status,
    code
  )
}

/** One request, to its answer: the status and the body as text. Rejects with the transport error. */
const exchangeWithDaemon = (url: URL, method: Method, apiKey: string, body: unknown, signal: AbortSignal) => {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  return exchange(url, {
    method,
    signal,
    headers: { "x-api-key": apiKey, accept: "application/json", ...(payload !== undefined ? { "content-type": "application/json" } : {}) },
    ...(payload === undefined ? {} : { body: payload })
  })
}

const delay = (ms: number, signal: AbortSignal) =>
  new Promise<void>((done) => {
    const timer = setTimeout(done, ms)
    signal.addEventListener("abort", () => {
      clearTimeout(timer)
      done()
    }, { once: true })
  })

const makeConnection = (source: string, url: string, apiKey: string): DaemonConnection => {
  const base = url.endsWith("/") ? url : `${url}/`
  const once = async (method: Method, path: string, body: unknown, signal: AbortSignal): Promise<unknown> => {
    let answer: { readonly status: number; readonly text: string }
    try {
      answer = await exchangeWithDaemon(new URL(path.replace(/^\//, ""), base), method, apiKey, body, signal)
    } catch (error) {
      if (signal.aborted) throw signal.reason
      throw (error as NodeJS.ErrnoException).code === "ECONNREFUSED"
        ? new ClientFailure("NoDaemon", `nothing answers at ${url}, from ${source}`)
        : new ClientFailure("DaemonFailed", `cannot reach the daemon at ${url}: ${oneLine(String(error))}`)
    }
    const { status, text } = answer
    if (status < 200 || status > 299) throw failureOf(status, text)
    if (text.trim() === "") return {}
    try {
      return JSON.parse(text) as unknown
    } catch {
      throw new ClientFailure("DaemonFailed", `the daemon answered something that is not JSON: ${oneLine(text).slice(0, 120)}`, status)
    }
  }
  const call = async (method: Method, path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> => {
    const timedOut = new ClientFailure("DaemonFailed", `the daemon at ${url} did not answer ${method} ${path} in time`)
    const abort = new AbortController()
    const timer = setTimeout(() => abort.abort(timedOut), requestTimeoutMs)
    const stop = () => abort.abort(signal?.reason)
    signal?.addEventListener("abort", stop, { once: true })
    try {
      for (let retries = 0;; retries++) {
        try {
          return await once(method, path, body, abort.signal)
        } catch (error) {
          const starting = error instanceof ClientFailure && error.kind === "DaemonFailed" && error.status === 503
          if (!starting || retries >= startingRetry.times) throw error
        }
        await delay(startingRetry.everyMs, abort.signal)
        if (abort.signal.aborted) throw abort.signal.reason
      }
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener("abort", stop)
    }
  }
  return { source, url, apiKey, call }
}

/** The directory a command looks in: `--state-dir`, else `AGENT_RELAY_STATE_DIR`, else `<cwd>/.agentworkforce/relay`. */
export const stateDirOf = (flags: ConnectionFlags): string =>
  resolve(flags.stateDir ?? envValue("AGENT_RELAY_STATE_DIR") ?? join(process.cwd(), ".agentworkforce", "relay"))

/**
 * Finds the daemon: `--url` / `RELAY_BROKER_URL` with `--api-key` / `RELAY_BROKER_API_KEY`, else the
 * state directory's `connection.json` (whose pid must be alive).
 */
export const connectDaemon = async (flags: ConnectionFlags): Promise<DaemonConnection> => {
  const explicitUrl = flags.url ?? envValue("RELAY_BROKER_URL")
  const explicitKey = flags.apiKey ?? envValue("RELAY_BROKER_API_KEY")
  if (explicitUrl !== undefined) {
    if (!/^https?:\/\//.test(explicitUrl)) {
      throw new ClientFailure("UsageError", `--url must be an http(s) URL, got "${explicitUrl}"`)
    }
    if (explicitKey === undefined) throw new ClientFailure("UsageError", "--url needs --api-key (or env RELAY_BROKER_API_KEY)")
    return makeConnection(explicitUrl, explicitUrl, explicitKey)
  }
  if (flags.apiKey !== undefined) throw new ClientFailure("UsageError", "--api-key goes with --url")
  const stateDir = stateDirOf(flags)
  const file = join(stateDir, "connection.json")
  const text = await readFile(file, "utf8").catch(() => {
    throw new ClientFailure("NoDaemon", `no connection.json in ${stateDir}`)
  })
  let connection: Record<string, unknown>
  try {
    connection = record(JSON.parse(text))
  } catch {
    throw new ClientFailure("NoDaemon", `${file} is not valid JSON`)
  }
  const { url, api_key: key, pid } = connection
  if (typeof url !== "string" || typeof key !== "string" || typeof pid !== "number") {
    throw new ClientFailure("NoDaemon", `${file} lacks url, api_key or pid`)
  }
  if (!isAlive(pid)) throw new ClientFailure("NoDaemon", `connection.json in ${stateDir} names pid ${pid}, which is not running`)
  return makeConnection(file, url, key)
}
