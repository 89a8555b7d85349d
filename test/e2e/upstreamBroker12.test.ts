import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { call, createAgent, createWorkspace, data, startEngine, tempDir } from "../engine/support.js"
import { freshMachineEnv, stopChild } from "../support/processes.js"

// The published upstream broker of the provider era (@agent-relay/broker-linux-x64 12.4.1, a pinned
// test-only devDependency aliased `upstream-broker-12`) against the embedded engine, unchanged: it
// enrols as a provider, binds a `cat` agent, gets a DM typed in and acks it (it waits until the
// agent looks idle, ~10 s), reports its agent's events, and marks its agents offline on SIGTERM.

const binary = (() => {
  try {
    return join(createRequire(import.meta.url).resolve("upstream-broker-12/package.json"), "..", "bin", "agent-relay-broker")
  } catch {
    return undefined
  }
})()
const runnable = process.platform === "linux" && process.arch === "x64" && binary !== undefined && existsSync(binary)

interface Upstream {
  readonly child: ChildProcess
  readonly output: Array<string>
  readonly api: string
}

const apiKey = "upstream-test-key"

const startUpstream = (engineUrl: string, workspaceKey: string, cwd: string) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<Upstream>((resolve, reject) => {
        const child = spawn(binary!, ["init", "--instance-name", "up12", "--workspace-key", workspaceKey, "--api-port", "0", "--persist"], {
          cwd,
          env: freshMachineEnv(cwd, {
            HOME: cwd,
            RELAY_BASE_URL: engineUrl,
            RELAY_BROKER_API_KEY: apiKey,
            AGENT_RELAY_TELEMETRY_DISABLED: "1",
            DO_NOT_TRACK: "1"
          }),
          stdio: ["ignore", "pipe", "pipe"]
        })
        const output: Array<string> = []
        const onLine = (line: string) => {
          output.push(line)
          const listening = /API listening on (http:\/\/\S+)/.exec(line)
          if (listening !== null) resolve({ child, output, api: listening[1]! })
        }
        createInterface({ input: child.stdout! }).on("line", onLine)
        createInterface({ input: child.stderr! }).on("line", onLine)
        child.once("exit", (code) => reject(new Error(`upstream broker exited (${code}) before listening:\n${output.join("\n")}`)))
      })),
    (upstream) => stopChild(upstream.child)
  )

const brokerApi = (upstream: Upstream, method: string, path: string, body?: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(upstream.api + path, {
      method,
      headers: { "content-type": "application/json", "x-api-key": apiKey },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    return { status: response.status, body: await response.json() as any }
  })

/** Polls `check` every 250 ms for up to 90 s (the upstream broker acks only once the agent is idle). */
const within90s = <A>(label: string, check: Effect.Effect<A | undefined, unknown>) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 360; attempt++) {
      const value = yield* Effect.orDie(check)
      if (value !== undefined) return value
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 250)))
    }
    return yield* Effect.dieMessage(`never happened: ${label}`)
  })

describe.skipIf(!runnable)("the upstream 12.4.1 broker on the embedded engine", () => {
  it.scopedLive("enrols as a provider, binds cat, types a DM in and acks it, reports events, goes offline on SIGTERM", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const human = yield* createAgent(ws, "human1")
      const cwd = yield* tempDir
      const upstream = yield* startUpstream(url, ws.key, cwd)

      const node = yield* within90s("the node is live with its broker provider", Effect.map(
        call(url, "GET", "/v1/nodes/up12", { token: ws.key }),
        (result) => (result.status === 200 && result.body.data.live === true ? result.body.data : undefined)
      ))
      assert.include(JSON.stringify(node.providers), "broker")

      const spawned = yield* brokerApi(upstream, "POST", "/api/spawn", { name: "catty", cli: "cat" })
      assert.strictEqual(spawned.body.success, true, JSON.stringify(spawned.body))
      const catty = yield* data(url, "GET", "/v1/agents/catty", { token: ws.key })
      assert.strictEqual(catty.location_type, "via_node")

      const sent = yield* data(url, "POST", "/v1/dm", { token: human.token, body: { to: "catty", text: "hello from the embedded engine" } })
      const acked = yield* within90s("the DM is acked by the upstream broker", Effect.map(
        data(url, "GET", `/v1/messages/${sent.id}/deliveries`, { token: ws.key }),
        (deliveries: Array<any>) => {
          const row = deliveries.find((entry) => entry.agent_name === "catty")
          return row !== undefined && row.status === "acked" ? row : undefined
        }
      ))
      assert.strictEqual(acked.status, "acked")
      const screen = yield* brokerApi(upstream, "GET", "/api/spawned/catty/snapshot")
      // The 80-column screen wraps the line (and the space at the wrap): compare without whitespace.
      const screenText = String(screen.body.screen).replace(/\s+/g, "")
      assert.include(screenText, "Relaymessagefromhuman1")
      assert.include(screenText, "hellofromtheembeddedengine")

      const events = yield* data(url, "GET", "/v1/agents/catty/events", { token: ws.key })
      assert.include(events.map((event: any) => event.type), "session.starting")

      yield* stopChild(upstream.child)
      const after = yield* data(url, "GET", "/v1/agents/catty", { token: ws.key })
      assert.strictEqual(after.status, "offline")
    }), { timeout: 240_000 })
})
