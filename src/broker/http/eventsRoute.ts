import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { EventLog } from "../EventLog.js"
import { SinceSeq } from "./bodies.js"
import { untilClosing } from "./Connections.js"
import { BadRequest, badRequest, queryParam } from "./responses.js"

// `GET /ws?sinceSeq=N`: the broker's event stream. Replays the durable events after N (with a
// `replay_gap` first when N aged out of the buffer), then follows live; each frame is the bare event JSON.

/** The number of open event streams, for `/health`. */
export type EventSockets = Ref.Ref<number>

export const eventsRoute = (open: EventSockets) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const raw = queryParam(request.url, "sinceSeq") ?? queryParam(request.url, "since_seq")
    const sinceSeq = raw === undefined
      ? undefined
      : yield* Schema.decodeUnknown(SinceSeq)(raw).pipe(
        Effect.mapError(() => new BadRequest({ message: "sinceSeq: expected a non-negative whole number" }))
      )
    const events = yield* EventLog
    // Subscribing before the upgrade means no event between the replay and the live tail is lost.
    const subscription = yield* events.subscribe(sinceSeq)
    const socket = yield* HttpServerRequest.upgrade
    const write = yield* socket.writer
    yield* Effect.acquireRelease(Ref.update(open, (n) => n + 1), () => Ref.update(open, (n) => n - 1))
    const pump = subscription.events.pipe(Stream.runForEach((event) => write(JSON.stringify(event))))
    // Incoming frames are ignored; `runRaw` ends when the client goes away.
    const drain = socket.runRaw(() => Effect.void)
    yield* untilClosing(Effect.raceFirst(pump, drain)).pipe(Effect.ignore)
    return HttpServerResponse.empty()
  }).pipe(
    Effect.scoped,
    Effect.catchTags({
      BadRequest: (error) => Effect.succeed(badRequest(error)),
      RequestError: (error) => Effect.succeed(badRequest(new BadRequest({ message: `websocket upgrade required: ${error.message}` })))
    })
  )
