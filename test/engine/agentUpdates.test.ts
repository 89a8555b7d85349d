import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { agentEventsKept } from "../../src/engine/http/agentUpdates.js"
import { call, createAgent, createWorkspace, data, startEngine } from "./support.js"

// What a 12.4.1 broker writes about its agents: PATCH /v1/agents/:name (offline on shutdown) and
// POST /v1/agents/:name/events, which the engine keeps (newest first out) and lists back.

describe("engine agent updates and events", () => {
  it.scopedLive("PATCH sets status (online/away aliased), persona and merged metadata; an agent only itself", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      const bob = yield* createAgent(ws, "bob")
      yield* data(url, "PATCH", "/v1/agents/alice", { token: ws.key, body: { metadata: { team: "red", cli: "cat" } } })

      const offline = yield* data(url, "PATCH", "/v1/agents/alice", { token: ws.key, body: { status: "offline", metadata: { cli: "claude" } } })
      assert.strictEqual(offline.status, "offline")
      assert.deepStrictEqual(offline.metadata, { team: "red", cli: "claude" })
      const listed = yield* data(url, "GET", "/v1/agents?status=offline", { token: ws.key })
      assert.deepStrictEqual(listed.map((agent: any) => agent.name), ["alice"])

      const online = yield* data(url, "PATCH", "/v1/agents/alice", { token: alice.token, body: { status: "online", persona: "reviewer" } })
      assert.strictEqual(online.status, "active")
      assert.strictEqual(online.persona, "reviewer")
      assert.strictEqual((yield* data(url, "PATCH", "/v1/agents/alice", { token: ws.key, body: { status: "away" } })).status, "idle")

      const other = yield* call(url, "PATCH", "/v1/agents/alice", { token: bob.token, body: { status: "offline" } })
      assert.strictEqual(other.status, 403)
      assert.strictEqual(other.body.error.code, "forbidden")
      const unknown = yield* call(url, "PATCH", "/v1/agents/ghost", { token: ws.key, body: { status: "offline" } })
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.body.error.code, "agent_not_found")
      const badStatus = yield* call(url, "PATCH", "/v1/agents/alice", { token: ws.key, body: { status: "asleep" } })
      assert.strictEqual(badStatus.status, 400)
      assert.match(badStatus.body.error.message, /status/)
      const empty = yield* call(url, "PATCH", "/v1/agents/alice", { token: ws.key, body: {} })
      assert.strictEqual(empty.status, 400)
      assert.strictEqual((yield* call(url, "PATCH", "/v1/agents/alice", { body: { status: "offline" } })).status, 401)
    }))

  it.scopedLive("events are kept per agent, listed oldest first, filtered by type, bounded", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      const bob = yield* createAgent(ws, "bob")
      const first = yield* data(url, "POST", "/v1/agents/alice/events", {
        token: ws.key,
        body: { type: "session.starting", payload: { reason: "broker_spawn", observability: { sequence: 1 } } }
      })
      assert.strictEqual(first.type, "session.starting")
      assert.strictEqual(first.agent_name, "alice")
      yield* data(url, "POST", "/v1/agents/alice/events", { token: alice.token, body: { type: "activity.changed", payload: { activity: "thinking" } } })

      const events = yield* data(url, "GET", "/v1/agents/alice/events", { token: ws.key })
      assert.deepStrictEqual(events.map((event: any) => event.type), ["session.starting", "activity.changed"])
      assert.deepStrictEqual(events[0].payload, { reason: "broker_spawn", observability: { sequence: 1 } })
      const activity = yield* data(url, "GET", "/v1/agents/alice/events?type=activity.changed", { token: alice.token })
      assert.deepStrictEqual(activity.map((event: any) => event.payload.activity), ["thinking"])
      assert.deepStrictEqual(yield* data(url, "GET", "/v1/agents/bob/events", { token: bob.token }), [])

      assert.strictEqual((yield* call(url, "POST", "/v1/agents/alice/events", { token: bob.token, body: { type: "x" } })).status, 403)
      assert.strictEqual((yield* call(url, "POST", "/v1/agents/alice/events", { token: ws.key, body: { payload: {} } })).status, 400)
      assert.strictEqual((yield* call(url, "GET", "/v1/agents/alice/events?limit=0", { token: ws.key })).status, 400)

      for (let i = 0; i < agentEventsKept + 5; i++) {
        yield* data(url, "POST", "/v1/agents/bob/events", { token: ws.key, body: { type: "turn.started", payload: { i } } })
      }
      const kept = yield* data(url, "GET", `/v1/agents/bob/events?limit=${agentEventsKept}`, { token: ws.key })
      assert.strictEqual(kept.length, agentEventsKept)
      assert.strictEqual(kept[0].payload.i, 5)
      assert.strictEqual(kept[kept.length - 1].payload.i, agentEventsKept + 4)
    }))
})
