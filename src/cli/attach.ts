import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import { connect, connectionOptions, type Daemon } from "./client.js"
import { makeKeyFilter } from "./detachKeys.js"
import { DaemonFailed, reported } from "./errors.js"
import { subscribe } from "./events.js"
import { pick, text } from "./format.js"
import { openInputStream } from "./inputStream.js"
import { rawTerminal } from "./rawTerminal.js"

// `relay-broker attach <name>`: a person at the agent's keyboard. The user's terminal goes raw; the
// agent's screen is shown (snapshot, then live output); keys go to the agent through the input
// stream; the terminal size follows the user's. Deliveries are held (manual_flush) while attached
// and flushed on detach. Ctrl-] then d detaches.

type AttachEvent =
  | { readonly _tag: "Keys"; readonly data: string }
  | { readonly _tag: "Output"; readonly chunk: string }
  | { readonly _tag: "Resize" }
  /** `agentGone`: the agent exited or was released (a normal end); otherwise the connection failed. */
  | { readonly _tag: "Ended"; readonly reason: string; readonly agentGone: boolean }

const endKinds: ReadonlySet<string> = new Set(["agent_exited", "agent_exit", "agent_released", "agent_permanently_dead"])

const write = (chunk: string) =>
  Effect.async<void>((resume) => {
    process.stdout.write(chunk, () => resume(Effect.void))
  })

const agentPath = (name: string, rest: string) => `/api/spawned/${encodeURIComponent(name)}/${rest}`

/** Holds the agent's deliveries; the returned effect puts the previous mode back unless someone changed it meanwhile. */
const holdDeliveries = (daemon: Daemon, name: string) =>
  Effect.gen(function*() {
    const held = yield* daemon.call("PUT", agentPath(name, "delivery-mode"), { mode: "manual_flush" }).pipe(Effect.either)
    if (held._tag === "Left") {
      yield* Console.error(`relay-broker attach: deliveries are not held while attached (${held.left.message})`)
      return Effect.void
    }
    const previous = text(pick(held.right, "previous_mode"), "auto_inject")
    if (previous === "manual_flush") return Effect.void
    return daemon.call("PUT", agentPath(name, "delivery-mode"), { mode: previous, expected_mode: "manual_flush" }).pipe(
      Effect.flatMap((answer) => {
        const flushed = pick(answer, "flushed")
        return typeof flushed === "number" && flushed > 0
          ? Console.error(`relay-broker attach: ${flushed} held message(s) delivered to ${name}`)
          : Effect.void
      }),
      Effect.catchAll((error) => Console.error(`relay-broker attach: could not restore the delivery mode: ${error.message}`))
    )
  })

const resize = (daemon: Daemon, name: string) =>
  Effect.suspend(() => {
    const { columns, rows } = process.stdout
    if (process.stdout.isTTY !== true || !columns || !rows) return Effect.void
    return daemon.call("POST", `/api/resize/${encodeURIComponent(name)}`, { rows, cols: columns }).pipe(Effect.ignore)
  })

const attach = (options: { readonly name: string } & Parameters<typeof connect>[0]) =>
  Effect.gen(function*() {
    const daemon = yield* connect(options)
    const name = options.name
    const inbox = yield* Queue.unbounded<AttachEvent>()
    // Subscribe before the snapshot, so no output written in between is lost.
    const events = yield* subscribe(daemon)
    const input = yield* openInputStream(daemon, name, (reason) =>
      inbox.unsafeOffer({ _tag: "Ended", reason, agentGone: false }))
    const snapshot = yield* daemon.call("GET", `${agentPath(name, "snapshot")}?format=plain`)
    const restoreMode = yield* holdDeliveries(daemon, name)
    yield* Effect.addFinalizer(() => restoreMode)

    // Listening before the terminal goes raw (which resumes stdin), so no key is read and dropped.
    const onKeys = (data: Buffer | string) => inbox.unsafeOffer({ _tag: "Keys", data: data.toString() })
    const onResize = () => inbox.unsafeOffer({ _tag: "Resize" })
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.stdin.on("data", onKeys)
        process.stdout.on("resize", onResize)
      }),
      () =>
        Effect.sync(() => {
          process.stdin.off("data", onKeys)
          process.stdout.off("resize", onResize)
        })
    )
    yield* rawTerminal(process.stdin, process.stdout)
    const screen = text(pick(snapshot, "screen"), "")
    yield* write(`\x1b[H\x1b[2J${screen.replace(/\r?\n/g, "\r\n")}`)
    yield* Console.error(`\r\nrelay-broker attach: attached to ${name}; detach with Ctrl-] then d\r`)
    yield* resize(daemon, name)
    yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
      const next = yield* Queue.take(events)
      if (next._tag === "Closed") return yield* Queue.offer(inbox, { _tag: "Ended", reason: next.reason, agentGone: false })
      const { event } = next
      if (event.name !== name) return
      if (event.kind === "worker_stream" && typeof event.chunk === "string") {
        yield* Queue.offer(inbox, { _tag: "Output", chunk: event.chunk })
      } else if (typeof event.kind === "string" && endKinds.has(event.kind)) {
        yield* Queue.offer(inbox, {
          _tag: "Ended",
          reason: `${name} ${event.kind === "agent_released" ? "was released" : "exited"}`,
          agentGone: true
        })
      }
    })))

    const keys = makeKeyFilter()
    let ended: { readonly reason: string; readonly agentGone: boolean } | "detached" | undefined
    while (ended === undefined) {
      const next = yield* Queue.take(inbox)
      switch (next._tag) {
        case "Keys": {
          const { send, detach } = keys.feed(next.data)
          input.send(send)
          if (detach) ended = "detached"
          break
        }
        case "Output":
          yield* write(next.chunk)
          break
        case "Resize":
          yield* Effect.forkScoped(resize(daemon, name))
          break
        case "Ended":
          ended = next
      }
    }
    // The person's last keys land before the held messages are typed.
    yield* Effect.sync(() => input.unacked()).pipe(
      Effect.repeat({ schedule: Schedule.spaced(Duration.millis(20)), until: (count) => count === 0 }),
      Effect.timeoutOption(Duration.seconds(2))
    )
    return ended
  }).pipe(
    Effect.scoped,
    // Reported after the scope closed, that is after the terminal was restored.
    Effect.flatMap((ended) =>
      ended === "detached"
        ? Console.error(`\r\nrelay-broker attach: detached from ${options.name}`)
        : ended.agentGone
        ? Console.error(`\r\nrelay-broker attach: ${ended.reason}`)
        : Effect.fail(new DaemonFailed({ status: 0, detail: ended.reason }))
    )
  )

export const command = Command.make(
  "attach",
  {
    ...connectionOptions,
    name: Args.text({ name: "name" }).pipe(Args.withDescription("The agent"))
  },
  (options) => attach(options).pipe(reported("attach"))
).pipe(Command.withDescription(
  "Take over an agent's terminal: its screen, your keys; its messages wait until you detach (Ctrl-] then d)"
))
