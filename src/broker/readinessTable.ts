import * as Duration from "effect/Duration"
import type { ScreenView } from "./TerminalScreen.js"

// When each harness can take keys, read from its screen (harnesses.md §1), what a login / trust /
// onboarding screen looks like, and how a long paste shows in its input box (§2). Pure.

export interface ReadinessProfile {
  /** The harness the command names (`claude`, `codex`, ...), or `line` for any other program. */
  readonly harness: string
  /** `tui`: waits for its prompt and proves every message on screen; `line`: ready at once, typed as is. */
  readonly kind: "tui" | "line"
  /** After this long without a ready sign (and not blocked), the agent is treated as ready, with a warning. */
  readonly timeout: Duration.Duration
  /** The harness's own sign that its prompt is live. */
  readonly ready: (view: ScreenView) => boolean
  /** A login, trust or onboarding screen: nothing is typed into it. */
  readonly blocked: (view: ScreenView) => boolean
  /** How the input box shows a long paste instead of its text. */
  readonly pastePlaceholder: RegExp
  /** Keys that empty the input box (sent before a message is typed again). */
  readonly clearKeys: string
}

// Named per-harness timeouts: below upstream's 25 s fallback, above the offline boot times measured
// in harnesses.md (claude 5.5 s, 18.6 s with an MCP config; gemini 5.4 s; opencode up to 17 s).
export const claudeReadyTimeout = Duration.seconds(20)
export const codexReadyTimeout = Duration.seconds(12)
export const geminiReadyTimeout = Duration.seconds(15)
export const opencodeReadyTimeout = Duration.seconds(20)
export const otherTuiReadyTimeout = Duration.seconds(15)

/** Ctrl-U: deletes to the start of the line in every known input box (an empty box ignores it). */
export const clearLine = "\x15"

// Box-drawing characters and the prompt glyphs the known harnesses draw at the start of their input line.
const boxChars = /[\u2500-\u257f]/g
const promptLine = (glyphs: RegExp) => (view: ScreenView) =>
  view.lines.some((line) => glyphs.test(line.replace(boxChars, "").trimStart()))

const screenText = (view: ScreenView) => view.lines.join("\n")
const shows = (pattern: RegExp) => (view: ScreenView) => pattern.test(screenText(view))

const anyPlaceholder = /\[Pasted[^\]\n]*\]/g
const genericBlocked = /\b(sign in|log in|login method|authenticate|do you trust|trust this folder|trust the files)\b/i

const claude: ReadinessProfile = {
  harness: "claude",
  kind: "tui",
  timeout: claudeReadyTimeout,
  // `ESC[?2004h` arrives with the prompt `❯` (older versions: `>` in a box).
  ready: (view) => view.bracketedPaste && promptLine(/^[❯>](\s|$)/)(view),
  blocked: shows(/Do you trust the files in this folder|Select login method|Choose the text style|Paste code here if prompted|Browser didn't open/i),
  pastePlaceholder: /\[Pasted text #\d+[^\]\n]*\]/g,
  clearKeys: clearLine
}

const codex: ReadinessProfile = {
  harness: "codex",
  kind: "tui",
  timeout: codexReadyTimeout,
  // `ESC]7501;state=idle` once it is idle; before it, the composer's `›` line with bracketed paste.
  ready: (view) =>
    (view.osc.get(7501) ?? "").includes("state=idle") || view.bracketedPaste && promptLine(/^›(\s|$)/)(view),
  blocked: shows(/Sign in with ChatGPT|Provide your own API key|allow Codex to work in this folder|Do you trust/i),
  pastePlaceholder: /\[Pasted Content \d+ chars\]/g,
  clearKeys: clearLine
}

const gemini: ReadinessProfile = {
  harness: "gemini",
  kind: "tui",
  timeout: geminiReadyTimeout,
  ready: (view) => view.bracketedPaste && (shows(/Type your message/)(view) || promptLine(/^>(\s|$)/)(view)),
  blocked: shows(/Do you trust this folder|Trust folder|How would you like to authenticate|Login with Google|Get started/i),
  pastePlaceholder: /\[Pasted Text: \d+ lines?\]/g,
  clearKeys: clearLine
}

const opencode: ReadinessProfile = {
  harness: "opencode",
  kind: "tui",
  timeout: opencodeReadyTimeout,
  // Its prompt frame ends with the cursor colour (`ESC]12;…`), a cursor style and the cursor shown;
  // bracketed paste comes seconds earlier and means nothing.
  ready: (view) => view.osc.has(12) && view.cursorVisible && view.lines.some((line) => line.trim().length > 0),
  blocked: shows(genericBlocked),
  pastePlaceholder: /\[Pasted ~\d+ lines?\]/g,
  clearKeys: clearLine
}

/** Other agent CLIs upstream knows: a prompt glyph with bracketed paste on. */
const otherTui = (harness: string): ReadinessProfile => ({
  harness,
  kind: "tui",
  timeout: otherTuiReadyTimeout,
  ready: (view) => view.bracketedPaste && promptLine(/^(❯|›|>|>>)(\s|$)/)(view),
  blocked: shows(genericBlocked),
  pastePlaceholder: anyPlaceholder,
  clearKeys: clearLine
})

const line: ReadinessProfile = {
  harness: "line",
  kind: "line",
  timeout: Duration.zero,
  ready: () => true,
  blocked: () => false,
  pastePlaceholder: anyPlaceholder,
  clearKeys: ""
}

const profiles: Readonly<Record<string, ReadinessProfile>> = {
  claude,
  codex,
  gemini,
  opencode,
  grok: otherTui("grok"),
  droid: otherTui("droid"),
  goose: otherTui("goose"),
  aider: otherTui("aider"),
  "cursor-agent": otherTui("cursor-agent"),
  qwen: otherTui("qwen")
}

/** The profile of the program `command` runs (`/usr/bin/claude`, `claude.exe`): a known harness, else a line program. */
export const readinessProfile = (command: string): ReadinessProfile => {
  const base = command.split("/").pop()?.replace(/\.(exe|cmd)$/i, "").toLowerCase() ?? ""
  return Object.hasOwn(profiles, base) ? profiles[base]! : line
}

export const knownTuis: ReadonlyArray<string> = Object.keys(profiles)

// -- the keyboard proof ---------------------------------------------------------------------------

/** Characters of the typed text's end looked for on screen: enough to be distinctive, short enough for a box. */
export const echoTailLength = 24

const squeeze = (text: string): string => text.replace(boxChars, "").replace(/\s+/g, "")

const occurrences = (haystack: string, needle: string): number => {
  if (needle.length === 0) return 0
  let count = 0
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + needle.length)) count++
  return count
}

/** What the screen says about typed text: its tail (spaces and box borders ignored) and the paste placeholders. */
export interface EchoEvidence {
  readonly tail: number
  readonly placeholders: ReadonlyArray<string>
}

export const echoEvidence = (profile: ReadinessProfile, view: ScreenView, typed: string): EchoEvidence => {
  const screen = view.lines.join("\n")
  const needle = squeeze(typed).slice(-echoTailLength)
  return {
    tail: occurrences(squeeze(screen), needle),
    placeholders: [...screen.matchAll(profile.pastePlaceholder)].map((match) => match[0])
  }
}

/** The text shows now and did not before: one more copy of its tail, or a paste placeholder not there before. */
export const echoed = (before: EchoEvidence, after: EchoEvidence): boolean =>
  after.tail > before.tail ||
  after.placeholders.length > before.placeholders.length ||
  after.placeholders.some((placeholder) => !before.placeholders.includes(placeholder))
