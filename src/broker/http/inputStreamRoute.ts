import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Socket from "@effect/platform/Socket"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import { AgentRegistry } from "../AgentRegistry.js"
import { BadRequest, badRequest } from "./responses.js"

// `GET /api/input/{name}/stream` (WebSocket, control-api §3.5): a person's keystrokes into an
// agent's terminal. The server sends `{type:"pty_input_ready",name}` once the agent is found; every
// client frame (raw text, UTF-8 binary, or `{"type":"pty_input","data":"…"}`) is written in order
// and answered with `{type:"pty_input_ack",name,bytes_written}`. A failure sends
// `{type:"pty_input_error",code,message,retryable:false,statusCode}` and closes the socket.

const decoder = new TextDecoder()

/** The bytes a client frame asks to write, or why it is not a valid frame. */
export const inputOf = (frame: string | Uint8Array): { readonly data: string } | { readonly invalid: string } => {
  const text = typeof frame === "string" ? frame : decoder.decode(frame)
  if (!text.startsWith("{")) return { data: text }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    // Not JSON after all: the person typed a `{`.
    return { data: text }
  }
  const object = parsed as { readonly type?: unknown; readonly data?: unknown }
  if (object.type !== "pty_input") return { data: text }
  if (typeof object.data !== "string") return { invalid: "a pty_input frame needs a string data field" }
  return { data: object.data }
}

class InputRejected extends Data.TaggedError("InputRejected")<{
  readonly code: string
  readonly message: string
  readonly statusCode: number
}> {}

const errorFrame = (code: string, message: string, statusCode: number) =>
  JSON.stringify({ type: "pty_input_error", code, message, retryable: false, statusCode })

export const inputStreamRoute = Effect.gen(function*() {
  const name = (yield* HttpRouter.params)["name"] ?? ""
  const registry = yield* AgentRegistry
  const socket = yield* HttpServerRequest.upgrade
  const write = yield* socket.writer
  const fail = (code: string, message: string, statusCode: number) =>
    Effect.zipRight(write(errorFrame(code, message, statusCode)), write(new Socket.CloseEvent(1000, code)))

  // The socket opens (and takes writes) once it is being read: the reader runs from the start.
  const frames = yield* Queue.unbounded<string | Uint8Array>()
  const receive = yield* socket.runRaw((frame) => {
    frames.unsafeOffer(frame)
  }).pipe(Effect.ignore, Effect.forkScoped)

  const found = yield* Effect.option(registry.lookup(name))
  if (Option.isNone(found)) {
    yield* fail("agent_not_found", `unknown worker '${name}'`, 404)
    return HttpServerResponse.empty()
  }
  const agent = found.value
  // Frames are handled one at a time, in arrival order (the socket's handler runs concurrently).
  const handle = Effect.forever(Effect.gen(function*() {
    const frame = yield* Queue.take(frames)
    const input = inputOf(frame)
    if ("invalid" in input) {
      return yield* new InputRejected({ code: "invalid_input", message: input.invalid, statusCode: 400 })
    }
    yield* agent.pty.write(input.data).pipe(
      Effect.mapError((error) =>
        new InputRejected({ code: "agent_exited", message: `${name}: ${error.message}`, statusCode: 409 })
      )
    )
    yield* write(JSON.stringify({ type: "pty_input_ack", name, bytes_written: Buffer.byteLength(input.data, "utf8") }))
  })).pipe(
    Effect.catchTag("InputRejected", (error) => fail(error.code, error.message, error.statusCode))
  )
  yield* write(JSON.stringify({ type: "pty_input_ready", name }))
  // Ends when the client goes away or after an error frame closed the socket.
  yield* Effect.raceFirst(handle, Fiber.join(receive)).pipe(Effect.ignore)
  return HttpServerResponse.empty()
}).pipe(
  Effect.scoped,
  Effect.catchTags({
    RequestError: (error) =>
      Effect.succeed(badRequest(new BadRequest({ message: `websocket upgrade required: ${error.message}` })))
  }),
  Effect.catchAll(() => Effect.succeed(HttpServerResponse.empty()))
)

export const inputStreamRoutes = HttpRouter.empty.pipe(
  HttpRouter.get("/api/input/:name/stream", inputStreamRoute)
)
