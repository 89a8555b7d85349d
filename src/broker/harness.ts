import type { InjectMode } from "./PtyHost.js"

// How a CLI is launched and typed into. Known agent CLIs get upstream's permission-bypass flag (an
// agent that stops to ask for approval in a terminal nobody watches is stuck) and bracketed paste;
// anything else runs exactly as given and is typed into line by line.

export type KnownCli = "claude" | "codex" | "gemini" | "grok"

export interface HarnessLaunch {
  /** The program to run (the first word of `cli`). */
  readonly command: string
  readonly args: ReadonlyArray<string>
  /** Set for claude / codex / gemini / grok. */
  readonly known: KnownCli | undefined
  readonly injectInput: InjectMode["input"]
  /** Variables the harness adds to the child's environment. */
  readonly env: Readonly<Record<string, string>>
  /** Variables the harness removes from the inherited environment. */
  readonly unsetEnv: ReadonlyArray<string>
}

interface Convention {
  readonly bypass: string
  /** The caller's args already decide permissions when one of them matches. */
  readonly decided: (arg: string) => boolean
  readonly env?: Readonly<Record<string, string>>
  readonly unsetEnv?: ReadonlyArray<string>
}

const flag = (...names: ReadonlyArray<string>) => (arg: string) =>
  names.some((name) => arg === name || arg.startsWith(`${name}=`))

const conventions: Readonly<Record<KnownCli, Convention>> = {
  claude: {
    bypass: "--dangerously-skip-permissions",
    decided: flag("--dangerously-skip-permissions", "--permission-mode", "--allow-dangerously-skip-permissions"),
    // As upstream's pty worker: no prompt suggestions or self-updates in an unattended terminal,
    // and no CLAUDECODE (claude refuses to start inside what looks like another claude session).
    env: { CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION: "false", DISABLE_AUTOUPDATER: "1" },
    unsetEnv: ["CLAUDECODE"]
  },
  codex: {
    bypass: "--dangerously-bypass-approvals-and-sandbox",
    decided: (arg) =>
      arg.includes("dangerously-bypass") || arg.includes("full-auto") ||
      flag("--ask-for-approval", "-a", "--sandbox", "-s")(arg)
  },
  gemini: {
    bypass: "--yolo",
    decided: flag("--yolo", "-y", "--approval-mode")
  },
  grok: {
    bypass: "--always-approve",
    decided: flag("--always-approve")
  }
}

const isKnown = (name: string): name is KnownCli => Object.hasOwn(conventions, name)

/**
 * Splits a command line the way a POSIX shell would for words: whitespace separates, single quotes
 * are literal, double quotes allow `\"` and `\\`, a backslash outside quotes escapes one character.
 */
export const splitCommandLine = (line: string): ReadonlyArray<string> => {
  const words: Array<string> = []
  let word = ""
  let inWord = false
  let quote: "'" | "\"" | undefined
  for (let i = 0; i < line.length; i++) {
    const char = line[i]!
    if (quote === "'") {
      if (char === "'") quote = undefined
      else word += char
    } else if (quote === "\"") {
      if (char === "\"") quote = undefined
      else if (char === "\\" && (line[i + 1] === "\"" || line[i + 1] === "\\")) word += line[++i]
      else word += char
    } else if (char === "'" || char === "\"") {
      quote = char
      inWord = true
    } else if (char === "\\" && i + 1 < line.length) {
      word += line[++i]
      inWord = true
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word)
      word = ""
      inWord = false
    } else {
      word += char
      inWord = true
    }
  }
  if (inWord) words.push(word)
  return words
}

/** `claude`, `/usr/local/bin/claude`, `claude.exe`: the CLI a command names, when it is a known one. */
export const knownCli = (command: string): KnownCli | undefined => {
  const base = command.split("/").pop()?.replace(/\.(exe|cmd)$/i, "").toLowerCase() ?? ""
  return isKnown(base) ? base : undefined
}

/**
 * The launch for `cli` (a program, possibly with inline args: `"codex --search"`) plus `args`:
 * for a known CLI, `<bypass flag> [--model M] <inline args> <args>` unless the args already settle
 * permissions (or the model).
 */
export const resolveHarness = (spec: {
  readonly cli: string
  readonly args?: ReadonlyArray<string>
  readonly model?: string
}): HarnessLaunch => {
  const [command = spec.cli, ...inline] = splitCommandLine(spec.cli)
  const given = [...inline, ...(spec.args ?? [])]
  const known = knownCli(command)
  if (known === undefined) {
    return { command, args: given, known, injectInput: "type", env: {}, unsetEnv: [] }
  }
  const convention = conventions[known]
  const bypass = given.some(convention.decided) ? [] : [convention.bypass]
  const model = spec.model !== undefined && spec.model.length > 0 && !given.some(flag("--model", "-m"))
    ? ["--model", spec.model]
    : []
  return {
    command,
    args: [...bypass, ...model, ...given],
    known,
    injectInput: "paste",
    env: convention.env ?? {},
    unsetEnv: convention.unsetEnv ?? []
  }
}
