import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import { decodeServerFrame } from "../wire/codec.js"
import type { ActionInvoke, Deliver, ServerToNode } from "../wire/frames.js"
import { skippedFrames } from "./nodeControlPolicy.js"
import { salvageDelivery, type UndecodableDelivery } from "./nodeFrames.js"
import type { makeReplyRouting } from "./nodeRequests.js"
import { SessionEnded, type SocketEvent } from "./nodeSocket.js"

// NodeControl's inbound side: the session's read loop and where each decoded frame goes (deliveries,
// invocations, replies, errors, the observers' broadcast); an undecodable `deliver` is salvaged.

type ReplyRouting = ReturnType<typeof makeReplyRouting>

export interface InboundServices {
  readonly deliveries: Queue.Enqueue<Deliver>
  readonly invocations: Queue.Enqueue<ActionInvoke>
  readonly undecodable: Queue.Enqueue<UndecodableDelivery>
  readonly inbound: PubSub.PubSub<ServerToNode>
  /** Epoch ms of the last read (the heartbeat loop's idle check). */
  readonly lastRead: Ref.Ref<number>
  readonly onReply: ReplyRouting["onReply"]
  readonly onError: ReplyRouting["onError"]
}

export const makeInbound = ({ deliveries, inbound, invocations, lastRead, onError, onReply, undecodable }: InboundServices) => {
  const onText = (text: string) =>
    decodeServerFrame(text).pipe(
      Effect.matchEffect({
        onFailure: (error) =>
          Effect.gen(function*() {
            yield* Effect.logWarning(`skipped an inbound frame: ${error.message}`)
            yield* Metric.increment(Metric.tagged(skippedFrames, "kind", error.kind))
            const salvaged = salvageDelivery(text, error)
            if (Option.isSome(salvaged)) yield* Queue.offer(undecodable, salvaged.value)
          }),
        onSuccess: (frame) =>
          Effect.gen(function*() {
            switch (frame.type) {
              case "ping":
                return
              case "deliver":
                yield* Queue.offer(deliveries, frame)
                break
              case "action.invoke":
                yield* Queue.offer(invocations, frame)
                break
              case "reply":
                yield* onReply(frame)
                break
              case "error":
                yield* onError(frame)
                break
              case "context.update":
                break
            }
            yield* PubSub.publish(inbound, frame)
          })
      })
    )

  /** Reads the session's socket events until it ends; always fails, with why. */
  const readLoop = (events: Queue.Queue<SocketEvent>) =>
    Effect.gen(function*() {
      while (true) {
        const event = yield* Queue.take(events)
        yield* Ref.set(lastRead, yield* Clock.currentTimeMillis)
        switch (event._tag) {
          case "Text":
            yield* onText(event.text)
            break
          case "Other":
            break
          case "Closed":
            return yield* new SessionEnded({
              detail: `the engine closed the connection (${event.code}${event.reason === "" ? "" : ` ${event.reason}`})`
            })
          case "Failed":
            return yield* new SessionEnded({ detail: `connection error: ${event.message}` })
        }
      }
    })

  return { readLoop }
}
