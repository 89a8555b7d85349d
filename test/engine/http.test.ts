import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { call, connectNode, createAgent, createWorkspace, data, enrollNode, registerAgent, startEngine, tryConnect } from "./support.js"

// The /v1 HTTP API: envelopes, status codes, auth codes (spec §1.2, §2, §6.1 items 3, 12, 13).

describe("engine HTTP", () => {
  it.scopedLive("envelopes, 404 for unknown routes, 400 naming the field, invalid_json", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const health = yield* call(url, "GET", "/health")
      assert.strictEqual(health.status, 200)
      assert.strictEqual(health.body.ok, true)
      assert.isString(health.body.version)

      const missing = yield* call(url, "GET", "/v1/nothing-here")
      assert.strictEqual(missing.status, 404)
      assert.deepStrictEqual(missing.body, { ok: false, error: { code: "not_found", message: "Route not found" } })

      const noName = yield* call(url, "POST", "/v1/workspaces", { body: {} })
      assert.strictEqual(noName.status, 400)
      assert.deepStrictEqual(noName.body, { ok: false, error: { code: "invalid_request", message: "name is required" } })

      const wrongType = yield* call(url, "POST", "/v1/workspaces", { body: { name: 42 } })
      assert.strictEqual(wrongType.status, 400)
      assert.strictEqual(wrongType.body.error.code, "invalid_request")
      assert.match(wrongType.body.error.message, /^name/)

      const badJson = yield* call(url, "POST", "/v1/workspaces", { rawBody: "{nope" })
      assert.strictEqual(badJson.status, 400)
      assert.strictEqual(badJson.body.error.code, "invalid_json")

      const ws = yield* createWorkspace(url)
      const badField = yield* call(url, "POST", "/v1/agents", { token: ws.key, body: { name: "a", type: "robot" } })
      assert.strictEqual(badField.status, 400)
      assert.match(badField.body.error.message, /^type/)
    }))

  it.scopedLive("workspace bootstrap without auth creates #general; agents carry workspace_id; 409 on a duplicate", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const created = yield* call(url, "POST", "/v1/workspaces", { body: { name: "relay-1234abcd" } })
      assert.strictEqual(created.status, 201)
      assert.match(created.body.data.api_key, /^rk_live_[0-9a-f]{32}$/)
      const key = created.body.data.api_key
      const again = yield* call(url, "POST", "/v1/workspaces", { token: key, body: { name: "relay-1234abcd" } })
      assert.strictEqual(again.status, 200)
      assert.strictEqual(again.body.data.workspace_id, created.body.data.workspace_id)

      const workspace = yield* data(url, "GET", "/v1/workspace", { token: key })
      assert.strictEqual(workspace.id, created.body.data.workspace_id)
      assert.strictEqual(workspace.name, "relay-1234abcd")

      const channels = yield* data(url, "GET", "/v1/channels", { token: key })
      assert.deepStrictEqual(channels.map((c: any) => c.name), ["general"])
      assert.strictEqual(channels[0].topic, "General discussion")

      const agent = yield* call(url, "POST", "/v1/agents", { token: key, body: { name: "broker-ab12", type: "human" } })
      assert.strictEqual(agent.status, 201)
      assert.strictEqual(agent.body.data.workspace_id, workspace.id)
      assert.strictEqual(agent.body.data.handle, "@broker-ab12")
      assert.strictEqual(agent.body.data.status, "active")
      assert.match(agent.body.data.token, /^at_live_[0-9a-f]{32}$/)

      const dup = yield* call(url, "POST", "/v1/agents", { token: key, body: { name: "broker-ab12" } })
      assert.strictEqual(dup.status, 409)
      assert.deepStrictEqual(dup.body.error, {
        code: "agent_already_exists",
        message: "Agent \"broker-ab12\" already exists in this workspace"
      })

      const detail = yield* data(url, "GET", "/v1/agents/broker-ab12", { token: key })
      assert.deepStrictEqual(detail.channels.map((c: any) => c.name), ["general"])
      const me = yield* data(url, "GET", "/v1/agent", { token: agent.body.data.token })
      assert.strictEqual(me.id, agent.body.data.id)
      const list = yield* data(url, "GET", "/v1/agents", { token: key })
      assert.deepStrictEqual(list.map((a: any) => a.name), ["broker-ab12"])
      const unknown = yield* call(url, "GET", "/v1/agents/ghost", { token: key })
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.body.error.code, "agent_not_found")

      // rotate-token takes the workspace key; the old token dies at once.
      const rotated = yield* call(url, "POST", "/v1/agents/broker-ab12/rotate-token", { token: key })
      assert.strictEqual(rotated.status, 200)
      assert.strictEqual(rotated.body.data.name, "broker-ab12")
      const old = yield* call(url, "GET", "/v1/agent", { token: agent.body.data.token })
      assert.strictEqual(old.status, 401)
      assert.strictEqual(old.body.error.code, "agent_token_invalid")
      const fresh = yield* call(url, "GET", "/v1/agent", { token: rotated.body.data.token })
      assert.strictEqual(fresh.status, 200)

      assert.deepStrictEqual((yield* call(url, "POST", "/v1/agents/heartbeat", { token: rotated.body.data.token })).body, { ok: true })
      assert.deepStrictEqual((yield* call(url, "POST", "/v1/agents/disconnect", { token: rotated.body.data.token })).body, { ok: true })
    }))

  it.scopedLive("every auth failure is a 401 with its code; node tokens are forbidden on HTTP", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      const node = yield* enrollNode(ws, "n1")
      const cases: ReadonlyArray<readonly [string, string, Record<string, string>, string, string]> = [
        ["GET", "/v1/workspace", {}, "unauthorized", "Missing or invalid Authorization header"],
        ["GET", "/v1/workspace", { authorization: "Basic abc" }, "unauthorized", "Missing or invalid Authorization header"],
        ["GET", "/v1/workspace", { authorization: "Bearer xx_live_1" }, "unauthorized", "Invalid token format"],
        ["GET", "/v1/workspace", { authorization: `Bearer ${alice.token}` }, "unauthorized", "Workspace key required (rk_live_...)"],
        ["GET", "/v1/agent", { authorization: `Bearer ${ws.key}` }, "unauthorized", "Agent token required (at_live_...)"],
        ["GET", "/v1/channels", { authorization: `Bearer ${node.token}` }, "node_token_forbidden", "Node token cannot perform this operation"],
        ["GET", "/v1/workspace", { authorization: "Bearer rk_live_00000000000000000000000000000000" }, "unauthorized", "Invalid API key"],
        ["GET", "/v1/agent", { authorization: "Bearer at_live_00000000000000000000000000000000" }, "agent_token_invalid", "Invalid agent token"]
      ]
      for (const [method, path, headers, code, message] of cases) {
        const result = yield* call(url, method, path, { headers })
        assert.strictEqual(result.status, 401, `${path} ${JSON.stringify(headers)}`)
        assert.deepStrictEqual(result.body, { ok: false, error: { code, message } })
      }
      // Agent-only operations with a workspace key.
      const post = yield* call(url, "POST", "/v1/channels/general/messages", { token: ws.key, body: { text: "hi" } })
      assert.strictEqual(post.status, 403)
      assert.strictEqual(post.body.error.code, "agent_token_required")
      const dm = yield* call(url, "POST", "/v1/dm", { token: ws.key, body: { to: "alice", text: "hi" } })
      assert.strictEqual(dm.status, 401)
    }))

  it.scopedLive("nodes: mint 201 with a working nt_live_ token; same-name re-enrol rotates it and keeps the id", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const first = yield* call(url, "POST", "/v1/nodes", {
        token: ws.key,
        body: { node_id: "node_0123456789abcdef0123456789abcdef", name: "laptop", kind: "ws", role: "broker", version: "relay-broker/9.1.6" }
      })
      assert.strictEqual(first.status, 201)
      const node = first.body.data
      assert.strictEqual(node.id, "node_0123456789abcdef0123456789abcdef")
      assert.match(node.token, /^nt_live_[0-9a-f]{48}$/)
      for (const key of ["id", "name", "version", "status", "live", "handlers_live", "active_agents", "max_agents", "created_at"]) {
        assert.isTrue(key in node, key)
      }
      assert.deepStrictEqual(node.capabilities, [])
      assert.strictEqual(node.status, "offline")
      assert.strictEqual(node.live, false)

      // v5 identity rule: same name, different node_id → the existing row (and id) with a new token.
      const second = yield* call(url, "POST", "/v1/nodes", { token: ws.key, body: { node_id: "node_other", name: "laptop" } })
      assert.strictEqual(second.status, 201)
      assert.strictEqual(second.body.data.id, node.id)
      assert.notStrictEqual(second.body.data.token, node.token)
      const stale = yield* tryConnect(url, node.token)
      assert.deepStrictEqual(stale, { _tag: "Rejected", status: 401 })
      const client = yield* connectNode(url, { id: node.id, name: "laptop", token: second.body.data.token })
      assert.isFalse(client.closed)

      const listed = yield* data(url, "GET", "/v1/nodes", { token: ws.key })
      assert.strictEqual(listed.length, 1)
      assert.isFalse("token" in listed[0])
      assert.strictEqual(listed[0].status, "online")
      const byName = yield* data(url, "GET", "/v1/nodes/laptop", { token: ws.key })
      assert.strictEqual(byName.live, true)
      const noNode = yield* call(url, "GET", "/v1/nodes/ghost", { token: ws.key })
      assert.strictEqual(noNode.status, 404)
      assert.strictEqual(noNode.body.error.code, "node_not_found")
    }))

  it.scopedLive("binding an HTTP agent to a node makes it via_node; unbinding answers 204 then 404", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      yield* enrollNode(ws, "n1")
      yield* createAgent(ws, "worker-1")
      const bound = yield* call(url, "POST", "/v1/nodes/n1/agents", { token: ws.key, body: { agent_name: "worker-1" } })
      assert.strictEqual(bound.status, 201)
      assert.match(bound.body.data.id, /^anb_/)
      assert.strictEqual(bound.body.data.node_name, "n1")
      assert.strictEqual(bound.body.data.status, "active")
      const agent = yield* data(url, "GET", "/v1/agents/worker-1", { token: ws.key })
      assert.strictEqual(agent.location_type, "via_node")
      const bindings = yield* data(url, "GET", "/v1/nodes/n1/agents", { token: ws.key })
      assert.deepStrictEqual(bindings.map((b: any) => b.agent_name), ["worker-1"])
      const noAgent = yield* call(url, "POST", "/v1/nodes/n1/agents", { token: ws.key, body: {} })
      assert.strictEqual(noAgent.status, 400)
      assert.strictEqual(noAgent.body.error.message, "agent_name is required")
      const removed = yield* call(url, "DELETE", "/v1/nodes/n1/agents/worker-1", { token: ws.key })
      assert.strictEqual(removed.status, 204)
      const again = yield* call(url, "DELETE", "/v1/nodes/n1/agents/worker-1", { token: ws.key })
      assert.strictEqual(again.status, 404)
      assert.strictEqual(again.body.error.code, "node_agent_binding_not_found")
    }))

  it.scopedLive("channels: create (409 on a duplicate, 400 on a bad name), join, history, leave", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      const bob = yield* createAgent(ws, "bob")
      const made = yield* call(url, "POST", "/v1/channels", { token: alice.token, body: { name: "engineering", topic: "Engineering discussion" } })
      assert.strictEqual(made.status, 201)
      assert.strictEqual(made.body.data.member_count, 1)
      const dup = yield* call(url, "POST", "/v1/channels", { token: alice.token, body: { name: "engineering" } })
      assert.strictEqual(dup.status, 409)
      assert.strictEqual(dup.body.error.code, "channel_already_exists")
      const bad = yield* call(url, "POST", "/v1/channels", { token: alice.token, body: { name: "Bad Name" } })
      assert.strictEqual(bad.status, 400)
      assert.strictEqual(bad.body.error.code, "invalid_channel_name")
      const joined = yield* data(url, "POST", "/v1/channels/engineering/join", { token: bob.token })
      assert.deepStrictEqual(joined, { channel: "engineering", agent_id: bob.id, already_member: false })
      const rejoined = yield* data(url, "POST", "/v1/channels/engineering/join", { token: bob.token })
      assert.strictEqual(rejoined.already_member, true)
      const posted = yield* call(url, "POST", "/v1/channels/engineering/messages", { token: alice.token, body: { text: "hi @bob" } })
      assert.strictEqual(posted.status, 201)
      assert.deepStrictEqual(posted.body.data.mentions, ["bob"])
      assert.strictEqual(posted.body.data.injection_mode, "wait")
      const history = yield* data(url, "GET", "/v1/channels/engineering/messages", { token: bob.token })
      assert.deepStrictEqual(history.map((m: any) => m.text), ["hi @bob"])
      const channel = yield* data(url, "GET", "/v1/channels/engineering", { token: bob.token })
      assert.deepStrictEqual(channel.members.map((m: any) => m.agent_name), ["alice", "bob"])
      const left = yield* call(url, "POST", "/v1/channels/engineering/leave", { token: bob.token })
      assert.strictEqual(left.status, 204)
      const unknown = yield* call(url, "POST", "/v1/channels/nope/messages", { token: alice.token, body: { text: "x" } })
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.body.error.code, "channel_not_found")
    }))

  it.scopedLive("messages: DM, replies, read receipts, inbox and deliveries over HTTP", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      const bob = yield* createAgent(ws, "bob")
      const dm = yield* call(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "ping", mode: "steer" } })
      assert.strictEqual(dm.status, 201)
      assert.match(dm.body.data.conversation_id, /^dm_/)
      assert.strictEqual(dm.body.data.message.id, dm.body.data.id)
      assert.strictEqual(dm.body.data.injection_mode, "steer")
      const noPeer = yield* call(url, "POST", "/v1/dm", { token: alice.token, body: { to: "ghost", text: "x" } })
      assert.strictEqual(noPeer.status, 404)
      assert.strictEqual(noPeer.body.error.code, "agent_not_found")
      const noText = yield* call(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob" } })
      assert.strictEqual(noText.body.error.message, "text is required")

      const root = yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text: "root" } })
      const reply = yield* call(url, "POST", `/v1/messages/${root.id}/replies`, { token: bob.token, body: { text: "answer" } })
      assert.strictEqual(reply.status, 201)
      assert.strictEqual(reply.body.data.thread_id, root.id)
      assert.strictEqual(reply.body.data.channel_name, "general")
      const replies = yield* data(url, "GET", `/v1/messages/${root.id}/replies`, { token: alice.token })
      assert.deepStrictEqual(replies.map((m: any) => m.text), ["answer"])
      const got = yield* data(url, "GET", `/v1/messages/${root.id}`, { token: alice.token })
      assert.strictEqual(got.reply_count, 1)

      const pending = yield* data(url, "GET", "/v1/deliveries", { token: bob.token })
      assert.deepStrictEqual(pending.map((d: any) => [d.seq, d.status, d.reason, d.message.text]), [
        [1, "queued", "dm", "ping"],
        [2, "queued", "message", "root"]
      ])
      const inbox = yield* data(url, "GET", "/v1/inbox", { token: bob.token })
      assert.deepStrictEqual(inbox.unread_channels, [{ channel_name: "general", unread_count: 1 }])
      assert.strictEqual(inbox.unread_dms.length, 1)
      assert.strictEqual(inbox.unread_dms[0].from, "alice")

      const read = yield* data(url, "POST", `/v1/messages/${root.id}/read`, { token: bob.token })
      assert.strictEqual(read.message_id, root.id)
      const after = yield* data(url, "GET", "/v1/inbox", { token: bob.token })
      assert.deepStrictEqual(after.unread_channels, [])
      const remaining = yield* data(url, "GET", "/v1/deliveries", { token: bob.token })
      assert.deepStrictEqual(remaining.map((d: any) => d.seq), [1])
      const acked = yield* data(url, "POST", `/v1/deliveries/${remaining[0].id}/ack`, { token: bob.token })
      assert.strictEqual(acked.status, "acked")
      const notMine = yield* call(url, "POST", `/v1/deliveries/${remaining[0].id}/ack`, { token: alice.token })
      assert.strictEqual(notMine.status, 404)
    }))

  it.scopedLive("the upstream broker v9.1.6 startup sequence (appendix) is answered as it expects", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const workspace = yield* call(url, "POST", "/v1/workspaces", { body: { name: "relay-0a1b2c3d" } })
      assert.strictEqual(workspace.status, 201)
      const key = workspace.body.data.api_key
      const self = yield* call(url, "POST", "/v1/agents", { token: key, body: { name: "probe-node", type: "human" } })
      assert.strictEqual(self.status, 201)
      const nodeBody = { node_id: "node_00112233445566778899aabbccddeeff", name: "probe-node", kind: "ws", role: "broker", version: "relay-broker/9.1.6" }
      const node = yield* call(url, "POST", "/v1/nodes", { token: key, body: nodeBody })
      assert.strictEqual(node.status, 201)
      const client = yield* connectNode(url, { id: node.body.data.id, name: "probe-node", token: node.body.data.token })
      for (const [name, topic] of [["general", "General discussion"], ["engineering", "Engineering discussion"]] as const) {
        const made = yield* call(url, "POST", "/v1/channels", { token: self.body.data.token, body: { name, topic } })
        assert.include([201, 409], made.status)
        const joined = yield* call(url, "POST", `/v1/channels/${name}/join`, { token: self.body.data.token })
        assert.strictEqual(joined.status, 200)
      }
      // A 401 at the upgrade makes it re-mint with the same body: a fresh token for the same id.
      const remint = yield* call(url, "POST", "/v1/nodes", { token: key, body: nodeBody })
      assert.strictEqual(remint.body.data.id, node.body.data.id)
      const worker = yield* registerAgent(client, "worker-1")
      const hello = yield* call(url, "POST", "/v1/dm", { token: worker.token, body: { to: "probe-node", text: "hello" } })
      assert.strictEqual(hello.status, 201)
    }))

  it.scopedLive("a body over the limit (a 10 MB DM) gets 413 payload_too_large, and the engine keeps serving", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      yield* createAgent(ws, "bob")
      const huge = yield* call(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "x".repeat(10 * 1024 * 1024) } })
      assert.strictEqual(huge.status, 413)
      assert.strictEqual(huge.body.ok, false)
      assert.strictEqual(huge.body.error.code, "payload_too_large")
      assert.match(huge.body.error.message, /limit/)
      const small = yield* call(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "fits" } })
      assert.strictEqual(small.status, 201)
    }))
})
