import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { EmbeddedEngine } from "../../src/engine/index.js"
import { cli } from "../cli/harness.js"
import {
  reapRecorders,
  recordedSessions,
  api,
  type Broker,
  createEngineAgent,
  engineCall,
  ensureBuilt,
  root,
  startBroker,
  startProxy,
  stopChild,
  tempDir,
  waitFor
} from "./deliveriesHarness.js"

// Supervision with real processes: a daemon against the embedded engine (through a proxy that can
// send the daemon frames again), agents that crash on demand (crash-agent.mjs) or by themselves, and
// the lifecycle events read back from the event log.

ensureBuilt()

const crashAgent = join(root, "test", "e2e", "crash-agent.mjs")


type Event = Record<string, unknown> & { kind: string; seq: number }

const lifecycleKinds = new Set(["agent_exited", "agent_restarting", "agent_restarted", "agent_permanently_dead", "agent_released"])

/** The agent's lifecycle events from the replay buffer (what /ws replays), oldest first. */
const lifecycle = (broker: Broker, name: string) =>
  Effect.map(api(broker, "GET", "/api/events/replay?sinceSeq=0"), (response) =>
    (response.body["events"] as ReadonlyArray<Event>).filter((event) => event.name === name && lifecycleKinds.has(event.kind)))

const kinds = (events: ReadonlyArray<Event>) => events.map((event) => event.kind)

const setUp = (label: string) =>
  Effect.gen(function*() {
    const home = yield* tempDir(`relay-e2e-supervision-${label}-`)
    const agents = join(home, "agents")
    mkdirSync(agents, { recursive: true })
    yield* Effect.addFinalizer(() => reapRecorders(agents))
    const { url } = yield* EmbeddedEngine.start({ dataDir: join(home, "engine") })
    const workspaceKey = ((yield* engineCall(url, "POST", "/v1/workspaces", { name: `supervision-${label}` })).data as {
      api_key: string
    }).api_key
    const proxy = yield* startProxy(url)
    const broker = yield* startBroker({ home, baseUrl: proxy.url, workspaceKey })
    const sender = yield* createEngineAgent({ url, workspaceKey }, "sender")
    const dm = (to: string, text: string) => engineCall(url, "POST", "/v1/dm", { to, text }, sender)
    const spawn = (body: Record<string, unknown>) =>
      Effect.flatMap(api(broker, "POST", "/api/spawn", { cwd: agents, ...body }), (response) =>
        response.status === 200
          ? Effect.succeed(response.body as { agent_id: string; pid: number })
          : Effect.fail(new Error(`spawn: ${response.status} ${JSON.stringify(response.body)}`)))
    return { home, agents, broker, proxy, dm, spawn }
  })

describe("supervision (restartPolicy)", () => {
  it.scopedLive("a program that crashes twice is restarted twice, with its binding and cursor: every message arrives once", () =>
    Effect.gen(function*() {
      const { agents, broker, dm, proxy, spawn } = yield* setUp("twice")
      const spawned = yield* spawn({
        name: "w",
        cli: "node",
        args: [crashAgent],
        restartPolicy: { enabled: true, max_restarts: 3, cooldown_ms: 1500, max_consecutive_failures: 3 }
      })
      const events = (count: number) =>
        waitFor(`${count} lifecycle events for w`, async () => {
          const found = await Effect.runPromise(lifecycle(broker, "w"))
          return found.length >= count ? found : undefined
        }, 90)

      yield* dm("w", "first crash-now")
      // Sent between the crashes, while w is down for its cooldown: it reaches the second run, once.
      yield* waitFor("w restarting", async () =>
        kinds(await Effect.runPromise(lifecycle(broker, "w"))).includes("agent_restarting") ? true : undefined, 60)
      yield* dm("w", "between-crashes")
      yield* waitFor("the second run got the message sent between the crashes", () =>
        recordedSessions(agents, "w").length === 2 && recordedSessions(agents, "w").some((text) => text.includes("between-crashes")) ? true : undefined, 90)
      yield* dm("w", "second crash-now")
      yield* events(4)
      yield* dm("w", "after-restarts")
      yield* waitFor("the third run got the message sent after the restarts", () =>
        recordedSessions(agents, "w").some((text) => text.includes("after-restarts")) ? true : undefined, 90)

      // The engine's deliveries to w so far, sent to the daemon once more: the cursor and seen set kept
      // across both restarts make them duplicates. A cursor dropped at a restart would type them again
      // into the third run (and "first crash-now" would crash it).
      const delivered = proxy.toNode().filter((text) => {
        const frame = JSON.parse(text) as Record<string, unknown>
        return frame["type"] === "deliver" && frame["agent"] === "w"
      })
      assert.lengthOf(delivered, 4, JSON.stringify(delivered))
      for (const frame of delivered) yield* proxy.inject(frame)
      // Deliveries to one agent are decided in arrival order: once the next message is typed, the replays were decided.
      yield* dm("w", "last-word")
      yield* waitFor("the third run got the last message", () =>
        recordedSessions(agents, "w").some((text) => text.includes("last-word")) ? true : undefined, 90)

      const found = yield* lifecycle(broker, "w")
      assert.deepStrictEqual(kinds(found), [
        "agent_exited",
        "agent_restarting",
        "agent_restarted",
        "agent_exited",
        "agent_restarting",
        "agent_restarted"
      ])
      assert.deepStrictEqual(
        found.filter((event) => event.kind !== "agent_exited").map((event) => [event.kind, event["restart_count"]]),
        [["agent_restarting", 1], ["agent_restarted", 1], ["agent_restarting", 2], ["agent_restarted", 2]]
      )
      assert.deepStrictEqual([found[1]?.["delay_ms"], found[1]?.["code"]], [1500, 3])
      assert.strictEqual(found[0]?.["code"], 3)

      const all = recordedSessions(agents, "w")
      assert.strictEqual(all.length, 3, JSON.stringify(all))
      const everything = all.join("")
      for (const text of ["first crash-now", "between-crashes", "second crash-now", "after-restarts", "last-word"]) {
        assert.strictEqual(everything.split(text).length - 1, 1, `${text} once in ${JSON.stringify(all)}`)
      }

      // Same binding; the delivery cursor went on (5 messages acked, none pending).
      const listed = (yield* api(broker, "GET", "/api/spawned")).body["agents"] as ReadonlyArray<Record<string, unknown>>
      const w = listed.find((agent) => agent.name === "w")
      assert.strictEqual(w?.["agent_id"], spawned.agent_id)
      assert.notStrictEqual(w?.["pid"], spawned.pid)
      const delivery = (yield* api(broker, "GET", "/api/node-delivery")).body["agents"] as ReadonlyArray<Record<string, unknown>>
      assert.strictEqual(delivery.find((agent) => agent["agent"] === "w")?.["cursor"], 5)
      const insights = (yield* api(broker, "GET", "/api/crash-insights")).body as {
        total_crashes: number
        recent: ReadonlyArray<Record<string, unknown>>
      }
      assert.strictEqual(insights.total_crashes, 2)
      assert.deepStrictEqual(insights.recent.map((crash) => [crash.name, crash.code, crash.restarted]), [["w", 3, true], ["w", 3, true]])
      yield* stopChild(broker.child, "SIGTERM")
    }), 240_000)

  it.scopedLive("an agent in its cooldown is listed as restarting; a release then: no restart", () =>
    Effect.gen(function*() {
      const { agents, broker, spawn } = yield* setUp("release")
      const exitSoon = (code: number) => ["-e", `setTimeout(() => process.exit(${code}), 200)`]
      const spawned = yield* spawn({ name: "r", cli: "node", args: exitSoon(2), restartPolicy: { cooldown_ms: 10_000 } })
      yield* waitFor("r restarting", async () =>
        kinds(await Effect.runPromise(lifecycle(broker, "r"))).includes("agent_restarting") ? true : undefined, 60)

      // Listed while it waits: bound, no process, the restart under way and when it is due.
      const listed = (yield* api(broker, "GET", "/api/spawned")).body["agents"] as ReadonlyArray<Record<string, unknown>>
      const r = listed.find((agent) => agent.name === "r")
      assert.deepStrictEqual(
        [r?.["status"], r?.["current_state"], r?.["restart_count"], r?.["agent_id"], r?.["pid"]],
        ["restarting", "restarting", 1, spawned.agent_id, null]
      )
      assert.isAbove(Date.parse(String(r?.["next_restart_at"])), Date.parse(String(r?.["last_activity_at"])))
      const table = yield* cli(["agents", "--url", broker.url, "--api-key", broker.apiKey])
      assert.strictEqual(table.code, 0, table.stderr)
      assert.match(table.stdout, /^r\s+node\s+-\s+restarting #1 in \d+s/m)

      const released = yield* api(broker, "DELETE", "/api/spawned/r")
      assert.strictEqual(released.status, 200, JSON.stringify(released.body))
      // A second agent with the same cooldown, crashing after r's release: once it is back, r's
      // cooldown has run out too, and r would have been restarted by then.
      yield* spawn({ name: "s", cli: "node", args: exitSoon(2), restartPolicy: { cooldown_ms: 10_000 } })
      yield* waitFor("s restarted", async () =>
        kinds(await Effect.runPromise(lifecycle(broker, "s"))).includes("agent_restarted") ? true : undefined, 90)
      assert.deepStrictEqual(kinds(yield* lifecycle(broker, "r")), ["agent_exited", "agent_restarting", "agent_released"])
      const after = (yield* api(broker, "GET", "/api/spawned")).body["agents"] as ReadonlyArray<Record<string, unknown>>
      assert.isFalse(after.some((agent) => agent.name === "r"))
      // The name is free again.
      const again = yield* api(broker, "POST", "/api/spawn", { name: "r", cli: "cat", cwd: agents })
      assert.strictEqual(again.status, 200, JSON.stringify(again.body))
      yield* stopChild(broker.child, "SIGTERM")
    }), 120_000)

  it.scopedLive("past max_restarts the agent is permanently dead", () =>
    Effect.gen(function*() {
      const { broker, spawn } = yield* setUp("dead")
      yield* spawn({
        name: "d",
        cli: "node",
        args: ["-e", "setTimeout(() => process.exit(4), 200)"],
        restartPolicy: { enabled: true, max_restarts: 1, cooldown_ms: 200, max_consecutive_failures: 10 }
      })
      const found = yield* waitFor("d permanently dead", async () => {
        const events = await Effect.runPromise(lifecycle(broker, "d"))
        return kinds(events).includes("agent_permanently_dead") ? events : undefined
      }, 60)
      assert.deepStrictEqual(kinds(found), [
        "agent_exited",
        "agent_restarting",
        "agent_restarted",
        "agent_exited",
        "agent_permanently_dead"
      ])
      assert.match(String(found[4]?.["reason"]), /max_restarts \(1\) reached/)
      const listed = (yield* api(broker, "GET", "/api/spawned")).body["agents"] as ReadonlyArray<Record<string, unknown>>
      assert.isFalse(listed.some((agent) => agent.name === "d"))
      yield* stopChild(broker.child, "SIGTERM")
    }), 120_000)
})
