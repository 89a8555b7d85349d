import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type { Server } from "node:http"
import type { Socket } from "node:net"

// The control API's open connections, so that stopping never waits on a client. @effect/platform-node
// closes its WebSocket server (which waits for every client to go) before it interrupts the fibers
// that serve those clients: with one `/ws` client connected the daemon would never stop. So, before
// the HTTP server's scope closes: long-lived routes are told to end (their sockets close cleanly),
// idle keep-alive connections are closed, and whatever is still open after a short grace is destroyed.

export interface Connections {
  /** Completes when the API is stopping; long-lived routes (event and input streams) race it. */
  readonly closing: Effect.Effect<void>
  /** Ends every connection: signal, grace (clean closes), then destroy what is left. Never waits longer than `grace`. */
  readonly closeAll: (graceMillis: number) => Effect.Effect<void>
}

/** Given to the routes: a long-lived route ends when `closing` completes. */
export class ApiClosing extends Context.Tag("relay-broker/ApiClosing")<ApiClosing, {
  readonly closing: Effect.Effect<void>
}>() {}

/** Runs `effect` until it ends or the API starts stopping (whichever is first). */
export const untilClosing = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A | void, E, R> =>
  Effect.flatMap(Effect.serviceOption(ApiClosing), (closing) =>
    closing._tag === "None" ? effect : Effect.raceFirst(effect, closing.value.closing))

const pollInterval = Schedule.spaced("20 millis")

/** Tracks the sockets of `server` from now on. */
export const track = (server: Server): Effect.Effect<Connections> =>
  Effect.gen(function*() {
    const stopping = yield* Deferred.make<void>()
    const open = new Set<Socket>()
    server.on("connection", (socket: Socket) => {
      open.add(socket)
      socket.once("close", () => open.delete(socket))
    })
    const drained = Effect.sync(() => open.size === 0)
    const closeAll = (graceMillis: number) =>
      Effect.gen(function*() {
        yield* Deferred.succeed(stopping, undefined)
        server.closeIdleConnections()
        yield* drained.pipe(
          Effect.repeat({ schedule: pollInterval, until: (done) => done }),
          Effect.timeoutOption(graceMillis)
        )
        if (open.size > 0) yield* Effect.logInfo(`closing ${open.size} connection(s) still open`)
        for (const socket of open) socket.destroy()
      })
    return { closing: Deferred.await(stopping), closeAll }
  })
