import * as Effect from "effect/Effect"
import { execFile } from "node:child_process"
import { readFile, stat } from "node:fs/promises"
import { type FileMerge, mergeEntry, type Wiring } from "../broker/mcpWiring.js"
import { writeFileAtomic } from "../lib/AtomicFile.js"

// Carrying out a harness's MCP wiring: JSON files merged (never clobbered; an existing file keeps its
// mode), then the CLI's own `mcp add` commands. Every change is described in one line for the spawn's
// `warning` and the log.

export class WiringFailed extends Error {}

const readIfPresent = (file: string) =>
  Effect.tryPromise({
    try: async () => {
      try {
        const [text, info] = await Promise.all([readFile(file, "utf8"), stat(file)])
        return { text, mode: info.mode & 0o777 }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined
        throw error
      }
    },
    catch: (error) => new WiringFailed(`cannot read ${file}: ${(error as Error).message}`)
  })

const mergeFile = (merge: FileMerge) =>
  Effect.gen(function*() {
    const existing = yield* readIfPresent(merge.file)
    const outcome = mergeEntry(existing?.text, merge)
    switch (outcome._tag) {
      case "Unchanged":
        return undefined
      case "Kept":
        return outcome.reason
      case "Invalid":
        return yield* Effect.fail(new WiringFailed(`cannot add the agent-relay MCP server: ${outcome.reason}`))
      case "Written":
        yield* writeFileAtomic(merge.file, outcome.text, { mode: existing?.mode ?? 0o644 }).pipe(
          Effect.mapError((error) => new WiringFailed(`cannot write ${merge.file}: ${error.message}`))
        )
        return `${existing === undefined ? "created" : "merged into"} ${merge.file}: ${merge.path.join(".")}`
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

/** Merges the files and runs the commands; answers the notes to report. */
export const applyWiring = (wiring: Wiring, env: Readonly<Record<string, string>>, cwd: string) =>
  Effect.gen(function*() {
    const notes: Array<string> = []
    for (const merge of wiring.files) {
      const note = yield* mergeFile(merge)
      if (note !== undefined) notes.push(note)
    }
    for (const [index, step] of wiring.commands.entries()) {
      // The first command of a CLI's pair removes an older entry: it may find none.
      const run = runCommand(step.command, step.args, env, cwd)
      if (index === 0 && wiring.commands.length > 1) yield* Effect.ignore(run)
      else yield* run
      notes.push(`ran ${[step.command, ...step.args].join(" ")}`)
    }
    return notes
  })
