import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import { WebSocket } from "ws"
import { Unauthorized } from "./errors.js"

// NodeControl's socket: opening /v1/node/ws (events into a queue), writing, pinging, closing.

/** Why a session (or a connection attempt) ended, other than a 401. */
export class SessionEnded extends Data.TaggedError("SessionEnded")<{ readonly detail: string }> {
  override get message(): string {
    return this.detail
  }
}

export type SocketEvent =
  | { readonly _tag: "Text"; readonly text: string }
  | { readonly _tag: "Other" }
  | { readonly _tag: "Closed"; readonly code: number; readonly reason: string }
  | { readonly _tag: "Failed"; readonly message: string }

export interface Connection {
  /** Writes an encoded frame; fails when the socket is no longer open. */
  readonly write: (text: string) => Effect.Effect<void, SessionEnded>
  /** Writes and waits until the bytes were handed to the OS (so a failed write can be retried). */
  readonly writeConfirmed: (text: string) => Effect.Effect<void, SessionEnded>
  readonly ping: Effect.Effect<void>
}

export const openSocket = (url: string, token: Redacted.Redacted<string>, events: Queue.Queue<SocketEvent>, timeoutMs: number) =>
  Effect.async<WebSocket, Unauthorized | SessionEnded>((resume) => {
    let settled = false
    const settle = (effect: Effect.Effect<WebSocket, Unauthorized | SessionEnded>) => {
      if (settled) return
      settled = true
      resume(effect)
    }
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${Redacted.value(token).trim()}` },
      handshakeTimeout: timeoutMs
    })
    ws.on("unexpected-response", (_request, response) => {
      const status = response.statusCode ?? 0
      response.resume()
      ws.terminate()
      settle(Effect.fail(
        status === 401
          ? new Unauthorized({ detail: "HTTP 401 on the /v1/node/ws upgrade" })
          : new SessionEnded({ detail: `the /v1/node/ws upgrade was answered with HTTP ${status}` })
      ))
    })
    ws.on("open", () => settle(Effect.succeed(ws)))
    ws.on("error", (error) => {
      if (settled) Queue.unsafeOffer(events, { _tag: "Failed", message: error.message })
      else settle(Effect.fail(new SessionEnded({ detail: `cannot connect to ${url}: ${error.message}` })))
    })
    ws.on("message", (data, isBinary) => {
      Queue.unsafeOffer(events, isBinary ? { _tag: "Other" } : { _tag: "Text", text: data.toString() })
    })
    ws.on("pong", () => Queue.unsafeOffer(events, { _tag: "Other" }))
    ws.on("close", (code, reason) => Queue.unsafeOffer(events, { _tag: "Closed", code, reason: reason.toString() }))
    return Effect.sync(() => ws.terminate())
  })

export const makeConnection = (ws: WebSocket): Connection => {
  const ensureOpen = Effect.suspend(() =>
    ws.readyState === WebSocket.OPEN ? Effect.void : Effect.fail(new SessionEnded({ detail: "the socket is closed" }))
  )
  return {
    write: (text) => Effect.zipRight(ensureOpen, Effect.sync(() => ws.send(text))),
    writeConfirmed: (text) =>
      Effect.zipRight(
        ensureOpen,
        Effect.async<void, SessionEnded>((resume) => {
          ws.send(text, (error) =>
            resume(error ? Effect.fail(new SessionEnded({ detail: `write failed: ${error.message}` })) : Effect.void))
        })
      ),
    ping: Effect.sync(() => {
      if (ws.readyState === WebSocket.OPEN) ws.ping()
    })
  }
}

/** Sends the last frames (then `node.deregister`), closes, and waits briefly for the close handshake. */
export const closeGracefully = (ws: WebSocket, lastFrames: ReadonlyArray<string>) =>
  Effect.async<void>((resume) => {
    if (ws.readyState !== WebSocket.OPEN) {
      ws.terminate()
      return resume(Effect.void)
    }
    const timer = setTimeout(() => ws.terminate(), 2_000)
    ws.once("close", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    for (const text of lastFrames) ws.send(text)
    ws.close(1000, "shutdown")
  })
