import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { EventLog } from "../broker/EventLog.js"
import type { LocalRecord } from "./deliveryStates.js"

// What this daemon did with each message it received for one of its agents: queued, injected into the
// terminal, or dead-lettered. Read from the event log (delivery_queued / delivery_injected /
// delivery_dead_lettered), so the delivery path itself is untouched. Bounded: the most recent
// `capacity` messages.

export const capacity = 5_000

export class MessageRecords extends Context.Tag("relay-broker/MessageRecords")<MessageRecords, {
  /** Per local agent name, what happened to message `id` here. */
  readonly lookup: (id: string) => Effect.Effect<ReadonlyMap<string, LocalRecord>>
  /**
   * Waits (at most `timeout`) until each of `agents` has an outcome for message `id` (injected or
   * failed), then answers what is known.
   */
  readonly awaitOutcome: (
    id: string,
    agents: ReadonlyArray<string>,
    timeout: Duration.DurationInput
  ) => Effect.Effect<ReadonlyMap<string, LocalRecord>>
}>() {}

/** In place: copying the whole map per event cost O(capacity) on every delivery event. */
const update = (records: Map<string, Map<string, LocalRecord>>, id: string, agent: string, change: (record: LocalRecord) => LocalRecord) => {
  const perAgent = records.get(id) ?? new Map<string, LocalRecord>()
  perAgent.set(agent, change(perAgent.get(agent) ?? {}))
  records.delete(id)
  records.set(id, perAgent)
  while (records.size > capacity) records.delete(records.keys().next().value!)
}

const hasOutcome = (record: LocalRecord | undefined) => record?.injectedAt !== undefined || record?.failed !== undefined

export const make = Effect.gen(function*() {
  const events = yield* EventLog
  const records = new Map<string, Map<string, LocalRecord>>()
  // Bumped after each change: `awaitOutcome` re-reads the records when it moves.
  const version = yield* SubscriptionRef.make(0)
  const changed = (id: string, agent: string, change: (record: LocalRecord) => LocalRecord) =>
    Effect.zipRight(Effect.sync(() => update(records, id, agent, change)), SubscriptionRef.update(version, (n) => n + 1))
  const subscription = yield* events.subscribe(undefined, {
    kinds: ["delivery_queued", "delivery_injected", "delivery_dead_lettered"]
  })
  yield* subscription.events.pipe(
    Stream.runForEach((event) =>
      Effect.gen(function*() {
        const id = event["event_id"] ?? event["msg_id"]
        const agent = event["name"] ?? event["agent"]
        if (typeof id !== "string" || typeof agent !== "string") return
        const at = yield* Clock.currentTimeMillis
        switch (event.kind) {
          case "delivery_queued":
            return yield* changed(id, agent, (r) => ({ ...r, queuedAt: at }))
          case "delivery_injected":
            return yield* changed(id, agent, (r) => ({ ...r, injectedAt: at }))
          case "delivery_dead_lettered": {
            const reason = typeof event["reason"] === "string" ? event["reason"] : "dead_lettered"
            return yield* changed(id, agent, (r) => ({ ...r, failed: reason }))
          }
        }
      })
    ),
    Effect.forkScoped
  )

  const lookup = (id: string): Effect.Effect<ReadonlyMap<string, LocalRecord>> =>
    Effect.sync(() => new Map(records.get(id) ?? []))

  const awaitOutcome = (id: string, agents: ReadonlyArray<string>, timeout: Duration.DurationInput) =>
    version.changes.pipe(
      Stream.map(() => records.get(id) ?? new Map<string, LocalRecord>()),
      Stream.filter((perAgent) => agents.every((agent) => hasOutcome(perAgent.get(agent)))),
      Stream.runHead,
      Effect.timeoutOption(timeout),
      Effect.zipRight(lookup(id))
    )

  return MessageRecords.of({ lookup, awaitOutcome })
})

export const layer: Layer.Layer<MessageRecords, never, EventLog> = Layer.scoped(MessageRecords, make)
