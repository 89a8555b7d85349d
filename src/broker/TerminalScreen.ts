import type * as XtermHeadless from "@xterm/headless"

// A terminal emulator per agent (`@xterm/headless`): the PTY's output goes in, and what a person
// looking at the terminal would see comes out (the screen's lines, the cursor, the modes the program
// set). Snapshots, `logs`, readiness and the keyboard proof read it instead of the raw bytes.

type XtermModule = typeof XtermHeadless
type SerializeModule = typeof import("@xterm/addon-serialize")

export interface ScreenEmulator {
  readonly xterm: XtermModule
  readonly serialize: SerializeModule
}

let emulatorModules: Promise<ScreenEmulator> | undefined

/**
 * Loads the emulator on first use (the CLI client never needs it). Both packages are CommonJS: under
 * NodeNext their exports arrive on `default`.
 */
export const loadEmulator = (): Promise<ScreenEmulator> =>
  (emulatorModules ??= Promise.all([import("@xterm/headless"), import("@xterm/addon-serialize")]).then(
    ([xterm, serialize]) => ({
      xterm: ((xterm as { default?: XtermModule }).default ?? xterm) as XtermModule,
      serialize: ((serialize as { default?: SerializeModule }).default ?? serialize) as SerializeModule
    })
  ))

/** What the screen shows at one moment. `lines` are the visible rows (trailing blanks trimmed per row). */
export interface ScreenView {
  readonly lines: ReadonlyArray<string>
  readonly cols: number
  readonly rows: number
  /** 0-based `[row, col]` within the visible rows. */
  readonly cursor: readonly [number, number]
  readonly cursorVisible: boolean
  readonly alternateScreen: boolean
  readonly bracketedPaste: boolean
  /** The payloads of the OSC sequences seen so far, by number (the last one each; e.g. codex's 7501). */
  readonly osc: ReadonlyMap<number, string>
}

export interface TerminalScreen {
  /** Feeds output to the emulator (parsed asynchronously; `settled` waits for it). */
  readonly write: (data: string) => void
  readonly resize: (cols: number, rows: number) => void
  /** Resolves once everything written so far has been parsed. */
  readonly settled: () => Promise<void>
  readonly view: () => ScreenView
  /** The visible screen and the scrollback as plain text (what `logs` prints). */
  readonly text: () => string
  /** The screen as ANSI (colours, cursor position), to be replayed by another terminal. */
  readonly ansi: () => string
  /** Output characters fed so far (for the bench). */
  readonly fed: () => number
  readonly dispose: () => void
}

export interface ScreenOptions {
  readonly cols: number
  readonly rows: number
  /** Lines kept above the visible screen (default 1000). */
  readonly scrollback?: number
}

export const defaultScrollback = 1000

/** OSC numbers whose payload readiness reads: 7501 (codex's idle state), 12 (cursor colour: opencode's prompt frame). */
const watchedOsc: ReadonlyArray<number> = [7501, 12]

export const makeScreen = (emulator: ScreenEmulator, options: ScreenOptions): TerminalScreen => {
  const terminal = new emulator.xterm.Terminal({
    cols: options.cols,
    rows: options.rows,
    scrollback: options.scrollback ?? defaultScrollback,
    allowProposedApi: true,
    logLevel: "off"
  })
  const serializer = new emulator.serialize.SerializeAddon()
  terminal.loadAddon(serializer as unknown as XtermHeadless.ITerminalAddon)
  const osc = new Map<number, string>()
  let cursorVisible = true
  let fed = 0
  for (const ident of watchedOsc) {
    terminal.parser.registerOscHandler(ident, (data) => {
      osc.set(ident, data)
      return false
    })
  }
  // DECTCEM (`CSI ? 25 h` / `l`): xterm keeps it internally only. `false`: xterm still handles it.
  const cursorMode = (shown: boolean) => (params: ReadonlyArray<number | ReadonlyArray<number>>) => {
    if (params.includes(25)) cursorVisible = shown
    return false
  }
  terminal.parser.registerCsiHandler({ prefix: "?", final: "h" }, cursorMode(true))
  terminal.parser.registerCsiHandler({ prefix: "?", final: "l" }, cursorMode(false))

  const rowsOf = (from: number, to: number): Array<string> => {
    const buffer = terminal.buffer.active
    const lines: Array<string> = []
    for (let y = from; y < to; y++) lines.push(buffer.getLine(y)?.translateToString(true) ?? "")
    return lines
  }

  return {
    write: (data) => {
      fed += data.length
      terminal.write(data)
    },
    resize: (cols, rows) => terminal.resize(Math.max(1, Math.floor(cols)), Math.max(1, Math.floor(rows))),
    settled: () => new Promise((resolve) => terminal.write("", resolve)),
    view: () => {
      const buffer = terminal.buffer.active
      return {
        lines: rowsOf(buffer.viewportY, buffer.viewportY + terminal.rows),
        cols: terminal.cols,
        rows: terminal.rows,
        cursor: [buffer.cursorY, buffer.cursorX],
        cursorVisible,
        alternateScreen: buffer.type === "alternate",
        bracketedPaste: terminal.modes.bracketedPasteMode,
        osc: new Map(osc)
      }
    },
    text: () => {
      // A row the terminal wrapped continues the line above it: one line of output stays one line.
      const buffer = terminal.buffer.active
      const lines: Array<string> = []
      for (let y = 0; y < buffer.length; y++) {
        const row = buffer.getLine(y)
        const content = row?.translateToString(true) ?? ""
        if (row?.isWrapped === true && lines.length > 0) lines[lines.length - 1] = lines[lines.length - 1]!.padEnd(terminal.cols) + content
        else lines.push(content)
      }
      while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop()
      return lines.join("\n")
    },
    ansi: () => serializer.serialize({ scrollback: 0 }),
    fed: () => fed,
    dispose: () => terminal.dispose()
  }
}

/** The first non-blank line of the screen, trimmed (how a blocked agent's screen is reported). */
export const firstLine = (view: ScreenView): string => view.lines.find((line) => line.trim().length > 0)?.trim() ?? ""

/** The view of a screen showing `text` (a terminal without an emulator, such as a test double). */
export const plainView = (text: string, size: { readonly cols: number; readonly rows: number } = { cols: 80, rows: 24 }): ScreenView => {
  const lines = text.split("\n").slice(-size.rows)
  return {
    lines,
    cols: size.cols,
    rows: size.rows,
    cursor: [lines.length - 1, (lines[lines.length - 1] ?? "").length],
    cursorVisible: true,
    alternateScreen: false,
    bracketedPaste: false,
    osc: new Map()
  }
}
