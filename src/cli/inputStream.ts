import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import WebSocket from "ws"
import type { Daemon } from "./client.js"
import { DaemonFailed, NoDaemon } from "./errors.js"
import { record } from "./format.js"

// The client side of `GET /api/input/{name}/stream` (control-api §3.5). Keystrokes are pipelined:
// a write does not wait for the previous ack, so typing over a slow link is not slowed by the
// round trip; the daemon writes them in order.

export interface InputStream {
  /** Sends the bytes; never blocks on the daemon. */
  readonly send: (data: string) => void
  /** Writes sent but not acknowledged yet. */
  readonly unacked: () => number
}

const openTimeoutMs = 10_000

/**
 * Opens the stream and waits for `pty_input_ready`. `onEnd` is called once, with the reason, when
 * the daemon sends `pty_input_error` or the socket closes. The scope closes the socket.
 */
export const openInputStream = (
  daemon: Daemon,
  name: string,
  onEnd: (reason: string) => void
): Effect.Effect<InputStream, DaemonFailed | NoDaemon, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly socket: WebSocket; readonly stream: InputStream }, DaemonFailed | NoDaemon>((resume) => {
      const url = new URL(`api/input/${encodeURIComponent(name)}/stream`, daemon.url.endsWith("/") ? daemon.url : `${daemon.url}/`)
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
      const socket = new WebSocket(url, { headers: { "x-api-key": Redacted.value(daemon.apiKey) } })
      let ready = false
      let ended = false
      let pending = 0
      const end = (reason: string) => {
        if (ended) return
        ended = true
        if (ready) onEnd(reason)
        else resume(Effect.fail(new DaemonFailed({ status: 0, detail: reason })))
      }
      const timer = setTimeout(() => {
        end(`the daemon did not open the input stream within ${openTimeoutMs / 1000} s`)
        socket.terminate()
      }, openTimeoutMs)
      const stream: InputStream = {
        send: (data) => {
          if (ended || data.length === 0) return
          pending += 1
          socket.send(data)
        },
        unacked: () => pending
      }
      socket.on("message", (raw) => {
        let frame: Record<string, unknown>
        try {
          frame = record(JSON.parse(String(raw)))
        } catch {
          return
        }
        if (frame.type === "pty_input_ready" && !ready) {
          ready = true
          clearTimeout(timer)
          resume(Effect.succeed({ socket, stream }))
        } else if (frame.type === "pty_input_ack") {
          pending = Math.max(0, pending - 1)
        } else if (frame.type === "pty_input_error") {
          const code = typeof frame.code === "string" ? frame.code : "error"
          const message = typeof frame.message === "string" ? frame.message : "input refused"
          if (!ready && code === "agent_not_found") {
            ended = true
            clearTimeout(timer)
            resume(Effect.fail(new DaemonFailed({ status: 404, code, detail: message })))
          } else {
            end(`${message} (${code})`)
          }
        }
      })
      socket.once("close", (code) => {
        clearTimeout(timer)
        end(`the daemon closed the input stream (code ${code})`)
      })
      socket.once("unexpected-response", (_request, response) => {
        clearTimeout(timer)
        ended = true
        resume(Effect.fail(new DaemonFailed({ status: response.statusCode ?? 0, detail: "the daemon refused the input stream" })))
        socket.terminate()
      })
      socket.once("error", (error) => {
        clearTimeout(timer)
        if ((error as NodeJS.ErrnoException).code === "ECONNREFUSED" && !ready) {
          ended = true
          resume(Effect.fail(new NoDaemon({ detail: `nothing answers at ${daemon.url}, from ${daemon.source}` })))
        } else {
          end(`the input stream failed: ${error.message}`)
        }
      })
      return Effect.sync(() => {
        clearTimeout(timer)
        socket.terminate()
      })
    }),
    ({ socket }) => Effect.sync(() => socket.close())
  ).pipe(Effect.map(({ stream }) => stream))
