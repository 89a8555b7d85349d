import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { api, mainJs, startDaemon, tempRoot, until } from "../support/daemonProcess.js"
import { freshMachineEnv } from "../support/processes.js"
import { eventually } from "../support/polling.js"

// The routes harness-driver 9.1.6 calls besides spawn/list/release/send, with upstream's shapes,
// against a real daemon (`init`, as upstream's clients launch it) with real agents.

describe.skipIf(!existsSync(mainJs))("upstream routes", () => {
  it.scopedLive("session, config, metrics, crash insights, threads, replay, preflight, model, channels, 501s", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot("relay-broker-routes-")
      const stateDir = join(root, "state")
      const daemon = yield* startDaemon(
        ["init", "--instance-name", "routes", "--channels", "general", "--persist", "--state-dir", stateDir],
        stateDir,
        freshMachineEnv(root)
      )
      yield* Effect.promise(() => until(daemon, () => daemon.stderr.some((line) => line.includes("connected to ws://")) || undefined))
      const call = (method: string, path: string, body?: unknown) => api(daemon.url, daemon.apiKey, method, path, body)

      assert.strictEqual((yield* call("GET", "/api/session")).body.mode, "persist")
      assert.deepStrictEqual((yield* call("POST", "/api/session/renew")).body, { renewed: true, expires_in_secs: 120, persist: true })
      const config = (yield* call("GET", "/api/config")).body
      assert.match(config.workspaceKey, /^rk_/)
      assert.isString(config.defaultWorkspaceId)
      assert.isArray(config.memberships)

      // Every field harness-driver sends is accepted, the lifecycle ones included.
      const spawned = yield* call("POST", "/api/spawn", {
        name: "w1", cli: "cat", args: [], channels: ["dev"], team: "blue", model: "m", skipRelayPrompt: true,
        restartPolicy: { enabled: true, max_restarts: 3, cooldown_ms: 100, max_consecutive_failures: 2 },
        idleThresholdSecs: 30, spawnMode: "interactive", exitAfterTask: false, transport: "pty"
      })
      assert.strictEqual(spawned.status, 200, JSON.stringify(spawned.body))
      assert.deepStrictEqual(spawned.body.channels, ["general", "dev"])
      const crasher = yield* call("POST", "/api/spawn", { name: "crasher", cli: "sh", args: ["-c", "exit 3"] })
      assert.strictEqual(crasher.status, 200, JSON.stringify(crasher.body))

      const metrics = (yield* call("GET", "/api/metrics")).body
      const w1 = metrics.agents.find((agent: any) => agent.name === "w1")
      assert.strictEqual(w1.pid, spawned.body.pid)
      assert.isAbove(w1.memory_bytes, 0)
      assert.isAtLeast(w1.uptime_secs, 0)
      assert.isAtLeast(metrics.broker.active_agents, 1)
      assert.isAtLeast(metrics.broker.uptime_secs, 0)
      assert.deepStrictEqual((yield* call("GET", "/api/metrics?agent=w1")).body.agents.map((agent: any) => agent.name), ["w1"])
      const unknown = yield* call("GET", "/api/metrics?agent=ghost")
      assert.deepStrictEqual([unknown.status, unknown.body.code], [404, "agent_not_found"])

      yield* eventually("the crash is recorded", Effect.map(call("GET", "/api/crash-insights"), (answer) => answer.body.total_crashes === 1))
      const insights = (yield* call("GET", "/api/crash-insights")).body
      assert.deepStrictEqual(Object.keys(insights).sort(), ["health_score", "patterns", "recent", "total_crashes"])
      assert.deepStrictEqual([insights.recent[0].name, insights.recent[0].code], ["crasher", 3])
      assert.deepStrictEqual(insights.patterns[0].pattern, "exit code 3")
      assert.isBelow(insights.health_score, 100)

      assert.deepStrictEqual((yield* call("GET", "/api/threads")).body, { threads: [] })
      const replay = (yield* call("GET", "/api/events/replay?sinceSeq=0")).body
      assert.isTrue(replay.events.some((event: any) => event.kind === "agent_spawned" && event.name === "w1"))
      assert.strictEqual(replay.gap, false)
      assert.isTrue(replay.events.some((event: any) => event.kind === "agent_exit" && event.name === "crasher" && event.reason === "exit code 3"))
      assert.strictEqual(replay.oldestAvailable, 1)
      assert.strictEqual(replay.currentSeq, replay.events[replay.events.length - 1].seq)
      assert.strictEqual((yield* call("GET", "/api/events/replay?sinceSeq=x")).status, 400)

      const preflight = (yield* call("POST", "/api/preflight", { agents: [{ name: "a", cli: "cat" }, { name: "b", cli: "no-such-cli-xyz" }] })).body
      assert.deepStrictEqual(preflight.agents.map((agent: any) => [agent.name, agent.ok]), [["a", true], ["b", false]])

      const subscribed = yield* call("POST", "/api/spawned/w1/subscribe", { channels: ["ops"] })
      assert.deepStrictEqual(subscribed.body.channels, ["general", "dev", "ops"])
      const unsubscribed = yield* call("POST", "/api/spawned/w1/unsubscribe", { channels: ["general"] })
      assert.deepStrictEqual(unsubscribed.body.channels, ["dev", "ops"])
      const listed = (yield* call("GET", "/api/spawned")).body.agents.find((agent: any) => agent.name === "w1")
      assert.deepStrictEqual(listed.channels, ["dev", "ops"])
      assert.deepStrictEqual([listed.team, listed.model], ["blue", "m"])

      const model = yield* call("POST", "/api/spawned/w1/model", { model: "other" })
      assert.deepStrictEqual([model.status, model.body.code, model.body.retryable], [501, "unsupported_operation", false])
      assert.strictEqual((yield* call("POST", "/api/spawned/ghost/model", { model: "x" })).status, 404)
      assert.strictEqual((yield* call("POST", "/api/agents/by-name/w1/interrupt")).status, 501)
      assert.strictEqual((yield* call("GET", "/api/history/stats")).status, 200)

      // A program that does not exist is the caller's error.
      const missing = yield* call("POST", "/api/spawn", { name: "nope", cli: "no-such-program-xyz" })
      assert.deepStrictEqual([missing.status, missing.body.code, missing.body.retryable], [400, "cli_not_found", false])
      const headless = yield* call("POST", "/api/spawn", { name: "hl", cli: "opencode", transport: "headless" })
      assert.deepStrictEqual([headless.status, headless.body.code, headless.body.retryable], [409, "unsupported_runtime", false])
    }), 120_000)
})
