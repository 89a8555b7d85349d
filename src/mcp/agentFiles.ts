import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

// An agent's file in the daemon's agents directory: `<pid>.json`, 0600, named by the pid of the
// agent's process (the harness), holding the variables its tool server needs (token included). It is
// how `relay-broker mcp` finds its agent when the harness that started it passed it none of them
// (droid and grok are wired so: mcpWiring.ts). The daemon writes it once the agent's process exists
// and removes it on release. Plain node:fs: the stdio server loads this.

/** The ancestors of this process, nearest first (Linux /proc; elsewhere only the parent). */
const ancestors = (): ReadonlyArray<number> => {
  const found: Array<number> = [process.ppid]
  for (let depth = 0; depth < 8; depth++) {
    const pid = found[found.length - 1]!
    let parent: number
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
    } catch {
      break
    }
    if (!Number.isInteger(parent) || parent <= 1) break
    found.push(parent)
  }
  return found
}

export const agentFileOf = (dir: string, pid: number): string => join(dir, `${pid}.json`)

const findOnce = (dir: string): Record<string, string> | undefined => {
  for (const pid of ancestors()) {
    const file = agentFileOf(dir, pid)
    if (!existsSync(file)) continue
    const parsed: unknown = JSON.parse(readFileSync(file, "utf8"))
    if (typeof parsed === "object" && parsed !== null) {
      return Object.fromEntries(Object.entries(parsed).filter((entry): entry is [string, string] => typeof entry[1] === "string"))
    }
  }
  return undefined
}

/**
 * The variables of the agent whose process is an ancestor of this one. The daemon writes the file
 * right after the agent's process starts, so a server started at once may look before it is there:
 * it looks again for up to `waitMs`.
 */
export const findAgentVariables = async (dir: string, waitMs = 5_000): Promise<Record<string, string> | undefined> => {
  const deadline = Date.now() + waitMs
  for (;;) {
    const found = findOnce(dir)
    if (found !== undefined || Date.now() >= deadline) return found
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
