// The process table: descendants of a pid, their command lines and resident memory.
// Reads /proc on Linux; elsewhere falls back to `ps`.
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"

const hasProc = existsSync("/proc/self/stat")

const TICKS_PER_SECOND = 100 // USER_HZ: 100 on every Linux build that matters

/** [{pid, ppid, rssKb, cpuMs, cmd, argv}] for every process we can see (`argv` is approximate and `cpuMs` absent with `ps`). */
export const listProcesses = () => {
  if (!hasProc) {
    const text = execFileSync("ps", ["-A", "-o", "pid=,ppid=,rss=,command="], { encoding: "utf8" })
    return text.split("\n").filter(Boolean).map((line) => {
      const [pid, ppid, rss, ...cmd] = line.trim().split(/\s+/)
      return { pid: Number(pid), ppid: Number(ppid), rssKb: Number(rss), cmd: cmd.join(" "), argv: cmd }
    })
  }
  const processes = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      // The command name is in parentheses and may hold spaces; the fields after it are fixed.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      const status = readFileSync(`/proc/${entry}/status`, "utf8")
      const rss = /VmRSS:\s+(\d+)/.exec(status)
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").filter(Boolean)
      // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the command name.
      const cpuMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND
      processes.push({ pid: Number(entry), ppid: Number(fields[1]), rssKb: rss ? Number(rss[1]) : 0, cpuMs, cmd: argv.join(" "), argv })
    } catch {
      // The process ended while we read it.
    }
  }
  return processes
}

/** The process with `pid` and all its descendants, parents first. */
export const processTree = (pid, processes = listProcesses()) => {
  const children = new Map()
  for (const p of processes) {
    const list = children.get(p.ppid) ?? []
    list.push(p)
    children.set(p.ppid, list)
  }
  const root = processes.find((p) => p.pid === pid)
  if (root === undefined) return []
  const out = []
  const queue = [root]
  while (queue.length > 0) {
    const p = queue.shift()
    out.push(p)
    queue.push(...(children.get(p.pid) ?? []))
  }
  return out
}

/** Resident memory in MB: the root process, its agent processes (`isAgent(process)`), and every other descendant. */
export const treeMemory = (pid, isAgent) => {
  const tree = processTree(pid)
  const mb = (list) => list.reduce((sum, p) => sum + p.rssKb, 0) / 1024
  const [root, ...rest] = tree
  const agents = rest.filter((p) => isAgent(p))
  const others = rest.filter((p) => !isAgent(p))
  return {
    selfMb: root ? root.rssKb / 1024 : undefined,
    agentsMb: mb(agents),
    agentCount: agents.length,
    helpersMb: mb(others),
    helperCount: others.length
  }
}

/** CPU time (user + system, ms) used so far by the process and its descendants that are not agents. */
export const treeCpuMs = (pid, isAgent) => {
  const tree = processTree(pid)
  if (tree.length === 0 || tree[0].cpuMs === undefined) return undefined
  return tree.filter((p, i) => i === 0 || !isAgent(p)).reduce((sum, p) => sum + p.cpuMs, 0)
}
