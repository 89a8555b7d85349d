import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { ClientFailure, failureMessage } from "./daemonHttp.js"

// The failures a client command reports: one line on stderr each, and an exit code.

/** No daemon to talk to: no `connection.json`, a dead pid, or nothing answering at the URL. */
export class NoDaemon extends Schema.TaggedError<NoDaemon>()("NoDaemon", {
  detail: Schema.String
}) {
  override get message() {
    return failureMessage("NoDaemon", this.detail, 0)
  }
}

/** The daemon answered with a failure (non-2xx), or something that is not JSON. */
export class DaemonFailed extends Schema.TaggedError<DaemonFailed>()("DaemonFailed", {
  status: Schema.Number,
  code: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message() {
    return failureMessage("DaemonFailed", this.detail, this.status)
  }
}

/** The command line is wrong in a way the parser cannot see (e.g. `--url` without a key). */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  detail: Schema.String
}) {
  override get message() {
    return this.detail
  }
}

export type ClientError = NoDaemon | DaemonFailed | UsageError

/** The quick path's failure (src/cli/daemonHttp.ts) as the typed error of the Effect commands. */
export const fromFailure = (failure: ClientFailure): ClientError =>
  failure.kind === "NoDaemon"
    ? new NoDaemon({ detail: failure.detail })
    : failure.kind === "UsageError"
    ? new UsageError({ detail: failure.detail })
    : new DaemonFailed({ status: failure.status, detail: failure.detail, ...(failure.code !== undefined ? { code: failure.code } : {}) })

/** A promise of the plain client code as an Effect: a ClientFailure is its typed error, anything else a defect. */
export const fromPromise = <A>(run: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, ClientError> =>
  Effect.flatMap(
    Effect.promise((signal) =>
      run(signal).then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => {
          if (error instanceof ClientFailure) return { ok: false as const, failure: error }
          throw error
        }
      )
    ),
    (result) => (result.ok ? Effect.succeed(result.value) : Effect.fail(fromFailure(result.failure)))
  )

/** 0 success, 1 a failure (reported by the daemon, or no daemon), 2 bad usage. */
export const exitCodeOf = (error: ClientError): 1 | 2 => (error._tag === "UsageError" ? 2 : 1)

/** A command has failed and said why on stderr; main exits with `code`. */
export class CliExit extends Data.TaggedError("CliExit")<{ readonly code: 1 | 2 }> {}

/** Prints a command's expected failure as one line on stderr and turns it into its exit code. */
export const reported = (command: string) => <A, R>(self: Effect.Effect<A, ClientError, R>): Effect.Effect<A, CliExit, R> =>
  Effect.catchAll(self, (error) =>
    Effect.zipRight(
      Console.error(`relay-broker ${command}: ${error.message}`),
      Effect.fail(new CliExit({ code: exitCodeOf(error) }))
    ))
