import type { InjectMode } from "./PtyHost.js"

// Pure helpers for typing a message into a terminal: what bytes, in what order, with which pauses.

/** Start and end of a bracketed paste (xterm `CSI 200 ~` / `CSI 201 ~`). */
export const pasteStart = "\x1b[200~"
export const pasteEnd = "\x1b[201~"
export const enter = "\r"
/** Two ESCs: interrupts the agent's current turn in claude / codex / gemini. */
export const steerKeys = "\x1b\x1b"

/**
 * Pauses between the steps of one injection, in milliseconds. Upstream spent 183 ms of fixed delay
 * per message; these stay at a few ms. `steerPauseMillis` is longer because a TUI only reads a lone
 * ESC as a key once its escape-sequence timeout has passed.
 */
export interface InjectTimings {
  /** Between the typed text and Enter (`type` mode): lets a line program read the text first. */
  readonly typeSettleMillis: number
  /** Between the end of a bracketed paste and Enter (`paste` mode). */
  readonly pasteSettleMillis: number
  /** After ESC ESC, before the message (`steer`). */
  readonly steerPauseMillis: number
}

export const defaultTypeSettleMillis = 5
export const defaultPasteSettleMillis = 5
export const defaultSteerPauseMillis = 25

export const defaultInjectTimings: InjectTimings = {
  typeSettleMillis: defaultTypeSettleMillis,
  pasteSettleMillis: defaultPasteSettleMillis,
  steerPauseMillis: defaultSteerPauseMillis
}

/**
 * The text with every control byte removed except `\n` and `\t`: ESC (so no escape sequence, in
 * particular no `ESC [201~` that would close a bracketed paste), C0 keys such as `^C` or a lone `\r`
 * (Enter), DEL (backspace) and the C1 range (8-bit CSI / OSC). `\r\n` and lone `\r` become `\n`
 * first, so a CRLF message keeps its line breaks without pressing Enter.
 */
export const sanitize = (text: string): string =>
  text
    .replace(/\r\n?/g, "\n")
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, "")

export type InjectStep =
  | { readonly _tag: "Write"; readonly data: string }
  | { readonly _tag: "Pause"; readonly millis: number }

const write = (data: string): InjectStep => ({ _tag: "Write", data })
const pause = (millis: number): ReadonlyArray<InjectStep> => millis > 0 ? [{ _tag: "Pause", millis }] : []

/**
 * The keystrokes that type `text` (sanitised here) into a terminal:
 * - `paste`: `ESC[200~` text `ESC[201~`, settle, Enter;
 * - `type`: the text, settle, Enter;
 * - with `steer`, ESC ESC and a pause come first.
 */
export const injectionSteps = (
  text: string,
  mode: InjectMode,
  timings: InjectTimings = defaultInjectTimings
): ReadonlyArray<InjectStep> => {
  const body = sanitize(text)
  const steer = mode.steer ? [write(steerKeys), ...pause(timings.steerPauseMillis)] : []
  const typed = mode.input === "paste"
    ? [write(`${pasteStart}${body}${pasteEnd}`), ...pause(timings.pasteSettleMillis)]
    : [write(body), ...pause(timings.typeSettleMillis)]
  return [...steer, ...typed, write(enter)]
}
