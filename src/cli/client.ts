import * as Options from "@effect/cli/Options"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import { DaemonFailed, NoDaemon, UsageError } from "./errors.js"
import { record } from "./format.js"

// How a client command finds the running daemon and calls its local HTTP API.

export interface ConnectionFlags {
  readonly stateDir: Option.Option<string>
  readonly url: Option.Option<string>
  readonly apiKey: Option.Option<string>
}

/** The options every client command takes. */
export const connectionOptions = {
  stateDir: Options.text("state-dir").pipe(
    Options.withDescription("The daemon's state directory, holding connection.json (default <cwd>/.agentworkforce/relay)"),
    Options.optional
  ),
  url: Options.text("url").pipe(
    Options.withDescription("The daemon's API URL, instead of connection.json (or env RELAY_BROKER_URL)"),
    Options.optional
  ),
  apiKey: Options.text("api-key").pipe(
    Options.withDescription("The daemon's API key, with --url (or env RELAY_BROKER_API_KEY)"),
    Options.optional
  )
} as const

export interface Daemon {
  /** Where the connection came from, for messages: the connection.json path or the URL. */
  readonly source: string
  readonly url: string
  readonly apiKey: Redacted.Redacted<string>
  /** A JSON request; resolves with the parsed body of a 2xx answer. */
  readonly call: (
    method: "GET" | "POST" | "PUT" | "DELETE",
    path: string,
    body?: unknown
  ) => Effect.Effect<unknown, DaemonFailed | NoDaemon>
}

const requestTimeout = Duration.seconds(40)
// Until the daemon's engine handshake completes it answers 503 "Broker is starting, please retry".
const startingRetry = Schedule.spaced(Duration.millis(500)).pipe(Schedule.intersect(Schedule.recurs(30)))

const envValue = (name: string): Option.Option<string> => Option.fromNullable(process.env[name]).pipe(Option.filter((value) => value !== ""))

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
const failureOf = (status: number, text: string): DaemonFailed => {
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
  return new DaemonFailed({
    status,
    detail: oneLine(detail ?? (parsed === undefined && text.trim() !== "" ? text : `the daemon answered HTTP ${status}`)),
    ...(code !== undefined ? { code } : {})
  })
}

const makeDaemon = (source: string, url: string, apiKey: Redacted.Redacted<string>): Daemon => {
  const base = url.endsWith("/") ? url : `${url}/`
  const once = (method: string, path: string, body: unknown) =>
    Effect.tryPromise({
      try: async (signal) => {
        const response = await fetch(new URL(path.replace(/^\//, ""), base), {
          method,
          signal,
          headers: {
            "x-api-key": Redacted.value(apiKey),
            accept: "application/json",
            ...(body !== undefined ? { "content-type": "application/json" } : {})
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {})
        })
        return { status: response.status, text: await response.text() }
      },
      catch: (error): DaemonFailed | NoDaemon => {
        const cause = (error as { cause?: { code?: string } }).cause
        return cause?.code === "ECONNREFUSED"
          ? new NoDaemon({ detail: `nothing answers at ${url}, from ${source}` })
          : new DaemonFailed({ status: 0, detail: `cannot reach the daemon at ${url}: ${oneLine(String(cause ?? error))}` })
      }
    }).pipe(
      Effect.flatMap(({ status, text }) => {
        if (status < 200 || status > 299) return Effect.fail(failureOf(status, text))
        if (text.trim() === "") return Effect.succeed<unknown>({})
        return Effect.try({
          try: (): unknown => JSON.parse(text),
          catch: () => new DaemonFailed({ status, detail: `the daemon answered something that is not JSON: ${oneLine(text).slice(0, 120)}` })
        })
      })
    )
  const call = (method: "GET" | "POST" | "PUT" | "DELETE", path: string, body?: unknown) =>
    once(method, path, body).pipe(
      Effect.retry({ schedule: startingRetry, while: (error) => error._tag === "DaemonFailed" && error.status === 503 }),
      Effect.timeoutFail({
        duration: requestTimeout,
        onTimeout: () => new DaemonFailed({ status: 0, detail: `the daemon at ${url} did not answer ${method} ${path} in time` })
      })
    )
  return { source, url, apiKey, call }
}

/** The directory a command looks in: `--state-dir`, else `AGENT_RELAY_STATE_DIR`, else `<cwd>/.agentworkforce/relay`. */
export const stateDirOf = (flags: ConnectionFlags) =>
  Effect.map(Path.Path, (path) =>
    path.resolve(Option.getOrElse(Option.orElse(flags.stateDir, () => envValue("AGENT_RELAY_STATE_DIR")), () =>
      path.join(process.cwd(), ".agentworkforce", "relay"))))

/**
 * Finds the daemon: `--url` / `RELAY_BROKER_URL` with `--api-key` / `RELAY_BROKER_API_KEY`, else the
 * state directory's `connection.json` (whose pid must be alive).
 */
export const connect = Effect.fn("cli.connect")(function*(flags: ConnectionFlags) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const explicitUrl = Option.orElse(flags.url, () => envValue("RELAY_BROKER_URL"))
  const explicitKey = Option.orElse(flags.apiKey, () => envValue("RELAY_BROKER_API_KEY"))
  if (Option.isSome(explicitUrl)) {
    if (!/^https?:\/\//.test(explicitUrl.value)) {
      return yield* new UsageError({ detail: `--url must be an http(s) URL, got "${explicitUrl.value}"` })
    }
    if (Option.isNone(explicitKey)) {
      return yield* new UsageError({ detail: "--url needs --api-key (or env RELAY_BROKER_API_KEY)" })
    }
    return makeDaemon(explicitUrl.value, explicitUrl.value, Redacted.make(explicitKey.value))
  }
  if (Option.isSome(flags.apiKey)) {
    return yield* new UsageError({ detail: "--api-key goes with --url" })
  }
  const stateDir = yield* stateDirOf(flags)
  const file = path.join(stateDir, "connection.json")
  const text = yield* fs.readFileString(file).pipe(
    Effect.mapError(() => new NoDaemon({ detail: `no connection.json in ${stateDir}` }))
  )
  const connection = yield* Effect.try({
    try: () => record(JSON.parse(text)),
    catch: () => new NoDaemon({ detail: `${file} is not valid JSON` })
  })
  const { url, api_key: key, pid } = connection
  if (typeof url !== "string" || typeof key !== "string" || typeof pid !== "number") {
    return yield* new NoDaemon({ detail: `${file} lacks url, api_key or pid` })
  }
  if (!isAlive(pid)) {
    return yield* new NoDaemon({ detail: `connection.json in ${stateDir} names pid ${pid}, which is not running` })
  }
  return makeDaemon(file, url, Redacted.make(key))
})
