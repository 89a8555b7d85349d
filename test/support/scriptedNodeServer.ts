import { Deferred, Effect, Queue, Ref, type Scope } from "effect"
import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { type WebSocket, WebSocketServer } from "ws"

// A loopback `/v1/node/ws` peer whose every move the test scripts: refuse upgrades with any HTTP
// status, accept and then stay silent, stop reading (a blackholed socket), send arbitrary text,
// close. It produces the faults a real engine cannot produce on demand.

export type Frame = Record<string, unknown> & { readonly type: string }

export interface ScriptedConnection {
  /** 1 for the first accepted connection. */
  readonly index: number
  readonly authorization: string | undefined
  /** Every text frame the node sent, parsed (or `{type: "<unparsable>", text}`), in order. */
  readonly frames: Queue.Queue<Frame>
  /** The next frame the node sent. */
  readonly next: Effect.Effect<Frame>
  /** Sends a frame (an object is JSON-encoded; a string goes as is). */
  readonly send: (frame: unknown) => Effect.Effect<void>
  /** `reply` to a request frame (echoing its id). */
  readonly reply: (request: Frame, data: unknown) => Effect.Effect<void>
  readonly close: (code?: number, reason?: string) => Effect.Effect<void>
  /** From now on: no byte is read (so no pong either) and nothing is written. */
  readonly blackhole: Effect.Effect<void>
  /** Completes when the node's side closed (or the socket ended). */
  readonly closed: Deferred.Deferred<{ readonly code: number }>
}

export interface UpgradeAttempt {
  readonly attempt: number
  readonly authorization: string | undefined
  readonly path: string
}

export interface ScriptedNodeServer {
  /** `http://127.0.0.1:<port>`: use it as the engine's base URL. */
  readonly baseUrl: string
  /** Every upgrade attempt, accepted or not. */
  readonly upgrades: Queue.Queue<UpgradeAttempt>
  /** Every accepted connection. */
  readonly connections: Queue.Queue<ScriptedConnection>
  /** Decides each upgrade: 101 accepts, any other status is answered as a bare HTTP response. Default: accept. */
  readonly setUpgradeStatus: (decide: (attempt: number) => number) => Effect.Effect<void>
  readonly upgradeCount: Effect.Effect<number>
}

const statusLines: Record<number, string> = { 401: "Unauthorized", 403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable" }

export const make: Effect.Effect<ScriptedNodeServer, never, Scope.Scope> = Effect.gen(function*() {
  const upgrades = yield* Queue.unbounded<UpgradeAttempt>()
  const connections = yield* Queue.unbounded<ScriptedConnection>()
  const decide = yield* Ref.make<(attempt: number) => number>(() => 101)
  const counter = yield* Ref.make(0)
  const sockets = new Set<WebSocket>()
  let accepted = 0

  const wss = new WebSocketServer({ noServer: true })
  const http = createServer((_req, res) => {
    res.writeHead(404)
    res.end()
  })

  const accept = (ws: WebSocket, req: IncomingMessage) => {
    sockets.add(ws)
    const index = ++accepted
    const frames = Effect.runSync(Queue.unbounded<Frame>())
    const closed = Effect.runSync(Deferred.make<{ readonly code: number }>())
    let silent = false
    ws.on("message", (data, isBinary) => {
      if (isBinary) return
      const text = data.toString()
      let frame: Frame
      try {
        frame = JSON.parse(text) as Frame
      } catch {
        frame = { type: "<unparsable>", text }
      }
      Queue.unsafeOffer(frames, frame)
    })
    ws.on("close", (code) => {
      sockets.delete(ws)
      Deferred.unsafeDone(closed, Effect.succeed({ code }))
    })
    ws.on("error", () => undefined)
    const send = (frame: unknown) =>
      Effect.sync(() => {
        if (!silent && ws.readyState === ws.OPEN) ws.send(typeof frame === "string" ? frame : JSON.stringify(frame))
      })
    const connection: ScriptedConnection = {
      index,
      authorization: req.headers.authorization,
      frames,
      next: Queue.take(frames),
      send,
      reply: (request, data) => send({ v: 1, type: "reply", id: request.id, ok: true, data }),
      close: (code = 1000, reason = "") => Effect.sync(() => ws.close(code, reason)),
      blackhole: Effect.sync(() => {
        silent = true
        ;(ws as unknown as { _socket: Socket })._socket.pause()
      }),
      closed
    }
    Queue.unsafeOffer(connections, connection)
  }

  http.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const attempt = Effect.runSync(Ref.updateAndGet(counter, (n) => n + 1))
    Queue.unsafeOffer(upgrades, { attempt, authorization: req.headers.authorization, path: req.url ?? "" })
    const status = Effect.runSync(Ref.get(decide))(attempt)
    if (status !== 101) {
      socket.end(`HTTP/1.1 ${status} ${statusLines[status] ?? "Refused"}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws, req))
  })

  const port = yield* Effect.async<number>((resume) => {
    http.listen(0, "127.0.0.1", () => resume(Effect.succeed((http.address() as AddressInfo).port)))
  })
  yield* Effect.addFinalizer(() =>
    Effect.async<void>((resume) => {
      for (const ws of sockets) ws.terminate()
      wss.close()
      http.closeAllConnections()
      http.close(() => resume(Effect.void))
    })
  )

  return {
    baseUrl: `http://127.0.0.1:${port}`,
    upgrades,
    connections,
    setUpgradeStatus: (f) => Ref.set(decide, f),
    upgradeCount: Ref.get(counter)
  }
})

/** Takes frames until one of `type` arrives; the skipped ones are returned too, in order. */
export const nextOfType = (connection: ScriptedConnection, type: string) =>
  Effect.gen(function*() {
    const skipped: Array<Frame> = []
    while (true) {
      const frame = yield* connection.next
      if (frame.type === type) return { frame, skipped }
      skipped.push(frame)
    }
  })
