import * as Effect from "effect/Effect"
import { execFile } from "node:child_process"
import { readFile } from "node:fs/promises"
import { type FileMerge, isOurs, mergeEntry, type Wiring } from "../broker/mcpWiring.js"
import { writeFileAtomic } from "../lib/AtomicFile.js"
import { type FileRecord, type Snapshot, snapshot } from "./wiringLedger.js"

// Carrying out a harness's MCP wiring: JSON files merged (never clobbered; an existing file keeps its
// mode), then the CLI's own `mcp add` commands. Every change is described in one line for the spawn's
// `warning` and the log, and recorded (what the file was before, what we left) for the release.

export class WiringFailed extends Error {}

export interface FileChange {
  readonly file: string
  readonly before: Snapshot
  readonly written: string
  /** The file held no entry of ours before. */
  readonly pristine: boolean
  readonly entries: FileRecord["entries"]
}

const fsStep = <A>(what: string, run: () => Promise<A>) =>
  Effect.tryPromise({ try: run, catch: (error) => new WiringFailed(`${what}: ${(error as Error).message}`) })

const readIfPresent = (file: string) =>
  fsStep(`cannot read ${file}`, async () => {
    try {
      return await readFile(file, "utf8")
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined
      throw error
    }
  })

const valueAt = (root: unknown, path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>((node, key) => (typeof node === "object" && node !== null ? (node as Record<string, unknown>)[key] : undefined), root)

const parsed = (text: string | undefined): unknown => {
  try {
    return text === undefined ? undefined : JSON.parse(text)
  } catch {
    return undefined
  }
}

const mergeFile = (merge: FileMerge) =>
  Effect.gen(function*() {
    const before = yield* fsStep(`cannot read ${merge.file}`, () => snapshot(merge.file))
    const outcome = mergeEntry(before.original?.text, merge)
    const pristine = valueAt(parsed(before.original?.text), merge.path) === undefined
    const entries = [{ path: merge.path, value: merge.entry }]
    switch (outcome._tag) {
      case "Unchanged":
        return { note: undefined, change: { file: merge.file, before, written: before.original?.text ?? "", pristine, entries } }
      case "Kept":
        return { note: outcome.reason, change: undefined }
      case "Invalid":
        return yield* Effect.fail(new WiringFailed(`cannot add the agent-relay MCP server: ${outcome.reason}`))
      case "Written":
        yield* writeFileAtomic(merge.file, outcome.text, { mode: before.original?.mode ?? 0o644 }).pipe(
          Effect.mapError((error) => new WiringFailed(`cannot write ${merge.file}: ${error.message}`))
        )
        return {
          note: `${before.original === undefined ? "created" : "merged into"} ${merge.file}: ${merge.path.join(".")}`,
          change: { file: merge.file, before, written: outcome.text, pristine, entries }
        }
    }
  })

const runCommand = (command: string, args: ReadonlyArray<string>, env: Readonly<Record<string, string>>, cwd: string) =>
  Effect.async<void, WiringFailed>((resume) => {
    const child = execFile(command, [...args], { env, cwd, timeout: 30_000 }, (error, _stdout, stderr) => {
      if (error === null) resume(Effect.void)
      else resume(Effect.fail(new WiringFailed(`'${[command, ...args].join(" ")}' failed: ${(stderr || error.message).trim().slice(0, 500)}`)))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** The CLI's own `mcp remove` + `mcp add`, unless the user's own agent-relay entry is there. */
const runCommands = (wiring: Wiring, env: Readonly<Record<string, string>>, cwd: string) =>
  Effect.gen(function*() {
    const target = wiring.commandFile
    const before = target === undefined ? undefined : yield* fsStep(`cannot read ${target.file}`, () => snapshot(target.file))
    const existing = target === undefined ? undefined : valueAt(parsed(before?.original?.text), target.path)
    if (target !== undefined && existing !== undefined && !isOurs(existing)) {
      return { notes: [`${target.file} already sets ${target.path.join(".")}; it was left as it is`], change: undefined }
    }
    const notes: Array<string> = []
    for (const [index, step] of wiring.commands.entries()) {
      // The first command of a CLI's pair removes an older entry: it may find none.
      const run = runCommand(step.command, step.args, env, cwd)
      if (index === 0 && wiring.commands.length > 1) yield* Effect.ignore(run)
      else yield* run
      notes.push(`ran ${[step.command, ...step.args].join(" ")}`)
    }
    if (target === undefined || before === undefined) return { notes, change: undefined }
    const written = yield* readIfPresent(target.file)
    const value = valueAt(parsed(written), target.path)
    if (written === undefined || value === undefined) {
      return yield* Effect.fail(new WiringFailed(`'${wiring.commands.at(-1)?.command} mcp add' did not write ${target.path.join(".")} into ${target.file}`))
    }
    const change: FileChange = { file: target.file, before, written, pristine: existing === undefined, entries: [{ path: target.path, value }] }
    return { notes, change }
  })

/** Merges the files and runs the commands; answers the notes to report and the changes to undo on release. */
export const applyWiring = (wiring: Wiring, env: Readonly<Record<string, string>>, cwd: string) =>
  Effect.gen(function*() {
    const notes: Array<string> = []
    const changes: Array<FileChange> = []
    for (const merge of wiring.files) {
      const { note, change } = yield* mergeFile(merge)
      if (note !== undefined) notes.push(note)
      if (change !== undefined) changes.push(change)
    }
    const commands = yield* runCommands(wiring, env, cwd)
    notes.push(...commands.notes)
    if (commands.change !== undefined) changes.push(commands.change)
    return { notes, changes }
  })
