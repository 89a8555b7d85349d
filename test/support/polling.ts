import { Effect } from "effect"

// Polling for tests that watch real sockets and processes.

/** A real-time pause (for polling under the TestClock, where Effect.sleep stands still). */
export const realSleep = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** Polls `check` in real time (so it also works under the TestClock) until it holds; dies after ~15 s. */
export const eventually = <E, R>(label: string, check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1_500; i++) {
      if (yield* check) return
      yield* realSleep(10)
    }
    return yield* Effect.dieMessage(`never happened: ${label}`)
  })
