import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { DeadLetter, DeadLetters } from "./DeadLetters.js"
import { type Surface, type Surfaceable, untracked } from "./deliverySurface.js"
import type { EventLog } from "./EventLog.js"

// `POST /api/dead-letters/redeliver`: re-surfaces dead letters to their (live) agents, bypassing
// the book (their msg_ids were committed when they were dead-lettered).

export interface RedeliverReport {
  readonly redelivered: ReadonlyArray<{ readonly id: string; readonly agent: string; readonly msg_id: string | null }>
  readonly failed: ReadonlyArray<{ readonly id: string; readonly agent: string; readonly error: string }>
}

export class NoSuchDeadLetter extends Schema.TaggedError<NoSuchDeadLetter>()("NoSuchDeadLetter", {
  id: Schema.String
}) {
  override get message(): string {
    return `no dead letter with id '${this.id}'`
  }
}

export const makeRedeliver = (services: {
  readonly deadLetters: DeadLetters["Type"]
  readonly events: EventLog["Type"]
  readonly surface: Surface
}) => {
  const { deadLetters, events } = services

  const redeliverLetter = (letter: DeadLetter) =>
    Effect.gen(function*() {
      if (letter.payload === null) {
        return { ok: false as const, error: `nothing to redeliver: a ${letter.reason} dead letter has no payload` }
      }
      const frame: Surfaceable = {
        agent: letter.agent,
        agent_id: letter.agent_id ?? "",
        delivery_id: letter.delivery_id ?? letter.id,
        msg_id: letter.msg_id ?? letter.id,
        seq: letter.seq ?? 0,
        mode: letter.mode,
        payload: letter.payload
      }
      return yield* services.surface.inject(frame, untracked).pipe(
        Effect.matchEffect({
          onSuccess: () =>
            Effect.gen(function*() {
              yield* deadLetters.remove([letter.id]).pipe(
                Effect.catchTag("PersistFailed", (error) => Effect.logError("dead letter removal not persisted", error))
              )
              yield* events.publish("dead_letter_redelivered", {
                id: letter.id,
                name: letter.agent,
                event_id: letter.msg_id,
                delivery_id: letter.delivery_id
              })
              return { ok: true as const }
            }),
          onFailure: (error) =>
            Effect.as(
              deadLetters.markAttempt(letter.id).pipe(Effect.catchTag("PersistFailed", () => Effect.void)),
              { ok: false as const, error: error.message }
            )
        })
      )
    })

  return Effect.fn("Deliveries.redeliver")(function*(which: { readonly id: string } | "all") {
    let letters: ReadonlyArray<DeadLetter>
    if (which === "all") {
      letters = yield* deadLetters.list
    } else {
      const found = yield* deadLetters.get(which.id)
      if (Option.isNone(found)) return yield* new NoSuchDeadLetter({ id: which.id })
      letters = [found.value]
    }
    const redelivered: Array<RedeliverReport["redelivered"][number]> = []
    const failed: Array<RedeliverReport["failed"][number]> = []
    for (const letter of letters) {
      const result = yield* redeliverLetter(letter)
      if (result.ok) redelivered.push({ id: letter.id, agent: letter.agent, msg_id: letter.msg_id })
      else failed.push({ id: letter.id, agent: letter.agent, error: result.error })
    }
    return { redelivered, failed } satisfies RedeliverReport
  })
}
