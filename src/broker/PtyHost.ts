import { Context, type Duration, type Effect, type Scope, type Stream } from "effect"
import type { PtyClosed, SpawnFailed } from "./errors.js"

// CONTRACT ONLY. The live layer (node-pty) is to be written in this file: `make` + `layer`.

export interface PtySpawnOptions {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd?: string
  /** The complete environment of the child (the caller decides what it inherits). */
  readonly env: Readonly<Record<string, string>>
  readonly cols?: number
  readonly rows?: number
}

export interface PtyExit {
  readonly code: number | null
  readonly signal: number | null
}

/**
 * How a message is typed into a terminal:
 * - `paste`: bracketed paste, then Enter (TUIs: claude, codex, gemini);
 * - `type`: the raw text, a short settle, then Enter (line programs: bash, cat, node scripts).
 * `steer` first interrupts the agent (ESC ESC, then a short pause).
 */
export interface InjectMode {
  readonly input: "paste" | "type"
  readonly steer: boolean
}

export interface Pty {
  readonly pid: number
  /** Raw bytes into the terminal, as a user would type them (no sanitising). */
  readonly write: (data: string) => Effect.Effect<void, PtyClosed>
  /** A message into the terminal: sanitised (no ESC or other control bytes survive), then typed per `mode`. */
  readonly inject: (text: string, mode: InjectMode) => Effect.Effect<void, PtyClosed>
  readonly resize: (cols: number, rows: number) => Effect.Effect<void, PtyClosed>
  /** The recent output as plain text (ANSI stripped), from a bounded ring buffer. */
  readonly snapshot: Effect.Effect<string>
  /** Live output chunks from the moment of subscription. */
  readonly output: Stream.Stream<string>
  /** Completes when the process has exited (at once if it already has). */
  readonly exited: Effect.Effect<PtyExit>
  /** SIGTERM, wait up to `grace` (default 2 s), then SIGKILL. Completes once the process is gone. */
  readonly kill: (grace?: Duration.DurationInput) => Effect.Effect<void>
}

export class PtyHost extends Context.Tag("relay-broker/PtyHost")<PtyHost, {
  /** Starts a process in a pseudo-terminal. The caller's scope owns it: closing the scope kills it. */
  readonly spawn: (options: PtySpawnOptions) => Effect.Effect<Pty, SpawnFailed, Scope.Scope>
}>() {}
