import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdirSync, rmSync } from "node:fs"
import { join } from "node:path"
import { EmbeddedEngine } from "../../src/engine/index.js"
import {
  reapRecorders,
  recordedSessions,
  api,
  type Broker,
  createEngineAgent,
  engineCall,
  ensureBuilt,
  recorderAgent,
  spawnAgent,
  startBroker,
  stopChild,
  tempDir,
  waitFor
} from "./deliveriesHarness.js"

// relay-broker against the engine with and without `relay:delivery-cursor-v1`: a daemon restarted
// with its local cursor files deleted resumes where the engine's acks stand, with nothing replayed
// or skipped. Against a v5 engine (no providers, no cursor) it falls back to the v5 protocol and the
// first frame becomes the baseline, as before.

ensureBuilt()


const agentReport = (broker: Broker, name: string) =>
  Effect.map(api(broker, "GET", "/api/node-delivery"), (response) =>
    ((response.body["agents"] ?? []) as ReadonlyArray<{
      agent: string
      cursor: number | null
      baseline: number | null
      counts: { surfaced: number; gaps: number; dead_lettered: number }
    }>)
      .find((agent) => agent.agent === name))

for (const nodeProtocol of ["provider", "v5"] as const) {
  describe(`a restarted daemon without its cursor files (${nodeProtocol} engine)`, () => {
    it.scopedLive("resumes after the engine's acks: the new session gets the queued message once, nothing older", () =>
      Effect.gen(function*() {
        const home = yield* tempDir(`relay-e2e-cursor-${nodeProtocol}-`)
        const agents = join(home, "agents")
        mkdirSync(agents, { recursive: true })
        yield* Effect.addFinalizer(() => reapRecorders(agents))
        const { url } = yield* EmbeddedEngine.start({ dataDir: join(home, "engine"), nodeProtocol })
        const workspaceKey = ((yield* engineCall(url, "POST", "/v1/workspaces", { name: "cursor-e2e" })).data as { api_key: string }).api_key
        const engine = { url, workspaceKey }
        const sender = yield* createEngineAgent(engine, "sender")
        const dm = (text: string) => engineCall(url, "POST", "/v1/dm", { to: "w", text }, sender)
        const acked = (seq: number) =>
          waitFor(`the engine's ack cursor for w reaches ${seq}`, async () => {
            const agent = (await Effect.runPromise(engineCall(url, "GET", "/v1/agents/w", undefined, workspaceKey))).data as {
              pending_deliveries: ReadonlyArray<unknown>
            }
            return agent.pending_deliveries.length === 0 ? true : undefined
          }, 60)

        const first = yield* startBroker({ home, baseUrl: url, workspaceKey })
        yield* spawnAgent(first, "w", recorderAgent, agents)
        yield* dm("m1-before")
        yield* dm("m2-before")
        yield* waitFor("m1 and m2 in w's first session", () =>
          recordedSessions(agents, "w").some((text) => text.includes("m2-before")) ? true : undefined, 60)
        yield* acked(2)
        yield* stopChild(first.child, "SIGTERM")
        yield* reapRecorders(agents)
        const cursors = join(first.stateDir, "deliveries")
        assert.isTrue(existsSync(cursors))
        rmSync(cursors, { recursive: true, force: true })

        yield* dm("m3-while-down")
        const second = yield* startBroker({ home, baseUrl: url, workspaceKey })
        const before = recordedSessions(agents, "w").length
        yield* spawnAgent(second, "w", recorderAgent, agents)
        yield* waitFor("m3 in w's new session", () => {
          const all = recordedSessions(agents, "w")
          return all.length > before && all.slice(before).some((text) => text.includes("m3-while-down")) ? true : undefined
        }, 60)
        yield* acked(3)
        const fresh = recordedSessions(agents, "w").slice(before).join("")
        assert.strictEqual(fresh.split("m3-while-down").length - 1, 1, fresh)
        assert.notInclude(fresh, "m1-before")
        assert.notInclude(fresh, "m2-before")

        // Where the new cursor came from: the engine's delivery_ack_seq (2) for a cursor-capable
        // engine, so m3 is the next frame and no baseline was taken; a v5 engine sends no cursor, so
        // the first replayed frame (m3) becomes the baseline. Either way only m3 surfaced.
        const report = yield* agentReport(second, "w")
        assert.strictEqual(report?.cursor, 3, JSON.stringify(report))
        assert.strictEqual(report?.baseline, nodeProtocol === "provider" ? null : 3, JSON.stringify(report))
        assert.strictEqual(report?.counts.surfaced, 1, JSON.stringify(report))
        assert.strictEqual(report?.counts.gaps, 0, JSON.stringify(report))
        assert.strictEqual(report?.counts.dead_lettered, 0, JSON.stringify(report))
        yield* stopChild(second.child, "SIGTERM")
      }), 180_000)
  })
}
