import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdirSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { WebSocket } from "ws"
import { EmbeddedEngine } from "../../src/engine/index.js"
import { isAlive } from "../support/processes.js"
import {
  api,
  type Broker,
  createEngineAgent,
  engineCall,
  ensureBuilt,
  root,
  startBroker,
  stopChild,
  tempDir,
  waitFor
} from "./deliveriesHarness.js"

// Idleness with real processes: a daemon against the embedded engine, an agent whose terminal
// activity the test steers (ticker-agent.mjs), and what an orchestrator sees: `current_state` in
// /api/spawned and the lifecycle events on /ws.

ensureBuilt()

const ticker = join(root, "test", "e2e", "ticker-agent.mjs")

type Event = Record<string, unknown> & { kind: string }

/** Everything /ws sends from seq 0 on, as it arrives. */
const eventSocket = (broker: Broker) =>
  Effect.acquireRelease(
    Effect.async<{ readonly events: Array<Event>; readonly socket: WebSocket }, Error>((resume) => {
      const events: Array<Event> = []
      const socket = new WebSocket(`${broker.url.replace(/^http/, "ws")}/ws?sinceSeq=0`, {
        headers: { "x-api-key": broker.apiKey }
      })
      socket.on("message", (data) => events.push(JSON.parse(data.toString()) as Event))
      socket.once("open", () => resume(Effect.succeed({ events, socket })))
      socket.once("error", (error) => resume(Effect.fail(error)))
    }),
    ({ socket }) => Effect.sync(() => socket.close())
  )

const setUp = (label: string) =>
  Effect.gen(function*() {
    const home = yield* tempDir(`relay-e2e-idleness-${label}-`)
    const agents = join(home, "agents")
    mkdirSync(agents, { recursive: true })
    const { url } = yield* EmbeddedEngine.start({ dataDir: join(home, "engine") })
    const workspaceKey = ((yield* engineCall(url, "POST", "/v1/workspaces", { name: `idleness-${label}` })).data as {
      api_key: string
    }).api_key
    const broker = yield* startBroker({ home, baseUrl: url, workspaceKey })
    yield* Effect.addFinalizer(() => stopChild(broker.child, "SIGTERM"))
    const { events } = yield* eventSocket(broker)
    const spawn = (body: Record<string, unknown>) =>
      Effect.flatMap(api(broker, "POST", "/api/spawn", { cwd: agents, ...body }), (response) =>
        response.status === 200
          ? Effect.succeed(response.body as { agent_id: string; pid: number })
          : Effect.fail(new Error(`spawn: ${response.status} ${JSON.stringify(response.body)}`)))
    const type = (name: string, text: string) =>
      Effect.flatMap(api(broker, "POST", `/api/input/${name}`, { data: `${text}\r` }), (response) =>
        response.status === 200 ? Effect.void : Effect.fail(new Error(`input: ${response.status}`)))
    const listed = (name: string) =>
      Effect.map(api(broker, "GET", "/api/spawned"), (response) =>
        (response.body["agents"] as ReadonlyArray<Record<string, unknown>>).find((agent) => agent.name === name))
    const stateOf = (name: string) => Effect.map(listed(name), (agent) => agent?.["current_state"])
    const waitForState = (name: string, state: string) =>
      waitFor(`${name} ${state}`, async () => (await Effect.runPromise(stateOf(name))) === state ? true : undefined, 60)
    const of = (name: string, kind?: string) =>
      events.filter((event) => event.name === name && (kind === undefined || event.kind === kind))
    const waitForEvents = (name: string, kind: string, count: number) =>
      waitFor(`${count} ${kind} for ${name} on /ws`, () => of(name, kind).length >= count ? of(name, kind) : undefined, 60)
    return { home, agents, url, workspaceKey, broker, events, spawn, type, listed, stateOf, waitForState, of, waitForEvents }
  })

const assertIdleShape = (event: Event | undefined, thresholdSecs: number) => {
  assert.isNumber(event?.["idle_secs"])
  assert.isAtLeast(event?.["idle_secs"] as number, thresholdSecs)
  assert.isString(event?.["since"])
  assert.isFalse(Number.isNaN(Date.parse(event?.["since"] as string)), String(event?.["since"]))
}

describe("idleness (real daemon, /ws)", () => {
  it.scopedLive("current_state follows the terminal: working, idle with one agent_idle per silent stretch, blocked_on_send while a held message waits", () =>
    Effect.gen(function*() {
      const { url, workspaceKey, broker, spawn, type, stateOf, waitForState, of, waitForEvents } = yield* setUp("states")
      yield* spawn({ name: "t", cli: "node", args: [ticker], idleThresholdSecs: 3 })

      // Ticking: working, and no agent_idle while it ticks.
      yield* waitForState("t", "working")
      yield* type("t", "stop")
      const [first] = yield* waitForEvents("t", "agent_idle", 1)
      assertIdleShape(first, 3)
      assert.strictEqual(yield* stateOf("t"), "idle")

      // Output again: working; silent again: a second agent_idle (one per stretch, none in between).
      yield* type("t", "go")
      yield* waitForState("t", "working")
      assert.lengthOf(of("t", "agent_idle"), 1)
      yield* type("t", "stop")
      const idles = yield* waitForEvents("t", "agent_idle", 2)
      assertIdleShape(idles[1], 3)
      assert.isAbove(Date.parse(idles[1]?.["since"] as string), Date.parse(idles[0]?.["since"] as string))

      // A message held for it (manual_flush) while it is silent: blocked_on_send, then typed on flush.
      const held = yield* api(broker, "PUT", "/api/spawned/t/delivery-mode", { mode: "manual_flush" })
      assert.strictEqual(held.status, 200, JSON.stringify(held.body))
      const sender = yield* createEngineAgent({ url, workspaceKey }, "sender")
      yield* engineCall(url, "POST", "/v1/dm", { to: "t", text: "held-for-t" }, sender)
      yield* waitFor("the message held for t", async () => {
        const pending = await Effect.runPromise(api(broker, "GET", "/api/spawned/t/pending"))
        return (pending.body["pending"] as ReadonlyArray<unknown> | undefined)?.length === 1 ? true : undefined
      }, 60)
      yield* type("t", "go")
      yield* waitForState("t", "working")
      yield* type("t", "stop")
      const [blocked] = yield* waitForEvents("t", "agent_blocked_on_send", 1)
      assert.strictEqual(blocked?.["pending_delivery_count"], 1)
      assert.isAtLeast(blocked?.["blocked_secs"] as number, 3)
      assert.strictEqual(yield* stateOf("t"), "blocked_on_send")
      assert.lengthOf(of("t", "agent_idle"), 2)
      const flushed = yield* api(broker, "POST", "/api/spawned/t/flush")
      assert.strictEqual(flushed.body["flushed"], 1, JSON.stringify(flushed.body))
      // Typed: activity, then silence with nothing held: idle again.
      const afterFlush = yield* waitForEvents("t", "agent_idle", 3)
      assertIdleShape(afterFlush[2], 3)
      assert.strictEqual(yield* stateOf("t"), "idle")
    }), 240_000)

  it.scopedLive("task_exit: the agent does its task, goes idle, and is released; the end is reported as an exit", () =>
    Effect.gen(function*() {
      const { agents, spawn, listed, of, waitForEvents } = yield* setUp("task-exit")
      const spawned = yield* spawn({
        name: "job",
        cli: "node",
        args: [ticker, "--quiet"],
        task: "work 5",
        spawnMode: "task_exit",
        idleThresholdSecs: 2
      })
      yield* waitForEvents("job", "agent_released", 1)
      const kinds = of("job").map((event) => event.kind).filter((kind) =>
        ["agent_spawned", "agent_idle", "agent_exited", "agent_exit", "agent_released"].includes(kind))
      assert.deepStrictEqual(kinds, ["agent_spawned", "agent_idle", "agent_exited", "agent_exit", "agent_released"])
      const [exited] = of("job", "agent_exited")
      assert.strictEqual(exited?.["reason"], "task_complete")
      assert.isTrue("code" in exited! && "signal" in exited!, JSON.stringify(exited))
      assert.strictEqual(of("job", "agent_exit")[0]?.["reason"], "task_complete")
      // The task was typed and done before the agent went idle; its process is gone, it is not listed.
      const typed = readdirSync(agents).filter((file) => file.startsWith("job-")).map((file) => readFileSync(join(agents, file), "utf8"))
      assert.deepStrictEqual(typed.length, 1)
      assert.include(typed[0], "work 5")
      const output = of("job", "worker_stream").map((event) => String(event["chunk"])).join("")
      assert.include(output, "done")
      assert.isUndefined(yield* listed("job"))
      yield* waitFor("job's process gone", () => (isAlive(spawned.pid) ? undefined : true), 30)
    }), 180_000)

  it.scopedLive("single_shot: the agent is released when its process ends, and its name is free again", () =>
    Effect.gen(function*() {
      const { agents, broker, spawn, listed, of, waitForEvents } = yield* setUp("single-shot")
      yield* spawn({
        name: "once",
        cli: "node",
        args: ["-e", "process.stdout.write('one shot\\r\\n'); setTimeout(() => process.exit(0), 300)"],
        spawnMode: "single_shot"
      })
      yield* waitForEvents("once", "agent_released", 1)
      const kinds = of("once").map((event) => event.kind).filter((kind) =>
        ["agent_spawned", "agent_exited", "agent_exit", "agent_released"].includes(kind))
      assert.deepStrictEqual(kinds, ["agent_spawned", "agent_exited", "agent_exit", "agent_released"])
      assert.strictEqual(of("once", "agent_exited")[0]?.["code"], 0)
      assert.strictEqual(of("once", "agent_exit")[0]?.["reason"], "exit code 0")
      assert.isUndefined(yield* listed("once"))
      const again = yield* api(broker, "POST", "/api/spawn", { name: "once", cli: "cat", cwd: agents })
      assert.strictEqual(again.status, 200, JSON.stringify(again.body))
    }), 180_000)
})
