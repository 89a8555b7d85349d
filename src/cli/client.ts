import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { connectDaemon, type ConnectionFlags as PlainFlags, type DaemonConnection, type Method } from "./daemonHttp.js"
import { type ClientError, type CliExit, type DaemonFailed, fromPromise, type NoDaemon, reported } from "./errors.js"

// The client commands' connection as @effect/cli options and as an Effect service-like value, over
// the plain client (src/cli/daemonHttp.ts) that the quick path uses too.

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
  readonly call: (method: Method, path: string, body?: unknown) => Effect.Effect<unknown, DaemonFailed | NoDaemon>
  /** The same daemon for the plain client code (src/cli/run/*). */
  readonly connection: DaemonConnection
}

const plainFlags = (flags: ConnectionFlags): PlainFlags => ({
  stateDir: Option.getOrUndefined(flags.stateDir),
  url: Option.getOrUndefined(flags.url),
  apiKey: Option.getOrUndefined(flags.apiKey)
})

/**
 * Finds the daemon: `--url` / `RELAY_BROKER_URL` with `--api-key` / `RELAY_BROKER_API_KEY`, else the
 * state directory's `connection.json` (whose pid must be alive).
 */
export const connect = (flags: ConnectionFlags): Effect.Effect<Daemon, ClientError> =>
  Effect.map(fromPromise(() => connectDaemon(plainFlags(flags))), (connection) => ({
    source: connection.source,
    url: connection.url,
    apiKey: Redacted.make(connection.apiKey),
    connection,
    call: (method, path, body) =>
      // A call fails with NoDaemon or DaemonFailed only; a UsageError comes from connecting.
      fromPromise((signal) => connection.call(method, path, body, signal)).pipe(Effect.catchTag("UsageError", Effect.die))
  }))

/** A command of the quick path (src/cli/run/*) as the handler of its @effect/cli command. */
export const runPlain = (
  command: string,
  flags: ConnectionFlags,
  run: (daemon: DaemonConnection) => Promise<void>
): Effect.Effect<void, CliExit> =>
  fromPromise(async () => run(await connectDaemon(plainFlags(flags)))).pipe(reported(command))
