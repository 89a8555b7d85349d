import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import {
  connect,
  connectNode,
  createAgent,
  createWorkspace,
  data,
  enrollNode,
  eventually,
  heartbeatFrame,
  registerAgent,
  registerFrame,
  sendAndSettle,
  startEngine
} from "./support.js"

// Time-driven behaviour under the TestClock: the 15 s sweep with its 45 s node TTL, the delivery TTL,
// and the absence of any timed redelivery (spec §3.5, §4.5, §4.7; §6.1 items 7 and 11).

const setup = Effect.gen(function*() {
  const engine = yield* startEngine()
  const ws = yield* createWorkspace(engine.url)
  const node = yield* enrollNode(ws, "node-a")
  const client = yield* connectNode(engine.url, node)
  const bob = yield* registerAgent(client, "bob")
  return { url: engine.url, ws, node, client, bob }
})

const agentStatus = (url: string, key: string, name: string) =>
  Effect.map(data(url, "GET", `/v1/agents/${name}`, { token: key }), (agent) => agent.status as string)

describe("engine liveness and expiry (TestClock)", () => {
  it.scoped("a node silent past 45 s is swept offline with its agents; the socket stays; a heartbeat revives it", () =>
    Effect.gen(function*() {
      const { url, ws, client } = yield* setup
      // A second node that never heartbeats: its going offline shows that a sweep ran.
      yield* connectNode(url, yield* enrollNode(ws, "node-b"))
      yield* TestClock.adjust("30 seconds")
      yield* sendAndSettle(client, heartbeatFrame({ active_agents: 1 }))
      // Sweeps at 45 s and 60 s see a heartbeat 15 s / 30 s old: still online.
      yield* TestClock.adjust("30 seconds")
      yield* eventually(
        "the sweeps at 45 s and 60 s ran (node-b, silent for 60 s, is offline)",
        Effect.map(data(url, "GET", "/v1/nodes/node-b", { token: ws.key }), (node) => node.status === "offline")
      )
      assert.strictEqual(yield* agentStatus(url, ws.key, "bob"), "active")
      assert.strictEqual((yield* data(url, "GET", "/v1/nodes/node-a", { token: ws.key })).status, "online")
      // The sweep at 90 s sees a 60 s-old heartbeat.
      yield* TestClock.adjust("30 seconds")
      yield* eventually("bob goes offline with his node", Effect.map(agentStatus(url, ws.key, "bob"), (s) => s === "offline"))
      const node = yield* data(url, "GET", "/v1/nodes/node-a", { token: ws.key })
      assert.strictEqual(node.status, "offline")
      assert.strictEqual(node.live, false)
      assert.isFalse(client.closed)
      const agent = yield* data(url, "GET", "/v1/agents/bob", { token: ws.key })
      assert.strictEqual(agent.location_type, "via_node")
      yield* sendAndSettle(client, heartbeatFrame())
      assert.strictEqual((yield* data(url, "GET", "/v1/nodes/node-a", { token: ws.key })).status, "online")
    }))

  it.scoped("unacked frames are never resent on a timer; expired rows are dead-lettered and never replayed", () =>
    Effect.gen(function*() {
      const { url, ws, node, client } = yield* setup
      const alice = yield* createAgent(ws, "alice")
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "unacked" } })
      yield* client.waitFor((f) => f.type === "deliver")
      // Half an hour of heartbeats and sweeps: still exactly one frame.
      for (let i = 0; i < 6; i++) {
        yield* TestClock.adjust("5 minutes")
        yield* sendAndSettle(client, heartbeatFrame({ active_agents: 1 }))
      }
      assert.strictEqual(client.delivers().length, 1)
      // Past the 1 h TTL the row is dead-lettered: a reconnect replays nothing.
      yield* TestClock.adjust("31 minutes")
      const again = yield* connect(url, node.token)
      again.send(registerFrame(node))
      yield* again.waitFor((f) => f.type === "reply")
      yield* sendAndSettle(again, heartbeatFrame())
      assert.strictEqual(again.delivers().length, 0)
      const bobToken = (yield* registerAgent(again, "bob")).token
      yield* sendAndSettle(again, heartbeatFrame())
      assert.strictEqual(again.delivers().length, 0)
      const dead = yield* data(url, "GET", "/v1/deliveries?status=dead_lettered", { token: bobToken })
      assert.deepStrictEqual(dead.map((d: any) => [d.seq, d.status, d.error]), [[1, "dead_lettered", "delivery TTL expired"]])
    }))
})
