import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

// The user's terminal in raw mode for as long as the scope is open. It is restored when the scope
// closes (detach, error, interruption) and, as a last resort, when the process exits or is signalled.

/** The sequences that undo what an agent's output may have switched on in the user's terminal. */
export const resetModes = [
  "\x1b[?1049l", // leave the alternate screen
  "\x1b[?25h", // show the cursor
  "\x1b[?2004l", // bracketed paste off
  "\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l", // mouse reporting off
  "\x1b[?1l\x1b>", // normal cursor keys and keypad
  "\x1b[0m" // default colours
].join("")

export const rawTerminal = (input: NodeJS.ReadStream, output: NodeJS.WriteStream): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const wasRaw = input.isTTY === true && input.isRaw
      let restored = false
      const restore = () => {
        if (restored) return
        restored = true
        try {
          if (input.isTTY === true) input.setRawMode(wasRaw)
        } catch {
          // the terminal is gone
        }
        if (output.isTTY === true) output.write(resetModes)
        input.pause()
        process.off("exit", restore)
        for (const signal of signals) process.off(signal, onSignal)
      }
      const signals: ReadonlyArray<NodeJS.Signals> = ["SIGTERM", "SIGHUP", "SIGINT"]
      const onSignal = (signal: NodeJS.Signals) => {
        restore()
        process.kill(process.pid, signal)
      }
      process.once("exit", restore)
      for (const signal of signals) process.once(signal, onSignal)
      if (input.isTTY === true) input.setRawMode(true)
      input.resume()
      return restore
    }),
    (restore) => Effect.sync(restore)
  )
