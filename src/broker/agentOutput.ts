import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { Entry } from "./agentEntry.js"
import type { EventLog } from "./EventLog.js"

// An agent's terminal output as `worker_stream` events, batched.

export interface OutputBatching {
  readonly events: EventLog["Type"]
  readonly flushInterval: Duration.DurationInput
  readonly flushChars: number
}

const now = Clock.currentTimeMillis

// `worker_stream` batching: output is appended to a plain string and published by one flusher
// (after `flushInterval`) or at once at `flushChars`. A Sink/Schedule aggregation per agent cost
// milliseconds of CPU per delivery (every injected line comes back as echo).
export const makeOutputPublisher = ({ events, flushInterval, flushChars }: OutputBatching) => (entry: Entry) =>
  Effect.gen(function*() {
    let pending = ""
    // One publisher at a time, so that batches reach the event log in order.
    const publishing = yield* Effect.makeSemaphore(1)
    const due = yield* Effect.makeLatch(false)
    const flush = publishing.withPermits(1)(Effect.suspend(() => {
      if (pending.length === 0) return Effect.void
      const chunk = pending
      pending = ""
      return events.publish("worker_stream", { name: entry.info.name, stream: "stdout", chunk })
    }))
    // Closing the latch before taking the buffer: output appended after the take reopens it.
    yield* Effect.forkScoped(Effect.forever(
      due.await.pipe(
        Effect.zipRight(Effect.sleep(flushInterval)),
        Effect.zipRight(due.close),
        Effect.zipRight(flush)
      )
    ))
    yield* Stream.runForEachChunk(entry.pty.output, (chunks) =>
      Effect.flatMap(now, (at) => {
        entry.activity.at = at
        const wasEmpty = pending.length === 0
        for (const chunk of chunks) pending += chunk
        if (pending.length >= flushChars) return flush
        return wasEmpty && pending.length > 0 ? due.open : Effect.void
      }))
    yield* flush
  }).pipe(Effect.scoped)
