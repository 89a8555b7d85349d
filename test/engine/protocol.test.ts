import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import {
  call,
  connect,
  connectNode,
  createAgent,
  createWorkspace,
  data,
  enrollNode,
  heartbeatFrame,
  registerAgent,
  registerFrame,
  sendAndSettle,
  startEngine,
  tryConnect
} from "./support.js"

// The /v1/node/ws protocol against a raw `ws` client (spec §1.3, §3; §6.1 items 1–6, 11).

const keysOf = (text: string) => Object.keys(JSON.parse(text)).sort()
const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../../shared/fixtures/upstream-fleet-wire/${name}.json`, import.meta.url), "utf8"))

const setup = Effect.gen(function*() {
  const engine = yield* startEngine()
  const ws = yield* createWorkspace(engine.url)
  const node = yield* enrollNode(ws, "node-a")
  return { engine, ws, node, url: engine.url }
})

describe("engine /v1/node/ws", () => {
  it.scopedLive("upgrade auth: Bearer header or ?token=; missing, malformed or unknown tokens get a plain HTTP 401", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      assert.strictEqual((yield* tryConnect(url, node.token))._tag, "Open")
      assert.strictEqual((yield* tryConnect(url, node.token, { via: "query" }))._tag, "Open")
      assert.deepStrictEqual(yield* tryConnect(url, undefined), { _tag: "Rejected", status: 401 })
      assert.deepStrictEqual(yield* tryConnect(url, "nt_live_" + "0".repeat(48)), { _tag: "Rejected", status: 401 })
      assert.deepStrictEqual(yield* tryConnect(url, ws.key), { _tag: "Rejected", status: 401 })
      assert.deepStrictEqual(yield* tryConnect(url, node.token, { path: "/v1/other/ws" }), { _tag: "Rejected", status: 426 })
    }))

  it.scopedLive("reply, error and agent.register data carry exactly the documented fields; v is 1", () =>
    Effect.gen(function*() {
      const { url, node } = yield* setup
      const client = yield* connect(url, node.token)
      const reply = yield* client.request({ ...registerFrame(node), id: "req_node_register_1" })
      const replyText = client.texts[client.frames.indexOf(reply)]!
      assert.deepStrictEqual(keysOf(replyText), ["data", "id", "ok", "type", "v"])
      assert.strictEqual(reply.v, 1)
      assert.strictEqual(reply.ok, true)
      assert.strictEqual(reply.data.id, node.id)
      assert.strictEqual(reply.data.status, "online")
      assert.strictEqual(reply.data.handlers_live, false)

      const agentReply = yield* client.request({ v: 1, type: "agent.register", id: "agent_register_0123", name: "worker-1" })
      assert.deepStrictEqual(keysOf(client.texts[client.frames.indexOf(agentReply)]!), ["data", "id", "ok", "type", "v"])
      assert.deepStrictEqual(Object.keys(agentReply.data).sort(), ["agent_id", "name", "token"])
      assert.strictEqual(agentReply.data.name, "worker-1")
      assert.match(agentReply.data.token, /^at_live_[0-9a-f]{32}$/)

      const error = yield* client.request({ ...registerFrame(node), node_id: "node_somebody_else", id: "req_bad" })
      assert.deepStrictEqual(keysOf(client.texts[client.frames.indexOf(error)]!), ["code", "id", "message", "ok", "type", "v"])
      assert.strictEqual(error.ok, false)
      assert.strictEqual(error.code, "node_id_mismatch")
    }))

  it.scopedLive("replies echo the request id, or carry a fresh one when the request had none", () =>
    Effect.gen(function*() {
      const { url, node } = yield* setup
      const client = yield* connect(url, node.token)
      client.send(registerFrame(node))
      const [reply] = yield* client.waitFor((f) => f.type === "reply")
      assert.isString(reply.id)
      assert.isTrue(reply.id.length > 0)
      client.send({ v: 1, type: "inventory.sync", agents: [] })
      const replies = yield* client.waitFor((f) => f.type === "reply", 2)
      assert.notStrictEqual(replies[1].id, replies[0].id)
      assert.deepStrictEqual(replies[1].data, { rebound_agents: 0, open_invocations: 0, completed_invocations: 0, rescheduled_invocations: 0 })
    }))

  it.scopedLive("undecodable frames get error invalid_message and the socket stays open", () =>
    Effect.gen(function*() {
      const { url, node } = yield* setup
      const client = yield* connect(url, node.token)
      const bad: ReadonlyArray<unknown> = [
        "not json",
        "[1,2]",
        { v: 2, type: "node.heartbeat", load: 0, active_agents: 0, handlers_live: false },
        { v: 1, type: "context.update" },
        { v: 1, type: "delivery.ack", agent: "a", up_to_seq: -1 },
        { ...registerFrame(node), provider: { name: "x" } },
        { v: 1, type: "action.result", invocation_id: "inv_1" }
      ]
      for (const frame of bad) client.send(frame)
      const errors = yield* client.waitFor((f) => f.type === "error", bad.length)
      for (const error of errors) {
        assert.strictEqual(error.code, "invalid_message")
        assert.isString(error.id)
        assert.isString(error.message)
      }
      const reply = yield* client.request({ ...registerFrame(node), id: "still_open" })
      assert.strictEqual(reply.type, "reply")
    }))

  it.scopedLive("accepts the upstream broker's frames as the wire defines them (fixtures, roster heartbeats, no ids)", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const register = fixture("node.register")
      const node = yield* enrollNode(ws, register.name, register.node_id)
      const client = yield* connect(url, node.token)
      const reply = yield* client.request({ ...register, id: "fixture_register" })
      assert.strictEqual(reply.type, "reply")
      assert.deepStrictEqual(reply.data.capabilities.map((c: any) => c.name), ["spawn:codex", "spawn:claude", "run:test"])
      assert.strictEqual(reply.data.max_agents, 8)
      yield* sendAndSettle(client, fixture("node.heartbeat"))
      yield* sendAndSettle(client, fixture("delivery.ack"))
      yield* sendAndSettle(client, fixture("agent.deregister"))
      yield* sendAndSettle(client, fixture("action.result.output"))
      const sync = yield* client.request({ ...fixture("inventory.sync"), id: "fixture_sync" })
      assert.strictEqual(sync.type, "reply")
      assert.strictEqual(client.frames.filter((f) => f.type === "error" && f.code !== "invalid_message").length, 0)
      const listed = yield* data(url, "GET", `/v1/nodes/${register.name}`, { token: ws.key })
      assert.strictEqual(listed.load, 0.42)
      assert.strictEqual(listed.handlers_live, true)
    }))

  it.scopedLive("node.register: node_id must match the token; a name held by another node is node_name_conflict", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const other = yield* enrollNode(ws, "node-b")
      const client = yield* connect(url, other.token)
      const mismatch = yield* client.request({ ...registerFrame(other), node_id: node.id, id: "m1" })
      assert.deepStrictEqual(mismatch, {
        v: 1,
        id: "m1",
        type: "error",
        ok: false,
        code: "node_id_mismatch",
        message: "node_id does not match the authenticated node token"
      })
      const conflict = yield* client.request({ ...registerFrame(other), name: "node-a", id: "c1" })
      assert.strictEqual(conflict.code, "node_name_conflict")
      assert.strictEqual(conflict.message, "Node name \"node-a\" is already enrolled")
      const heartbeat = yield* client.request({ ...heartbeatFrame({ node_id: "node_wrong" }), id: "h1" })
      assert.strictEqual(heartbeat.code, "node_id_mismatch")
    }))

  it.scopedLive("agent.register: via_node on this node, a token that works over HTTP at once, a member of #general", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const client = yield* connectNode(url, node)
      const worker = yield* registerAgent(client, "worker-1")
      const me = yield* data(url, "GET", "/v1/agent", { token: worker.token })
      assert.strictEqual(me.id, worker.agent_id)
      assert.strictEqual(me.location_type, "via_node")
      assert.strictEqual(me.location_node_id, node.id)
      assert.strictEqual(me.status, "active")
      assert.deepStrictEqual(me.channels.map((c: any) => c.name), ["general"])
      // Re-registering on the same node keeps the id and replaces the token.
      const again = yield* registerAgent(client, "worker-1")
      assert.strictEqual(again.agent_id, worker.agent_id)
      assert.strictEqual((yield* call(url, "GET", "/v1/agent", { token: worker.token })).status, 401)
      // An HTTP-registered (active, self_connected) name is agent_location_conflict.
      yield* createAgent(ws, "http-only")
      const conflict = yield* client.request({ v: 1, type: "agent.register", id: "ar_conflict", name: "http-only" })
      assert.strictEqual(conflict.type, "error")
      assert.strictEqual(conflict.code, "agent_location_conflict")
      // An agent active on another node conflicts too; once offline it may move.
      const nodeB = yield* enrollNode(ws, "node-b")
      const clientB = yield* connectNode(url, nodeB)
      const moved = yield* clientB.request({ v: 1, type: "agent.register", id: "ar_move", name: "worker-1" })
      assert.strictEqual(moved.code, "agent_location_conflict")
      yield* sendAndSettle(client, { v: 1, type: "agent.deregister", agent_id: worker.agent_id })
      const offline = yield* data(url, "GET", "/v1/agents/worker-1", { token: ws.key })
      assert.strictEqual(offline.status, "offline")
      assert.strictEqual(offline.location_node_id, node.id)
      const movedNow = yield* registerAgent(clientB, "worker-1")
      assert.strictEqual(movedNow.agent_id, worker.agent_id)
      const located = yield* data(url, "GET", "/v1/agents/worker-1", { token: ws.key })
      assert.strictEqual(located.location_node_id, nodeB.id)
    }))

  it.scopedLive("inventory.sync rebinds the listed agents and takes the unlisted ones offline", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const client = yield* connectNode(url, node)
      const a = yield* registerAgent(client, "a")
      yield* registerAgent(client, "b")
      const sync = yield* client.request({ v: 1, type: "inventory.sync", id: "sync1", agents: [{ agent_id: a.agent_id, name: "a" }] })
      assert.strictEqual(sync.data.rebound_agents, 1)
      const agents = yield* data(url, "GET", "/v1/agents", { token: ws.key })
      assert.deepStrictEqual(agents.map((x: any) => [x.name, x.status]), [["a", "active"], ["b", "offline"]])
    }))

  it.scopedLive("close and node.deregister take the node and its agents offline, keeping their routing", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const client = yield* connectNode(url, node)
      yield* registerAgent(client, "worker-1")
      yield* sendAndSettle(client, { v: 1, type: "node.deregister" })
      const afterDeregister = yield* data(url, "GET", "/v1/nodes/node-a", { token: ws.key })
      assert.strictEqual(afterDeregister.status, "offline")
      assert.isFalse(client.closed)
      const agent = yield* data(url, "GET", "/v1/agents/worker-1", { token: ws.key })
      assert.strictEqual(agent.status, "offline")
      assert.strictEqual(agent.location_type, "via_node")

      yield* client.request({ ...registerFrame(node), id: "again" })
      assert.strictEqual((yield* data(url, "GET", "/v1/nodes/node-a", { token: ws.key })).status, "online")
      client.ws.close()
      yield* client.waitClosed()
      // The close is handled asynchronously; poll the roster (bounded) until it shows.
      let status = "online"
      for (let i = 0; i < 100 && status === "online"; i++) {
        status = (yield* data(url, "GET", "/v1/nodes/node-a", { token: ws.key })).status
        if (status === "online") yield* Effect.sleep("20 millis")
      }
      assert.strictEqual(status, "offline")
    }))

  it.scopedLive("a second socket for the same node supersedes the first, whose close does not take the node offline", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const first = yield* connectNode(url, node)
      const second = yield* connectNode(url, node)
      yield* first.waitClosed()
      assert.strictEqual(first.closeCode, 1000)
      assert.strictEqual(first.closeReason, "superseded")
      yield* sendAndSettle(second, heartbeatFrame())
      assert.strictEqual((yield* data(url, "GET", "/v1/nodes/node-a", { token: ws.key })).status, "online")
      // Deliveries go to the current socket.
      const alice = yield* createAgent(ws, "alice")
      yield* registerAgent(second, "bob")
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "to the new socket" } })
      const [frame] = yield* second.waitFor((f) => f.type === "deliver")
      assert.strictEqual(frame.payload.data.text, "to the new socket")
      assert.strictEqual(first.delivers().length, 0)
    }))

  it.scopedLive("an SDK direct client: node-token, ?token= upgrade, register as a direct node, receive and ack its DMs", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const alice = yield* createAgent(ws, "alice")
      const sdk = yield* createAgent(ws, "sdk-agent")
      const direct = yield* data(url, "POST", "/v1/agent/node-token", { token: sdk.token })
      assert.deepStrictEqual(Object.keys(direct).sort(), ["node_id", "node_name", "token"])
      assert.strictEqual(direct.node_id, `node_direct_${sdk.id}`)
      const client = yield* connect(url, direct.token, { via: "query" })
      const reply = yield* client.request({
        v: 1,
        id: "sdk-direct-1",
        type: "node.register",
        node_id: direct.node_id,
        name: direct.node_name,
        capabilities: [],
        max_agents: 1,
        tags: ["implicit", "direct", "sdk"],
        version: "sdk-typescript/5.0.7"
      })
      assert.strictEqual(reply.data.role, "direct")
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "sdk-agent", text: "hello sdk" } })
      const [frame] = yield* client.waitFor((f) => f.type === "deliver")
      assert.deepStrictEqual([frame.agent, frame.seq, frame.payload.data.text], ["sdk-agent", 1, "hello sdk"])
      yield* sendAndSettle(client, { v: 1, type: "delivery.ack", agent: frame.agent, up_to_seq: frame.seq })
      const acked = yield* data(url, "GET", "/v1/deliveries?status=acked", { token: sdk.token })
      assert.deepStrictEqual(acked.map((d: any) => d.seq), [1])
      // A second token refresh keeps the node; the old token stops working.
      const refreshed = yield* data(url, "POST", "/v1/agent/node-token", { token: sdk.token })
      assert.strictEqual(refreshed.node_id, direct.node_id)
      assert.deepStrictEqual(yield* tryConnect(url, direct.token), { _tag: "Rejected", status: 401 })
    }))
})
