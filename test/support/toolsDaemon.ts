import { Effect } from "effect"
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { freshMachineEnv, launchScript, type LaunchedScript, stopChild } from "./processes.js"

// A daemon (`node dist/main.js up`, embedded engine) whose agents are stand-in harnesses
// (standInHarness.mjs, installed on PATH as claude, codex, gemini, opencode, cursor-agent, droid and
// grok), and what the agent-relay tools e2e tests look at: screens, environments, argv. Build first.

export const mainJs = fileURLToPath(new URL("../../dist/main.js", import.meta.url))
const standIn = fileURLToPath(new URL("./standInHarness.mjs", import.meta.url))

export const until = <A>(proc: LaunchedScript, what: string, check: () => A | undefined | Promise<A | undefined>): Effect.Effect<A> =>
  Effect.promise(async () => {
    for (let i = 0; i < 1_200; i++) {
      const value = await check()
      if (value !== undefined) return value
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
        throw new Error(`the daemon exited while waiting for ${what}:\n${proc.stderr.join("\n")}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`never happened: ${what}`)
  })

export const tempRoot = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-broker-tools-"))),
  (root) => Effect.sync(() => rmSync(root, { recursive: true, force: true }))
)

export const http = async (url: string, method: string, headers: Record<string, string>, body?: unknown) => {
  const response = await fetch(url, {
    method,
    headers: { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  return { status: response.status, body: text === "" ? null : JSON.parse(text) }
}

/** A PATH directory whose claude, codex, gemini, opencode, cursor-agent, droid and grok are the stand-in. */
export const standInBin = (root: string) => {
  const bin = join(root, "bin")
  mkdirSync(bin, { recursive: true })
  for (const harness of ["claude", "codex", "gemini", "opencode", "cursor-agent", "droid", "grok"]) {
    writeFileSync(join(bin, harness), `#!/bin/sh\nexec "${process.execPath}" "${standIn}" ${harness} "$@"\n`)
    chmodSync(join(bin, harness), 0o755)
  }
  return bin
}

export const startDaemon = (root: string, extraEnv: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const stateDir = join(root, "state")
    const home = join(root, "home")
    const work = join(root, "work")
    mkdirSync(home, { recursive: true })
    mkdirSync(work, { recursive: true })
    const env = freshMachineEnv(root, {
      PATH: `${standInBin(root)}:${process.env["PATH"] ?? ""}`,
      HOME: home,
      AGENT_RELAY_NODE_HARNESSES: "",
      ...extraEnv
    })
    const proc = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const launched = launchScript(mainJs, ["up", "--state-dir", stateDir, "--api-port", "0", "--name", "tools-e2e"], env)
        return launched
      }),
      (launched) => stopChild(launched.child)
    )
    const url = yield* until(proc, "API listening", () => proc.stdout.map((line) => /API listening on (\S+)$/.exec(line)?.[1]).find(Boolean))
    const key: string = JSON.parse(readFileSync(join(stateDir, "connection.json"), "utf8")).api_key
    const call = (method: string, path: string, body?: unknown) =>
      Effect.promise(() => http(`${url}${path}`, method, { "x-api-key": key }, body))
    yield* until(proc, "node online", async () => (await http(`${url}/health`, "GET", {})).body.nodeConnected === true ? true : undefined)
    const spawn = (name: string, cli: string, extra: Record<string, unknown> = {}) => call("POST", "/api/spawn", { name, cli, cwd: work, ...extra })
    const screen = (name: string) =>
      Effect.promise(async () => (await http(`${url}/api/spawned/${name}/snapshot`, "GET", { "x-api-key": key })).body?.screen ?? "")
    const shows = (name: string, text: string) =>
      until(proc, `${name} shows ${JSON.stringify(text)}`, async () => {
        const answer = await http(`${url}/api/spawned/${name}/snapshot`, "GET", { "x-api-key": key })
        return typeof answer.body?.screen === "string" && answer.body.screen.includes(text) ? answer.body.screen as string : undefined
      })
    const type = (name: string, text: string) => call("POST", `/api/input/${name}`, { data: `${text}\r` })
    return { proc, url, key, stateDir, home, work, call, spawn, screen, shows, type }
  })

export const environOf = (pid: number): Record<string, string> =>
  Object.fromEntries(readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean).map((entry) => {
    const eq = entry.indexOf("=")
    return [entry.slice(0, eq), entry.slice(eq + 1)]
  }))

export const descendantsOf = (pid: number): ReadonlyArray<number> => {
  const parents = new Map<number, number>()
  for (const entry of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]))
    } catch {
      // gone
    }
  }
  const found: Array<number> = []
  const visit = (parent: number) => {
    for (const [child, of] of parents) {
      if (of === parent) {
        found.push(child)
        visit(child)
      }
    }
  }
  visit(pid)
  return found
}

export const cmdline = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
  } catch {
    return ""
  }
}
