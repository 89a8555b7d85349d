import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type WebSocket from "ws"
import type { Daemon } from "./client.js"
import { DaemonFailed, NoDaemon } from "./errors.js"
import { record } from "./format.js"

// The daemon's `/ws` event stream, for `logs --follow`.

export type EventOrEnd =
  | { readonly _tag: "Event"; readonly event: Record<string, unknown> }
  | { readonly _tag: "Closed"; readonly reason: string }

/**
 * Opens `/ws` (authenticated like the API) and queues every event from that moment on. The scope
 * closes the socket. The queue ends with one `Closed` entry if the daemon goes away.
 */
export const subscribe = (daemon: Daemon): Effect.Effect<Queue.Dequeue<EventOrEnd>, DaemonFailed | NoDaemon, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<EventOrEnd>()
    const url = new URL("ws", daemon.url.endsWith("/") ? daemon.url : `${daemon.url}/`)
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
    // Loaded here, not with every client command.
    const { default: WebSocketClient } = yield* Effect.promise(() => import("ws"))
    yield* Effect.acquireRelease(
      Effect.async<WebSocket, DaemonFailed | NoDaemon>((resume) => {
        const socket = new WebSocketClient(url, { headers: { "x-api-key": Redacted.value(daemon.apiKey) } })
        socket.on("message", (data) => {
          try {
            queue.unsafeOffer({ _tag: "Event", event: record(JSON.parse(String(data))) })
          } catch {
            // not JSON: not an event
          }
        })
        socket.once("close", (code) => queue.unsafeOffer({ _tag: "Closed", reason: `the daemon closed the event stream (code ${code})` }))
        socket.once("open", () => resume(Effect.succeed(socket)))
        socket.once("unexpected-response", (_request, response) => {
          resume(Effect.fail(new DaemonFailed({ status: response.statusCode ?? 0, detail: "the daemon refused the event stream" })))
          socket.terminate()
        })
        socket.once("error", (error) => {
          const code = (error as NodeJS.ErrnoException).code
          resume(Effect.fail(
            code === "ECONNREFUSED"
              ? new NoDaemon({ detail: `nothing answers at ${daemon.url}, from ${daemon.source}` })
              : new DaemonFailed({ status: 0, detail: `cannot open the event stream: ${error.message}` })
          ))
        })
        return Effect.sync(() => socket.terminate())
      }),
      (socket) => Effect.sync(() => socket.terminate())
    )
    return queue
  })
