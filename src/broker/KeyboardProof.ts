import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type { ReadinessHandle } from "./AgentReadiness.js"
import { InputNotEchoed, type PtyClosed } from "./errors.js"
import type { InjectMode, Pty } from "./PtyHost.js"
import { echoed, echoEvidence, type ReadinessProfile } from "./readinessTable.js"
import { defaultInjectTimings, enter, pasteEnd, pasteStart, sanitize, steerKeys } from "./terminalInput.js"

// Typing a message into an agent once it is ready, and proving it landed: for a TUI the typed text
// (or its paste placeholder) must show on the emulated screen before Enter is pressed. Text that does
// not show was dropped: the input box is cleared and the text typed again on `retypeSchedule`; Enter
// is never pressed on text that is not there. Line programs are typed into as before.

/** How long one typing waits for its echo on screen (codex lagged 1.4 s once and kept the keys). */
export const echoWindow = Duration.seconds(2)
/** How often the screen is read while waiting for the echo. */
const echoPoll = Duration.millis(15)
/** Between a cleared input box and the next typing: 5 typings in all, ~12 s with the echo windows. */
export const retypeSchedule = Schedule.spaced("300 millis").pipe(Schedule.intersect(Schedule.recurs(4)))

/** `none`: a line program, typed into without a screen check. */
export type Verification = "echo" | "timeout_fallback" | "none"

export interface Typed {
  readonly verification: Verification
  readonly reason?: string
  readonly typings: number
}

class EchoMissing extends Data.TaggedError("EchoMissing")<{}> {}

export interface Keyboard {
  readonly name: string
  readonly pty: Pty
  readonly profile: ReadinessProfile
  readonly readiness: ReadinessHandle
}

/** Reads the screen until `typed` shows (against `before`), or `echoWindow` passes. */
const awaitEcho = (keyboard: Keyboard, before: ReturnType<typeof echoEvidence>, typed: string) =>
  Effect.map(keyboard.pty.screen, (view) => echoed(before, echoEvidence(keyboard.profile, view, typed))).pipe(
    Effect.repeat({
      schedule: Schedule.spaced(echoPoll).pipe(Schedule.upTo(echoWindow)),
      until: (shown) => shown
    }),
    Effect.zipRight(Effect.map(keyboard.pty.screen, (view) => echoed(before, echoEvidence(keyboard.profile, view, typed))))
  )

/**
 * Waits for the agent to be ready, then types `text`:
 * - a line program: as `PtyHost.inject` does (text, settle, Enter);
 * - a TUI: text, its echo on screen, Enter (`echo`); if the agent was let through by the readiness
 *   timeout, the text is typed once and Enter pressed even without an echo (`timeout_fallback`).
 */
export const typeProved = (
  keyboard: Keyboard,
  text: string,
  mode: InjectMode
): Effect.Effect<Typed, PtyClosed | InputNotEchoed> =>
  Effect.gen(function*() {
    const ready = yield* keyboard.readiness.awaitReady
    const { profile, pty } = keyboard
    if (profile.kind === "line") {
      yield* pty.inject(text, mode)
      return { verification: "none", typings: 1 } satisfies Typed
    }
    const body = sanitize(text)
    const keys = mode.input === "paste" ? `${pasteStart}${body}${pasteEnd}` : body
    // Nothing visible to look for (an empty message), or let through by the timeout: typed once.
    const lenient = ready.decidedBy === "timeout" || body.trim().length === 0
    return yield* pty.withKeyboard((write) =>
      Effect.gen(function*() {
        if (mode.steer) {
          yield* write(steerKeys)
          yield* Effect.sleep(Duration.millis(defaultInjectTimings.steerPauseMillis))
        }
        let typings = 0
        const typeOnce = Effect.gen(function*() {
          const before = echoEvidence(profile, yield* pty.screen, body)
          typings += 1
          yield* write(keys)
          if (yield* awaitEcho(keyboard, before, body)) return "echo" as const
          if (lenient) return "timeout_fallback" as const
          // Dropped, or half there: empty the box before typing it again.
          yield* write(profile.clearKeys.repeat(Math.min(50, body.split("\n").length + 1)))
          return yield* new EchoMissing()
        })
        const verification = yield* typeOnce.pipe(
          Effect.retry(retypeSchedule),
          Effect.catchTag("EchoMissing", () =>
            new InputNotEchoed({
              agent: keyboard.name,
              attempts: typings,
              detail: `no echo within ${Duration.toMillis(echoWindow)} ms of each typing; Enter was not pressed`
            }))
        )
        yield* write(enter)
        return verification === "echo"
          ? { verification, typings }
          : {
            verification,
            typings,
            reason: body.trim().length === 0
              ? "nothing visible to look for"
              : ready.warning ?? "no ready sign and no echo on screen: Enter pressed after the readiness timeout"
          }
      })
    )
  })
