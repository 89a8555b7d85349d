import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { type InputNotEchoed, PtyClosed, SpawnFailed } from "./errors.js"
import { defaultScrollback, loadEmulator, makeScreen, type ScreenEmulator, type ScreenView } from "./TerminalScreen.js"
import { defaultInjectTimings, type InjectTimings, injectionSteps } from "./terminalInput.js"

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
  /** The relay delivery being typed, when it is one (named in `delivery_verified`). */
  readonly delivery?: { readonly deliveryId: string; readonly eventId: string }
}

export interface Pty {
  readonly pid: number
  /** Raw bytes into the terminal, as a user would type them (no sanitising). */
  readonly write: (data: string) => Effect.Effect<void, PtyClosed>
  /**
   * A message into the terminal: sanitised (no ESC or other control bytes survive), then typed per
   * `mode`. An agent's terminal (AgentRegistry) first waits for the agent to be ready and, for a
   * TUI, fails with `InputNotEchoed` when the text never shows on its screen.
   */
  readonly inject: (text: string, mode: InjectMode) => Effect.Effect<void, PtyClosed | InputNotEchoed>
  readonly resize: (cols: number, rows: number) => Effect.Effect<void, PtyClosed>
  /** The terminal as plain text, as its emulator shows it: the scrollback, then the screen. */
  readonly snapshot: Effect.Effect<string>
  /** The visible screen (lines, cursor, modes) once the output received so far is parsed. */
  readonly screen: Effect.Effect<ScreenView>
  /** The visible screen as ANSI (colours, modes, cursor), to be replayed by another terminal. */
  readonly ansi: Effect.Effect<string>
  /**
   * Exclusive use of the keyboard: `use` gets the raw write and nothing else (no other write, no
   * injection) reaches the terminal until it ends. The keyboard proof types, reads and presses Enter in it.
   */
  readonly withKeyboard: <A, E, R>(
    use: (write: (data: string) => Effect.Effect<void, PtyClosed>) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
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

// ---------------------------------------------------------------------------------------------
// Live layer (node-pty)

export interface PtyHostOptions {
  /** Pauses used by `inject` (default: `defaultInjectTimings`, a few ms). */
  readonly timings?: InjectTimings
  /** Lines the emulator keeps above the screen, for `snapshot` (default 1000). */
  readonly scrollback?: number
  /** The grace between SIGTERM and SIGKILL when no other is given (default 2 s). */
  readonly killGrace?: Duration.DurationInput
}

export const defaultKillGrace: Duration.DurationInput = "2 seconds"
/** After SIGKILL, how long `kill` waits for the exit to be reported before giving up. */
const reapLimit: Duration.DurationInput = "5 seconds"
/** Output chunks a slow `output` subscriber may lag behind before the oldest are dropped. */
const subscriberLag = 4096

type NodePty = typeof import("node-pty")
type NodePtyProcess = ReturnType<NodePty["spawn"]>

let nodePtyModule: Promise<NodePty> | undefined
// Loaded on first spawn, so that importing the broker does not load a native module.
const loadNodePty = (): Promise<NodePty> =>
  (nodePtyModule ??= import("node-pty").then((module) => (module as { default?: NodePty }).default ?? module))

/** Directories searched after the child's PATH (upstream's fallback list, for CLIs installed per user). */
const fallbackPath = (): ReadonlyArray<string> => {
  const home = Os.homedir()
  return [
    Path.join(home, ".local/bin"),
    Path.join(home, ".opencode/bin"),
    Path.join(home, ".claude/local"),
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
    "/opt/homebrew/bin"
  ]
}

type Probe = "Executable" | "NotExecutable" | "Missing"

const probe = (file: string): Probe => {
  try {
    if (!Fs.statSync(file).isFile()) return "NotExecutable"
    Fs.accessSync(file, Fs.constants.X_OK)
    return "Executable"
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EACCES" ? "NotExecutable" : "Missing"
  }
}

/** The absolute path of `command`: as given when it contains a `/`, else the first match on PATH. */
export const resolveCommand = (
  command: string,
  options: { readonly cwd: string; readonly path: string | undefined }
): Effect.Effect<string, SpawnFailed> =>
  Effect.suspend(() => {
    if (command.trim().length === 0) {
      return Effect.fail(new SpawnFailed({ command, reason: "NotFound", detail: "the command is empty" }))
    }
    if (command.includes("/")) {
      const file = Path.resolve(options.cwd, command)
      const found = probe(file)
      return found === "Executable"
        ? Effect.succeed(file)
        : Effect.fail(
          new SpawnFailed({
            command,
            reason: found === "Missing" ? "NotFound" : "NotExecutable",
            detail: found === "Missing" ? `${file} does not exist` : `${file} is not an executable file`
          })
        )
    }
    const dirs = [...(options.path ?? "").split(Path.delimiter).filter((dir) => dir.length > 0), ...fallbackPath()]
    let notExecutable: string | undefined
    for (const dir of dirs) {
      const file = Path.resolve(options.cwd, dir, command)
      const found = probe(file)
      if (found === "Executable") return Effect.succeed(file)
      if (found === "NotExecutable") notExecutable ??= file
    }
    return Effect.fail(
      notExecutable === undefined
        ? new SpawnFailed({ command, reason: "NotFound", detail: "not found on PATH" })
        : new SpawnFailed({ command, reason: "NotExecutable", detail: `${notExecutable} is not executable` })
    )
  })

// The child leads its own session (node-pty calls setsid), so its process group id is its pid:
// signalling the group reaches the children it started in the foreground too.
const signalTree = (pid: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(-pid, signal)
  } catch {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}

const startPty = (
  nodePty: NodePty,
  file: string,
  options: PtySpawnOptions,
  emulator: ScreenEmulator,
  settings: { readonly timings: InjectTimings; readonly scrollback: number; readonly killGrace: Duration.DurationInput }
) =>
  Effect.gen(function*() {
    const env: Record<string, string> = { ...options.env }
    if (env.TERM === undefined || env.TERM === "" || env.TERM === "dumb") env.TERM = "xterm-256color"
    const cwd = options.cwd ?? process.cwd()
    const hub = yield* PubSub.sliding<string | null>(subscriberLag)
    const exit = yield* Deferred.make<PtyExit>()
    const writeLock = yield* Effect.makeSemaphore(1)
    let gone = false
    const cols = Math.max(1, Math.floor(options.cols ?? 80))
    const rows = Math.max(1, Math.floor(options.rows ?? 24))
    const screen = makeScreen(emulator, { cols, rows, scrollback: settings.scrollback })

    const child: NodePtyProcess = yield* Effect.try({
      try: () =>
        nodePty.spawn(file, [...options.args], {
          name: env.TERM ?? "xterm-256color",
          cols,
          rows,
          cwd,
          env
        }),
      catch: (error) => new SpawnFailed({ command: options.command, reason: "Failed", detail: String(error) })
    }).pipe(Effect.tapError(() => Effect.sync(screen.dispose)))

    // Offered directly (no fiber per chunk); only a full hub takes the sliding path of `publish`.
    const offer = (chunk: string | null) => {
      if (!hub.unsafeOffer(chunk)) Effect.runSync(PubSub.publish(hub, chunk))
    }
    child.onData((data) => {
      screen.write(data)
      offer(data)
    })
    child.onExit(({ exitCode, signal }) => {
      gone = true
      offer(null)
      const bySignal = signal !== undefined && signal > 0
      Deferred.unsafeDone(exit, Exit.succeed({ code: bySignal ? null : exitCode, signal: bySignal ? signal : null }))
      try {
        // Not in node-pty's typings: frees the terminal's file descriptors.
        ;(child as unknown as { readonly destroy?: () => void }).destroy?.()
      } catch {
        // the terminal is already closed
      }
    })

    const closed = new PtyClosed({ pid: child.pid })
    const rawWrite = (data: string) =>
      Effect.suspend(() => {
        if (gone) return Effect.fail(closed)
        return Effect.try({ try: () => child.write(data), catch: () => closed })
      })

    const write = (data: string) => writeLock.withPermits(1)(rawWrite(data))

    // One lock for writes and injections: nothing is typed between a message and its Enter.
    const inject = (text: string, mode: InjectMode) =>
      writeLock.withPermits(1)(
        Effect.forEach(
          injectionSteps(text, mode, settings.timings),
          (step) => step._tag === "Write" ? rawWrite(step.data) : Effect.sleep(Duration.millis(step.millis)),
          { discard: true }
        )
      )

    const withKeyboard = <A, E, R>(use: (write: (data: string) => Effect.Effect<void, PtyClosed>) => Effect.Effect<A, E, R>) =>
      writeLock.withPermits(1)(use(rawWrite))

    const resize = (cols: number, rows: number) =>
      Effect.suspend(() => {
        if (gone) return Effect.fail(closed)
        return Effect.try({
          try: () => {
            child.resize(Math.max(1, Math.floor(cols)), Math.max(1, Math.floor(rows)))
            screen.resize(cols, rows)
          },
          catch: () => closed
        })
      })

    const settled = Effect.promise(screen.settled)

    const output: Stream.Stream<string> = Stream.unwrapScoped(
      Effect.gen(function*() {
        const queue = yield* PubSub.subscribe(hub)
        // `gone` and the end marker are set in one callback: a subscriber that came after it must not wait.
        if (gone) return Stream.empty
        return Stream.fromQueue(queue).pipe(
          Stream.takeWhile((chunk): chunk is string => chunk !== null),
          Stream.filter((chunk): chunk is string => chunk !== null)
        )
      })
    )

    const exited = Deferred.await(exit)

    const kill = (grace?: Duration.DurationInput) =>
      Effect.gen(function*() {
        if (gone) return
        // SIGHUP too: the terminal is going away, and interactive shells ignore SIGTERM.
        signalTree(child.pid, "SIGTERM")
        signalTree(child.pid, "SIGHUP")
        const ended = yield* Effect.timeoutOption(exited, grace ?? settings.killGrace)
        if (Option.isSome(ended)) return
        signalTree(child.pid, "SIGKILL")
        yield* Effect.timeoutOption(exited, reapLimit)
      }).pipe(Effect.withSpan("Pty.kill", { attributes: { pid: child.pid } }))

    yield* Effect.addFinalizer(() => Effect.sync(screen.dispose))

    return {
      pid: child.pid,
      write,
      inject,
      resize,
      snapshot: Effect.zipRight(settled, Effect.sync(screen.text)),
      screen: Effect.zipRight(settled, Effect.sync(screen.view)),
      ansi: Effect.zipRight(settled, Effect.sync(screen.ansi)),
      withKeyboard,
      output,
      exited,
      kill
    } satisfies Pty
  })

export const makeWith = (options: PtyHostOptions = {}) =>
  Effect.sync(() => {
    const settings = {
      timings: options.timings ?? defaultInjectTimings,
      scrollback: options.scrollback ?? defaultScrollback,
      killGrace: options.killGrace ?? defaultKillGrace
    }

    const spawn = Effect.fn("PtyHost.spawn")(function*(spawnOptions: PtySpawnOptions) {
      const cwd = spawnOptions.cwd ?? process.cwd()
      const cwdOk = yield* Effect.sync(() => {
        try {
          return Fs.statSync(cwd).isDirectory()
        } catch {
          return false
        }
      })
      if (!cwdOk) {
        return yield* new SpawnFailed({
          command: spawnOptions.command,
          reason: "InvalidCwd",
          detail: `the working directory ${cwd} does not exist`
        })
      }
      const file = yield* resolveCommand(spawnOptions.command, { cwd, path: spawnOptions.env.PATH ?? process.env.PATH })
      const nodePty = yield* Effect.tryPromise({
        try: loadNodePty,
        catch: (error) =>
          new SpawnFailed({ command: spawnOptions.command, reason: "Unavailable", detail: `node-pty is unavailable: ${String(error)}` })
      })
      const emulator = yield* Effect.tryPromise({
        try: loadEmulator,
        catch: (error) =>
          new SpawnFailed({ command: spawnOptions.command, reason: "Unavailable", detail: `the terminal emulator is unavailable: ${String(error)}` })
      })
      // Released in reverse: the process is killed, then its screen is disposed.
      return yield* Effect.acquireRelease(
        startPty(nodePty, file, { ...spawnOptions, cwd }, emulator, settings),
        (pty) => pty.kill()
      )
    })

    return PtyHost.of({ spawn })
  })

export const make = makeWith()

export const layer: Layer.Layer<PtyHost> = Layer.effect(PtyHost, make)

export const layerWith = (options: PtyHostOptions): Layer.Layer<PtyHost> => Layer.effect(PtyHost, makeWith(options))
