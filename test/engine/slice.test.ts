import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  call,
  connectNode,
  createAgent,
  createWorkspace,
  data,
  enrollNode,
  registerAgent,
  startEngine
} from "./support.js"

describe("engine vertical slice", () => {
  it.scopedLive("enrol a node, register an agent over the socket, deliver a DM", () =>
    Effect.gen(function*() {
      const engine = yield* startEngine()
      const health = yield* call(engine.url, "GET", "/health")
      assert.strictEqual(health.status, 200)
      assert.strictEqual(health.body.ok, true)
      const ws = yield* createWorkspace(engine.url)
      const alice = yield* createAgent(ws, "alice")
      const node = yield* enrollNode(ws, "node-a")
      assert.match(node.token, /^nt_live_[0-9a-f]{48}$/)
      const client = yield* connectNode(engine.url, node)
      const bob = yield* registerAgent(client, "bob")
      assert.deepStrictEqual(Object.keys(bob).sort(), ["agent_id", "name", "token"])
      const sent = yield* data(engine.url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "ping" } })
      const [frame] = yield* client.waitFor((f) => f.type === "deliver")
      assert.strictEqual(frame.agent, "bob")
      assert.strictEqual(frame.seq, 1)
      assert.strictEqual(frame.msg_id, sent.id)
      assert.strictEqual(frame.payload.type, "dm.received")
      assert.strictEqual(frame.payload.data.text, "ping")
      assert.strictEqual(frame.payload.data.from_name, "alice")
    }))
})
