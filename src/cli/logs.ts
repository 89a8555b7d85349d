import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import { connect, connectionOptions } from "./client.js"
import { DaemonFailed, fromPromise, reported } from "./errors.js"
import { subscribe } from "./events.js"
import { snapshot } from "./run/agentControl.js"

const endKinds: ReadonlySet<string> = new Set(["agent_exited", "agent_exit", "agent_released", "agent_permanently_dead"])

const write = (chunk: string) => Effect.async<void>((resume) => {
  process.stdout.write(chunk, () => resume(Effect.void))
})

export const command = Command.make(
  "logs",
  {
    ...connectionOptions,
    name: Args.text({ name: "name" }).pipe(Args.withDescription("The agent")),
    follow: Options.boolean("follow").pipe(
      Options.withAlias("f"),
      Options.withDescription("Keep printing the terminal's output as it comes, until the agent exits")
    )
  },
  (options) =>
    Effect.gen(function*() {
      const daemon = yield* connect(options)
      // Subscribe before taking the snapshot, so nothing written in between is lost.
      const events = options.follow ? yield* subscribe(daemon) : undefined
      yield* write(yield* fromPromise(() => snapshot(daemon.connection, options.name)))
      if (events === undefined) return
      // Output that arrived while the snapshot was taken may also be in it: printing it twice beats losing it.
      while (true) {
        const next = yield* Queue.take(events)
        if (next._tag === "Closed") return yield* new DaemonFailed({ status: 0, detail: next.reason })
        const { event } = next
        if (event.name !== options.name) continue
        if (event.kind === "worker_stream" && typeof event.chunk === "string") {
          yield* write(event.chunk)
        } else if (typeof event.kind === "string" && endKinds.has(event.kind)) {
          return yield* Console.error(`relay-broker logs: ${options.name} ${event.kind === "agent_released" ? "was released" : "exited"}`)
        }
      }
    }).pipe(Effect.scoped, reported("logs"))
).pipe(Command.withDescription("Print an agent's terminal output (a snapshot; with --follow, then the live output)"))
