import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Json } from "../wire/Json.js"

/** A broker event as sent on the control API's `/ws`: the bare event JSON. */
export type BrokerEvent = { readonly kind: string; readonly seq?: number; readonly [field: string]: Json | undefined }

/** Kinds broadcast without a `seq` and never replayed. */
export const ephemeralKinds: ReadonlySet<string> = new Set(["worker_stream", "delivery_active"])

export const replayCapacity = 1000

export interface EventSubscription {
  /** `replay_gap` (when `sinceSeq` aged out of the buffer), then the replayed events, then live ones. */
  readonly events: Stream.Stream<BrokerEvent>
}

export interface SubscribeOptions {
  /** Only these kinds (replayed and live); absent: every kind. */
  readonly kinds?: ReadonlyArray<string>
}

export class EventLog extends Context.Tag("relay-broker/EventLog")<EventLog, {
  /** Durable kinds get the next `seq` and enter the replay buffer; ephemeral ones are only broadcast. */
  readonly publish: (kind: string, fields?: { readonly [field: string]: Json | undefined }) => Effect.Effect<void>
  /** Subscribes at once (in the caller's scope), so no event between the replay and the live tail is missed. */
  readonly subscribe: (sinceSeq?: number, options?: SubscribeOptions) => Effect.Effect<EventSubscription, never, Scope.Scope>
  readonly recent: Effect.Effect<ReadonlyArray<BrokerEvent>>
}>() {}

interface Subscriber {
  readonly queue: Queue.Queue<BrokerEvent>
  readonly kinds: ReadonlySet<string> | undefined
}

// The replay buffer is a ring written in place, and each event goes straight into the queue of each
// subscriber that wants its kind: publishing copies nothing and wakes only those subscribers.
// Publishing and subscribing are each one synchronous step, so a subscriber's replay cut-off is exact.
export const make = Effect.sync(() => {
  const ring: Array<BrokerEvent | undefined> = new Array(replayCapacity)
  let nextSeq = 1
  const subscribers = new Set<Subscriber>()

  /** The buffered events, oldest first. */
  const buffered = (): Array<BrokerEvent> => {
    const oldest = Math.max(1, nextSeq - replayCapacity)
    const events: Array<BrokerEvent> = []
    for (let seq = oldest; seq < nextSeq; seq++) events.push(ring[(seq - 1) % replayCapacity]!)
    return events
  }

  const broadcast = (event: BrokerEvent) => {
    for (const subscriber of subscribers) {
      if (subscriber.kinds === undefined || subscriber.kinds.has(event.kind)) subscriber.queue.unsafeOffer(event)
    }
  }

  const publish = (kind: string, fields: { readonly [field: string]: Json | undefined } = {}) =>
    Effect.flatMap(Clock.currentTimeMillis, (timestamp) =>
      Effect.sync(() => {
        if (ephemeralKinds.has(kind)) return broadcast({ ...fields, kind })
        const event: BrokerEvent = { timestamp, ...fields, kind, seq: nextSeq }
        ring[(nextSeq - 1) % replayCapacity] = event
        nextSeq += 1
        broadcast(event)
      }))

  const subscribe = (sinceSeq?: number, options: SubscribeOptions = {}) =>
    Effect.gen(function*() {
      const queue = yield* Queue.unbounded<BrokerEvent>()
      const kinds = options.kinds === undefined ? undefined : new Set(options.kinds)
      const subscriber: Subscriber = { queue, kinds }
      const backlog = yield* Effect.acquireRelease(
        Effect.sync(() => {
          subscribers.add(subscriber)
          const buffer = buffered()
          const since = sinceSeq ?? nextSeq - 1
          const replay = buffer.filter((event) => (event.seq ?? 0) > since && (kinds === undefined || kinds.has(event.kind)))
          const oldest = buffer[0]?.seq
          const gap: ReadonlyArray<BrokerEvent> = oldest !== undefined && since + 1 < oldest
            ? [{ kind: "replay_gap", requestedSinceSeq: since, oldestAvailable: oldest, droppedCount: oldest - since - 1 }]
            : []
          return [...gap, ...replay]
        }),
        () => Effect.zipRight(Effect.sync(() => subscribers.delete(subscriber)), Queue.shutdown(queue))
      )
      return { events: Stream.concat(Stream.fromIterable(backlog), Stream.fromQueue(queue)) }
    })

  return EventLog.of({ publish, subscribe, recent: Effect.sync(buffered) })
})

export const layer: Layer.Layer<EventLog> = Layer.effect(EventLog, make)
