import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type { Connection } from "./nodeSocket.js"

// NodeControl's outbox: frames `send` queued (the oldest dropped beyond the capacity), written by
// the session's writer in batches: everything queued when it looks. Within a batch an agent's
// `delivery.ack` is combined into its last one (acks are cumulative), so a burst of deliveries costs
// one ack per agent. A frame stays in the batch until its write is confirmed, so a drop re-sends it.

/** A queued frame; `ack` is set for `delivery.ack` (its agent and `up_to_seq`). */
export interface OutboxFrame {
  readonly text: string
  readonly ack?: { readonly agent: string; readonly upToSeq: number }
}

/** The batch in order, minus every ack covered by a later ack of the same agent in the batch. */
export const combineAcks = (batch: ReadonlyArray<OutboxFrame>): Array<OutboxFrame> => {
  const highest = new Map<string, number>()
  const kept: Array<OutboxFrame> = []
  for (let i = batch.length - 1; i >= 0; i--) {
    const frame = batch[i]!
    if (frame.ack !== undefined) {
      const later = highest.get(frame.ack.agent)
      if (later !== undefined && later >= frame.ack.upToSeq) continue
      highest.set(frame.ack.agent, frame.ack.upToSeq)
    }
    kept.push(frame)
  }
  return kept.reverse()
}

export const makeOutbox = (outboxCapacity: number) =>
  Effect.gen(function*() {
    const outbox = yield* Queue.sliding<OutboxFrame>(outboxCapacity)
    // The batch being written; its head is removed once its write is confirmed.
    let batch: Array<OutboxFrame> = []

    // Taking the batch is uninterruptible once the first frame is out of the queue, so none is lost.
    const takeBatch = Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const first = yield* restore(Queue.take(outbox))
        const rest = yield* Queue.takeAll(outbox)
        batch = combineAcks([first, ...rest])
      })
    )

    const writerLoop = (connection: Connection) =>
      Effect.gen(function*() {
        while (true) {
          if (batch.length === 0) yield* takeBatch
          yield* connection.writeConfirmed(batch[0]!.text)
          batch.shift()
        }
      })

    /** Whatever `send` queued and was not written yet (e.g. final acks at shutdown), combined. */
    const drainOutbox = Effect.gen(function*() {
      const pending = batch
      batch = []
      const rest = yield* Queue.takeAll(outbox)
      return combineAcks([...pending, ...rest]).map((frame) => frame.text)
    })

    const enqueue = (frame: OutboxFrame) =>
      Effect.gen(function*() {
        if ((yield* Queue.size(outbox)) >= outboxCapacity) {
          yield* Effect.logWarning(`the node-control outbox is full (${outboxCapacity}); the oldest frame is dropped`)
        }
        yield* Queue.offer(outbox, frame)
      })

    return { writerLoop, drainOutbox, enqueue }
  })
