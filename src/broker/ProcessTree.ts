import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { randomUUID } from "node:crypto"
import * as Fs from "node:fs"

// Every process an agent started, including helpers that left its session (codex starts
// `codex app-server --managed-daemon` with setsid; killing the terminal's process group does not
// reach it, harnesses.md §4). Without root and without cgroups: each agent gets a tag in its
// environment, which its descendants inherit even after they detach; reaping finds them by the tag
// (/proc/<pid>/environ) and by parentage (/proc/<pid>/stat), then SIGTERM, a grace, SIGKILL.
// On a system without /proc only the process group is reached (PtyHost does that already).

export const processTagEnv = "RELAY_AGENT_PROCESS_TAG"

export class ProcessTree extends Context.Tag("relay-broker/ProcessTree")<ProcessTree, {
  /** A fresh tag for one agent process (its environment carries it as `RELAY_AGENT_PROCESS_TAG`). */
  readonly newTag: Effect.Effect<string>
  /** The live processes carrying `tag` or descending from `rootPid` (never this process). */
  readonly find: (tag: string, rootPid?: number) => Effect.Effect<ReadonlyArray<number>>
  /** Ends them: SIGTERM, up to `grace` for them to go, then SIGKILL. Resolves with the pids found. */
  readonly reap: (tag: string, rootPid?: number) => Effect.Effect<ReadonlyArray<number>>
}>() {}

export interface ProcessTreeOptions {
  /** Between SIGTERM and SIGKILL (default 2 s). */
  readonly grace?: Duration.DurationInput
  /** Where the process table is read (default /proc). */
  readonly procRoot?: string
}

const readText = (file: string): string | undefined => {
  try {
    return Fs.readFileSync(file, "latin1")
  } catch {
    return undefined
  }
}

/** The parent pid from /proc/<pid>/stat (the command name may hold spaces and parentheses). */
const parentOf = (stat: string): number | undefined => {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const ppid = Number(fields[1])
  return Number.isInteger(ppid) ? ppid : undefined
}

/** A zombie has exited already: it is its parent's to reap, not ours to kill. */
const isZombie = (stat: string): boolean => stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")

export const scan = (procRoot: string, tag: string, rootPid?: number): ReadonlyArray<number> => {
  let entries: ReadonlyArray<string>
  try {
    entries = Fs.readdirSync(procRoot)
  } catch {
    return []
  }
  const marker = `${processTagEnv}=${tag}\0`
  const parents = new Map<number, number>()
  const found = new Set<number>()
  for (const entry of entries) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue
    const stat = readText(`${procRoot}/${pid}/stat`)
    if (stat === undefined || isZombie(stat)) continue
    const ppid = parentOf(stat)
    if (ppid !== undefined) parents.set(pid, ppid)
    // Another user's environ is unreadable: such a process is not ours to end anyway.
    const environ = readText(`${procRoot}/${pid}/environ`)
    if (environ !== undefined && `${environ}\0`.includes(marker)) found.add(pid)
  }
  if (rootPid !== undefined && parents.has(rootPid)) found.add(rootPid)
  // Descendants of anything found (a child that cleared its environment still has a parent).
  let grew = true
  while (grew) {
    grew = false
    for (const [pid, ppid] of parents) {
      if (!found.has(pid) && found.has(ppid)) {
        found.add(pid)
        grew = true
      }
    }
  }
  found.delete(process.pid)
  return [...found].sort((a, b) => a - b)
}

const signal = (pids: ReadonlyArray<number>, name: NodeJS.Signals) => {
  for (const pid of pids) {
    try {
      process.kill(pid, name)
    } catch {
      // gone already
    }
  }
}

export const makeWith = (options: ProcessTreeOptions = {}) =>
  Effect.sync(() => {
    const procRoot = options.procRoot ?? "/proc"
    const grace = Duration.decode(options.grace ?? "2 seconds")

    const find = (tag: string, rootPid?: number) => Effect.sync(() => scan(procRoot, tag, rootPid))

    const reap = (tag: string, rootPid?: number) =>
      Effect.gen(function*() {
        const pids = yield* find(tag, rootPid)
        if (pids.length === 0) return pids
        signal(pids, "SIGTERM")
        yield* find(tag, rootPid).pipe(
          Effect.filterOrFail((alive) => alive.length === 0),
          Effect.retry(Schedule.spaced(Duration.millis(50))),
          Effect.timeoutOption(grace),
          Effect.ignore
        )
        const left = yield* find(tag, rootPid)
        if (left.length > 0) {
          signal(left, "SIGKILL")
          yield* Effect.logWarning("processes left by an agent did not stop on SIGTERM; killed").pipe(
            Effect.annotateLogs({ pids: left.join(",") })
          )
        }
        return pids
      }).pipe(Effect.withSpan("ProcessTree.reap"))

    return ProcessTree.of({ newTag: Effect.sync(() => randomUUID()), find, reap })
  })

export const layer: Layer.Layer<ProcessTree> = Layer.effect(ProcessTree, makeWith())

export const layerWith = (options: ProcessTreeOptions): Layer.Layer<ProcessTree> =>
  Layer.effect(ProcessTree, makeWith(options))
