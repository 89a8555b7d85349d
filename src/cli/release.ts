import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { connect, connectionOptions } from "./client.js"
import { DaemonFailed, reported } from "./errors.js"
import { pick, text } from "./format.js"

export const command = Command.make(
  "release",
  {
    ...connectionOptions,
    name: Args.text({ name: "name" }).pipe(Args.withDescription("The agent to stop"))
  },
  (options) =>
    Effect.gen(function*() {
      const daemon = yield* connect(options)
      const answer = yield* daemon.call("DELETE", `/api/spawned/${encodeURIComponent(options.name)}`)
      if (pick(answer, "success") === false) {
        return yield* new DaemonFailed({ status: 200, detail: text(pick(answer, "error"), "the daemon refused the release") })
      }
      yield* Console.log(`released ${options.name}`)
    }).pipe(reported("release"))
).pipe(Command.withDescription("Stop an agent and unbind it from the node"))
