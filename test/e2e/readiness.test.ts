import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { WebSocket } from "ws"
import { installStandin, pathWith } from "../support/standins.js"
import {
  api,
  type Broker,
  createEngineAgent,
  type Engine,
  engineCall,
  ensureBuilt,
  startBroker,
  startEngine,
  stopChild,
  tempDir,
  waitFor,
  waitForScreen
} from "./deliveriesHarness.js"

// Readiness end to end: a real engine and broker, stand-in TUIs (test/fixtures/standin-tui.mjs)
// installed as `claude` on a PATH of the test's own, and line programs.

ensureBuilt()

/** The readiness timeout the broker runs with here (RELAY_READY_TIMEOUT_MS). */
const readyTimeoutMs = 6000

interface Events {
  readonly all: Array<Record<string, unknown>>
}

class Setup extends Context.Tag("e2e/ReadinessSetup")<Setup, {
  readonly home: string
  readonly bin: string
  readonly engine: Engine
  readonly broker: Broker
  readonly sender: string
  readonly events: Events
}>() {}

/** Every event of the broker's `/ws` from the start, collected as it comes. */
const collectEvents = (broker: Broker) =>
  Effect.acquireRelease(
    Effect.async<{ readonly events: Events; readonly socket: WebSocket }, Error>((resume) => {
      const events: Events = { all: [] }
      const socket = new WebSocket(`${broker.url.replace(/^http/, "ws")}/ws?sinceSeq=0`, { headers: { "x-api-key": broker.apiKey } })
      socket.on("message", (data) => events.all.push(JSON.parse(String(data)) as Record<string, unknown>))
      socket.once("open", () => resume(Effect.succeed({ events, socket })))
      socket.once("error", (error) => resume(Effect.fail(error)))
    }),
    ({ socket }) => Effect.sync(() => socket.close())
  ).pipe(Effect.map(({ events }) => events))

const setup = Layer.scoped(
  Setup,
  Effect.gen(function*() {
    const home = yield* tempDir("relay-e2e-readiness-")
    const bin = installStandin(join(home, "bin"), "claude")
    const engine = yield* startEngine(home)
    const broker = yield* startBroker({
      home,
      baseUrl: engine.url,
      workspaceKey: engine.workspaceKey,
      env: { RELAY_READY_TIMEOUT_MS: String(readyTimeoutMs) }
    })
    const sender = yield* createEngineAgent(engine, "readiness-sender")
    const events = yield* collectEvents(broker)
    return { home, bin, engine, broker, sender, events }
  })
)

interface Submission {
  readonly at: number
  readonly text: string
}

/** What the stand-in named `name` recorded: its submitted inputs and every key it received, per session. */
const sessions = (dir: string, name: string) => {
  const files = existsSync(dir) ? readdirSync(dir) : []
  return files
    .filter((file) => file.startsWith(`${name}-`) && file.endsWith(".jsonl"))
    .map((file) => {
      const submissions = readFileSync(join(dir, file), "utf8").split("\n").filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Submission)
      const keys = readFileSync(join(dir, file.replace(/\.jsonl$/, ".keys")), "utf8")
      return { file, submissions, keys }
    })
}

const spawnStandin = (
  setup: Setup["Type"],
  name: string,
  options: { readonly task?: string; readonly env?: Record<string, string> } = {}
) =>
  Effect.gen(function*() {
    const dir = join(setup.home, "agents")
    mkdirSync(dir, { recursive: true })
    const response = yield* api(setup.broker, "POST", "/api/spawn", {
      name,
      cli: "claude",
      cwd: dir,
      ...(options.task === undefined ? {} : { task: options.task }),
      env: { PATH: pathWith(setup.bin), STANDIN_DIR: dir, ...options.env }
    })
    assert.strictEqual(response.status, 200, JSON.stringify(response.body))
    return { dir, pid: response.body["pid"] as number }
  })

const dm = (setup: Setup["Type"], to: string, text: string) =>
  Effect.gen(function*() {
    const response = yield* engineCall(setup.engine.url, "POST", "/v1/dm", { to, text }, setup.sender)
    assert.include([200, 201], response.status, JSON.stringify(response.body))
    return (response.data as { id: string }).id
  })

/** The engine's unacked deliveries to `name`, by message id. */
const pendingAt = (engine: Engine, name: string) =>
  Effect.map(engineCall(engine.url, "GET", `/v1/agents/${name}`, undefined, engine.workspaceKey), (response) =>
    ((response.data as { pending_deliveries?: ReadonlyArray<{ message_id: string }> }).pending_deliveries ?? [])
      .map((row) => row.message_id))

const agentRow = (broker: Broker, name: string) =>
  Effect.map(api(broker, "GET", "/api/spawned"), (response) =>
    (response.body["agents"] as ReadonlyArray<Record<string, unknown>>).find((agent) => agent["name"] === name))

const eventsOf = (events: Events, kind: string, name: string) =>
  events.all.filter((event) => event["kind"] === kind && event["name"] === name)

layer(setup, { excludeTestServices: true, timeout: 120_000 })("readiness end to end", (it) => {
  it.effect("a TUI that drops keys for 1.5 s: the task and two DMs sent during its boot arrive once each, in order, after it is ready; none is acked before it is typed", () =>
    Effect.gen(function*() {
      const s = yield* Setup
      const { dir } = yield* spawnStandin(s, "tui1", { task: "task for tui1: begin" })
      const sent = [yield* dm(s, "tui1", "boot-dm-1"), yield* dm(s, "tui1", "boot-dm-2")]
      const bodies = new Map([[sent[0]!, "boot-dm-1"], [sent[1]!, "boot-dm-2"]])

      // Until all three are typed: whatever the engine no longer holds (acked) must already be in the
      // agent's input (the engine is read first, the agent's record second).
      const violations: Array<string> = []
      const [session] = yield* waitFor("three submissions", async () => {
        const pending = await Effect.runPromise(pendingAt(s.engine, "tui1"))
        const now = sessions(dir, "tui1")
        const typed = now.flatMap((one) => one.submissions.map((submission) => submission.text))
        for (const id of sent) {
          if (!pending.includes(id) && !typed.some((text) => text.endsWith(bodies.get(id)!))) {
            violations.push(`${bodies.get(id)} acked before it was typed`)
          }
        }
        return now[0] !== undefined && now[0].submissions.length >= 3 ? now : undefined
      })
      assert.deepStrictEqual(violations, [])
      const texts = session!.submissions.map((submission) => submission.text)
      assert.strictEqual(texts.length, 3, JSON.stringify(texts))
      assert.strictEqual(texts[0], "task for tui1: begin")
      // The first relay message carries the reminder (typed after readiness, so it was not lost).
      assert.match(texts[1]!, /^<system-reminder>[\s\S]*Relay message from readiness-sender \[[^\]]+\]: boot-dm-1$/)
      assert.match(texts[2]!, /^Relay message from readiness-sender \[[^\]]+\]: boot-dm-2$/)

      yield* waitFor("the engine's queue to drain", async () =>
        (await Effect.runPromise(pendingAt(s.engine, "tui1"))).length === 0 ? true : undefined)
      const row = yield* agentRow(s.broker, "tui1")
      assert.strictEqual(row?.["readiness"], "ready")
      assert.strictEqual(row?.["readiness_source"], "screen")
      assert.isNull(row?.["readiness_warning"])

      const [ready] = eventsOf(s.events, "worker_ready", "tui1")
      assert.deepInclude(ready, { name: "tui1", runtime: "pty", cli: "claude", readiness: "screen" })
      const verified = yield* waitFor("two delivery_verified", () => {
        const found = eventsOf(s.events, "delivery_verified", "tui1")
        return found.length >= 2 ? found : undefined
      })
      assert.deepStrictEqual(verified.map((event) => event["verification"]), ["echo", "echo"])
      for (const event of verified) assert.isString(event["delivery_id"])
      // A TUI agent is released at once (nothing of readiness holds its scope open).
      const released = yield* api(s.broker, "DELETE", "/api/spawned/tui1")
      assert.strictEqual(released.status, 200, JSON.stringify(released.body))
    }))

  it.effect("a TUI that shows its prompt at once but drops keys while booting: the text is typed again until it shows, and submitted once", () =>
    Effect.gen(function*() {
      const s = yield* Setup
      const { dir } = yield* spawnStandin(s, "early1", {
        task: "task for early1: the screen lied",
        env: { STANDIN_MODE: "prompt-early", STANDIN_DEAF_MS: "1500" }
      })
      const [session] = yield* waitFor("the task submitted", () => {
        const now = sessions(dir, "early1")
        return now[0] !== undefined && now[0].submissions.length >= 1 ? now : undefined
      })
      assert.deepStrictEqual(session!.submissions.map((submission) => submission.text), ["task for early1: the screen lied"])
      // Typed while the stand-in was deaf, then again (after clearing the box): never Enter on nothing.
      assert.isAtLeast(session!.keys.split("task for early1: the screen lied").length - 1, 2)
      assert.strictEqual(session!.keys.split("\r").length - 1, 1)
    }))

  it.effect("a TUI that never shows a prompt: its messages are typed once after the timeout, with the warning visible", () =>
    Effect.gen(function*() {
      const s = yield* Setup
      const { dir } = yield* spawnStandin(s, "mute1", {
        task: "task for mute1",
        env: { STANDIN_MODE: "never-ready", STANDIN_DEAF_MS: "300" }
      })
      const id = yield* dm(s, "mute1", "mute-dm")
      const [session] = yield* waitFor("two submissions", () => {
        const now = sessions(dir, "mute1")
        return now[0] !== undefined && now[0].submissions.length >= 2 ? now : undefined
      }, 60)
      const texts = session!.submissions.map((submission) => submission.text)
      assert.strictEqual(texts.length, 2)
      assert.strictEqual(texts[0], "task for mute1")
      assert.isTrue(texts[1]!.endsWith("]: mute-dm"))
      const row = yield* agentRow(s.broker, "mute1")
      assert.strictEqual(row?.["readiness"], "ready")
      assert.strictEqual(row?.["readiness_source"], "timeout")
      assert.include(String(row?.["readiness_warning"]), "no claude prompt on screen")
      const errors = eventsOf(s.events, "worker_error", "mute1")
      assert.deepStrictEqual(errors.map((event) => event["code"]), ["readiness_timeout"])
      yield* waitFor("the engine's queue to drain", async () =>
        (await Effect.runPromise(pendingAt(s.engine, "mute1"))).includes(id) ? undefined : true)
    }))

  it.effect("a TUI stuck on a sign-in screen is reported blocked with its first line, and nothing is typed into it", () =>
    Effect.gen(function*() {
      const s = yield* Setup
      const started = Date.now()
      const { dir } = yield* spawnStandin(s, "login1", { task: "task for login1", env: { STANDIN_MODE: "sign-in" } })
      const id = yield* dm(s, "login1", "login-dm")
      const row = yield* waitFor("login1 blocked, past the readiness timeout", async () => {
        const agent = await Effect.runPromise(agentRow(s.broker, "login1"))
        return agent?.["readiness"] === "blocked" && Date.now() - started > readyTimeoutMs + 1000 ? agent : undefined
      })
      assert.strictEqual(row["blocked_screen"], "Select login method:")
      const [session] = sessions(dir, "login1")
      assert.strictEqual(session?.keys, "")
      assert.include(yield* pendingAt(s.engine, "login1"), id)
      assert.deepStrictEqual(eventsOf(s.events, "worker_error", "login1").map((event) => event["code"]), ["agent_blocked"])
      assert.deepStrictEqual(eventsOf(s.events, "worker_ready", "login1"), [])
    }))

  it.effect("bash and cat agents are ready at once, and a DM reaches them", () =>
    Effect.gen(function*() {
      const s = yield* Setup
      for (const [name, cli] of [["line-bash", "bash"], ["line-cat", "cat"]] as const) {
        const spawned = yield* api(s.broker, "POST", "/api/spawn", { name, cli, cwd: s.home })
        assert.strictEqual(spawned.status, 200, JSON.stringify(spawned.body))
        const row = yield* agentRow(s.broker, name)
        assert.strictEqual(row?.["readiness"], "ready")
        assert.strictEqual(row?.["readiness_source"], "immediate")
      }
      yield* dm(s, "line-cat", "hello cat")
      yield* waitForScreen(s.broker, "line-cat", "]: hello cat")
    }))
})

describe("readiness across a daemon restart", () => {
  it.scopedLive("messages that arrive while the agent is starting survive a restart: typed once into the new session, never into the old", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("relay-e2e-readiness-restart-")
      const bin = installStandin(join(home, "bin"), "claude")
      const dir = join(home, "agents")
      mkdirSync(dir, { recursive: true })
      const engine = yield* startEngine(home)
      const sender = yield* createEngineAgent(engine, "restart-sender")
      // A long readiness timeout: the agent stays `starting` while the daemon goes down.
      const env = { RELAY_READY_TIMEOUT_MS: "120000" }
      const spawnBody = (deafMs: number) => ({
        name: "rs1",
        cli: "claude",
        cwd: dir,
        env: { PATH: pathWith(bin), STANDIN_DIR: dir, STANDIN_DEAF_MS: String(deafMs) }
      })

      const first = yield* startBroker({ home, baseUrl: engine.url, workspaceKey: engine.workspaceKey, env })
      assert.strictEqual((yield* api(first, "POST", "/api/spawn", spawnBody(600_000))).status, 200)
      const ids: Array<string> = []
      for (const text of ["restart-dm-1", "restart-dm-2"]) {
        const response = yield* engineCall(engine.url, "POST", "/v1/dm", { to: "rs1", text }, sender)
        ids.push((response.data as { id: string }).id)
      }
      yield* waitFor("both frames received by the first broker", async () => {
        const report = await Effect.runPromise(api(first, "GET", "/api/node-delivery"))
        const agents = (report.body["agents"] ?? []) as ReadonlyArray<{ agent?: string; counts?: { received?: number } }>
        return (agents.find((agent) => agent.agent === "rs1")?.counts?.received ?? 0) >= 2 ? true : undefined
      })
      // The stand-in records its session once node has loaded it (seconds on a loaded machine).
      yield* waitFor("the first session to start", async () => sessions(dir, "rs1").length === 1 ? true : undefined)
      assert.strictEqual((yield* agentRow(first, "rs1"))?.["readiness"], "starting")
      yield* stopChild(first.child, "SIGTERM")
      // It stopped on SIGTERM by itself (stopChild would have used SIGKILL after 10 s).
      assert.strictEqual(first.child.exitCode, 0, first.output())
      assert.deepStrictEqual([...(yield* pendingAt(engine, "rs1"))].sort(), [...ids].sort())

      const second = yield* startBroker({ home, baseUrl: engine.url, workspaceKey: engine.workspaceKey, env })
      assert.strictEqual((yield* api(second, "POST", "/api/spawn", spawnBody(1500))).status, 200)
      // Frames replayed before rs1 was back were dead-lettered (unknown_agent): bring them in.
      yield* waitFor("both messages typed into the new session", async () => {
        await Effect.runPromise(api(second, "POST", "/api/dead-letters/redeliver", { all: true }))
        const typed = sessions(dir, "rs1").flatMap((session) => session.submissions)
        return typed.length >= 2 ? true : undefined
      }, 60)
      yield* waitFor("the engine's queue to drain", async () =>
        (await Effect.runPromise(pendingAt(engine, "rs1"))).length === 0 ? true : undefined)
      const all = sessions(dir, "rs1")
      assert.strictEqual(all.length, 2)
      const typed = all.map((session) => session.submissions.map((submission) => submission.text.replace(/^[\s\S]*\]: /, "")))
      // The old session (never ready) got nothing; the new one each message once.
      assert.deepStrictEqual(typed.map((texts) => [...texts].sort()).sort((a, b) => a.length - b.length), [[], ["restart-dm-1", "restart-dm-2"]])
    }), 180_000)
})
