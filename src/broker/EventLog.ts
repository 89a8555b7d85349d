import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
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

export class EventLog extends Context.Tag("relay-broker/EventLog")<EventLog, {
  /** Durable kinds get the next `seq` and enter the replay buffer; ephemeral ones are only broadcast. */
  readonly publish: (kind: string, fields?: { readonly [field: string]: Json | undefined }) => Effect.Effect<void>
  /** Subscribes at once (in the caller's scope), so no event between the replay and the live tail is missed. */
  readonly subscribe: (sinceSeq?: number) => Effect.Effect<EventSubscription, never, Scope.Scope>
  readonly recent: Effect.Effect<ReadonlyArray<BrokerEvent>>
}>() {}

interface State {
  readonly nextSeq: number
  readonly buffer: ReadonlyArray<BrokerEvent>
}

export const make = Effect.gen(function*() {
  const hub = yield* PubSub.unbounded<BrokerEvent>()
  const state = yield* Ref.make<State>({ nextSeq: 1, buffer: [] })
  // Publishing and subscribing are serialised so a subscriber's replay cut-off is exact.
  const lock = yield* Effect.makeSemaphore(1)

  const publish = (kind: string, fields: { readonly [field: string]: Json | undefined } = {}) =>
    lock.withPermits(1)(Effect.gen(function*() {
      const timestamp = yield* Clock.currentTimeMillis
      if (ephemeralKinds.has(kind)) {
        yield* PubSub.publish(hub, { ...fields, kind })
        return
      }
      const event = yield* Ref.modify(state, (current): [BrokerEvent, State] => {
        const event: BrokerEvent = { timestamp, ...fields, kind, seq: current.nextSeq }
        const buffer = current.buffer.length >= replayCapacity
          ? [...current.buffer.slice(current.buffer.length - replayCapacity + 1), event]
          : [...current.buffer, event]
        return [event, { nextSeq: current.nextSeq + 1, buffer }]
      })
      yield* PubSub.publish(hub, event)
    }))

  const subscribe = (sinceSeq?: number) =>
    lock.withPermits(1)(Effect.gen(function*() {
      const queue = yield* PubSub.subscribe(hub)
      const { buffer, nextSeq } = yield* Ref.get(state)
      const since = sinceSeq ?? nextSeq - 1
      const replay = buffer.filter((event) => (event.seq ?? 0) > since)
      const oldest = buffer[0]?.seq
      const gap: ReadonlyArray<BrokerEvent> = oldest !== undefined && since + 1 < oldest
        ? [{ kind: "replay_gap", requestedSinceSeq: since, oldestAvailable: oldest, droppedCount: oldest - since - 1 }]
        : []
      const live = Stream.fromQueue(queue)
      return { events: Stream.concat(Stream.fromChunk(Chunk.fromIterable([...gap, ...replay])), live) }
    }))

  return EventLog.of({
    publish,
    subscribe,
    recent: Effect.map(Ref.get(state), (current) => current.buffer)
  })
})

export const layer: Layer.Layer<EventLog> = Layer.effect(EventLog, make)
