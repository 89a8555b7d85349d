import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import type { Connection } from "./nodeSocket.js"

// NodeControl's outbox: frames `send` queued (the oldest dropped beyond the capacity), written one
// at a time by the session's writer, kept until the write is confirmed so a drop re-sends it.

export const makeOutbox = (outboxCapacity: number) =>
  Effect.gen(function*() {
    const outbox = yield* Queue.sliding<string>(outboxCapacity)
    // The outbox frame being written; kept until the write is confirmed, so a drop re-sends it.
    const outboxHead = yield* Ref.make(Option.none<string>())

    const writerLoop = (connection: Connection) =>
      Effect.gen(function*() {
        while (true) {
          const text = yield* Effect.uninterruptibleMask((restore) =>
            Effect.gen(function*() {
              const head = yield* Ref.get(outboxHead)
              if (Option.isSome(head)) return head.value
              const next = yield* restore(Queue.take(outbox))
              yield* Ref.set(outboxHead, Option.some(next))
              return next
            })
          )
          yield* connection.writeConfirmed(text)
          yield* Ref.set(outboxHead, Option.none())
        }
      })

    /** Whatever `send` queued and was not written yet (e.g. final acks at shutdown). */
    const drainOutbox = Effect.gen(function*() {
      const head = yield* Ref.getAndSet(outboxHead, Option.none())
      const rest = yield* Queue.takeAll(outbox)
      return [...Option.toArray(head), ...rest]
    })

    const enqueue = (text: string) =>
      Effect.gen(function*() {
        if ((yield* Queue.size(outbox)) >= outboxCapacity) {
          yield* Effect.logWarning(`the node-control outbox is full (${outboxCapacity}); the oldest frame is dropped`)
        }
        yield* Queue.offer(outbox, text)
      })

    return { writerLoop, drainOutbox, enqueue }
  })
