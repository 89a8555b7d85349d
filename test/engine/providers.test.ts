import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  call,
  connect,
  createAgent,
  createWorkspace,
  data,
  enrollNode,
  eventually,
  heartbeatFrame,
  nextId,
  type NodeClient,
  registerFrame,
  sendAndSettle,
  startEngine,
  tryConnect
} from "./support.js"

// relaycast 6 providers on the node protocol (provider-protocol.md §1): one attachment per provider
// name, replace / reject by instance, aggregation, classification, routing, node.spawn, the cursor.

const setup = Effect.gen(function*() {
  const engine = yield* startEngine()
  const ws = yield* createWorkspace(engine.url)
  const node = yield* enrollNode(ws, "laptop")
  return { url: engine.url, ws, node }
})

const provider = (name: string, instance: string) => ({ provider: { name, instance_id: instance } })

const register = (client: NodeClient, node: { id: string; name: string }, extra: Record<string, unknown>) =>
  client.request({ ...registerFrame(node, extra), id: nextId("node_register") })

const brokerCaps = [{ name: "spawn:claude", kind: "capacity" }, { name: "release" }, { name: "relay:delivery-cursor-v1", kind: "capacity" }]

describe("engine providers", () => {
  it.scopedLive("two providers share one node token without superseding each other; the reply names the provider and classifies every capability", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const broker = yield* connect(url, node.token)
      const tools = yield* connect(url, node.token)
      const one = yield* register(broker, node, { ...provider("broker", "b1"), capabilities: brokerCaps, max_agents: 2 })
      assert.strictEqual(one.type, "reply")
      assert.deepStrictEqual(one.data.provider, { name: "broker", instance_id: "b1" })
      assert.deepStrictEqual(one.data.accepted_capabilities, [
        { name: "spawn:claude", kind: "capacity", accepted: true },
        { name: "release", kind: "capacity", accepted: true },
        { name: "relay:delivery-cursor-v1", kind: "capacity", accepted: true }
      ])
      const two = yield* register(tools, node, {
        ...provider("tools", "t1"),
        capabilities: [{ name: "summarize" }, { name: "lint", kind: "action", global: true, queue: true }],
        max_agents: 3,
        machine_id: "m-1"
      })
      assert.deepStrictEqual(two.data.accepted_capabilities.map((c: any) => [c.name, c.kind, c.accepted]), [["summarize", "action", true], ["lint", "action", true]])
      assert.isFalse(broker.closed)
      assert.isFalse(tools.closed)
      // The node aggregates: union of capabilities, summed capacity, highest load.
      yield* sendAndSettle(broker, heartbeatFrame({ ...provider("broker", "b1"), load: 0.2, active_agents: 1, handlers_live: true }))
      yield* sendAndSettle(tools, heartbeatFrame({ ...provider("tools", "t1"), load: 0.7, active_agents: 0, handlers_live: true }))
      const listed = yield* data(url, "GET", "/v1/nodes/laptop", { token: ws.key })
      assert.deepStrictEqual(listed.capabilities.map((c: any) => c.name).sort(), ["lint", "relay:delivery-cursor-v1", "release", "spawn:claude", "summarize"])
      assert.strictEqual(listed.max_agents, 5)
      assert.strictEqual(listed.load, 0.7)
      assert.strictEqual(listed.active_agents, 1)
      assert.strictEqual(listed.status, "online")
      // Only action capabilities become actions, handled by their provider's node.
      const actions = yield* data(url, "GET", "/v1/actions", { token: ws.key })
      assert.deepStrictEqual(actions.map((a: any) => [a.name, a.handler_node_id]), [["lint", node.id], ["summarize", node.id]])
      // No provider at all is the synthetic `default`.
      const legacy = yield* connect(url, node.token)
      const three = yield* register(legacy, node, {})
      assert.strictEqual(three.data.provider.name, "default")
    }))

  it.scopedLive("a new instance replaces the provider's socket; the same instance from a second open socket is refused with the request id", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const first = yield* connect(url, node.token)
      yield* register(first, node, { ...provider("tools", "i1"), capabilities: [{ name: "summarize" }] })
      const duplicate = yield* connect(url, node.token)
      const refused = yield* duplicate.request({ ...registerFrame(node, { ...provider("tools", "i1"), capabilities: [] }), id: "dup-1" })
      assert.deepStrictEqual([refused.type, refused.id, refused.code], ["error", "dup-1", "provider_instance_conflict"])
      assert.isFalse(first.closed)
      const replacement = yield* connect(url, node.token)
      const accepted = yield* register(replacement, node, { ...provider("tools", "i2"), capabilities: [{ name: "summarize" }] })
      assert.strictEqual(accepted.type, "reply")
      yield* first.waitClosed()
      assert.deepStrictEqual([first.closeCode, first.closeReason], [1000, "superseded"])
      // The superseded socket's close does not take the provider offline.
      assert.strictEqual((yield* data(url, "GET", "/v1/nodes/laptop", { token: ws.key })).status, "online")
    }))

  it.scopedLive("action.invoke goes to the provider that owns the capability; spawns to the capacity provider; node.deregister with a provider removes only it", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const broker = yield* connect(url, node.token)
      const tools = yield* connect(url, node.token)
      yield* register(broker, node, { ...provider("broker", "b1"), capabilities: brokerCaps })
      yield* register(tools, node, { ...provider("tools", "t1"), capabilities: [{ name: "summarize" }] })
      const caller = yield* createAgent(ws, "caller")
      const invoked = yield* data(url, "POST", "/v1/actions/summarize/invoke", { token: caller.token, body: { input: { text: "x" } } })
      const [frame] = yield* tools.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(frame.invocation_id, invoked.invocation_id)
      assert.strictEqual(broker.frames.filter((f) => f.type === "action.invoke").length, 0)
      tools.send({ v: 1, type: "action.result", invocation_id: invoked.invocation_id, output: { summary: "ok" } })
      const spawned = yield* data(url, "POST", "/v1/agents/spawn", { token: ws.key, body: { name: "w1", cli: "claude", task: "t" } })
      const [spawnFrame] = yield* broker.waitFor((f) => f.type === "action.invoke")
      assert.deepStrictEqual([spawnFrame.invocation_id, spawnFrame.action], [spawned.invocation_id, "spawn:claude"])

      yield* sendAndSettle(tools, { v: 1, type: "node.deregister", ...provider("tools", "t1") })
      const after = yield* data(url, "GET", "/v1/nodes/laptop", { token: ws.key })
      assert.deepStrictEqual(after.capabilities.map((c: any) => c.name).sort(), ["relay:delivery-cursor-v1", "release", "spawn:claude"])
      assert.strictEqual(after.status, "online")
      assert.deepStrictEqual((yield* data(url, "GET", "/v1/actions", { token: ws.key })).map((a: any) => a.name), [])
      assert.isFalse(broker.closed)
      // An action whose provider is gone and did not ask for a queue is refused, not queued.
      yield* register(tools, node, { ...provider("tools", "t2"), capabilities: [{ name: "summarize" }] })
      tools.ws.terminate()
      yield* tools.waitClosed()
      yield* eventually("the tools provider is offline", Effect.map(data(url, "GET", "/v1/nodes/laptop", { token: ws.key }), (n) =>
        n.providers.some((p: any) => p.name === "tools" && p.status === "offline")))
      const refused = yield* call(url, "POST", "/v1/actions/summarize/invoke", { token: caller.token, body: { input: {} } })
      assert.deepStrictEqual([refused.status, refused.body.error.code], [503, "handler_unavailable"])
      const providers = (yield* data(url, "GET", "/v1/nodes/laptop", { token: ws.key })).providers
      assert.deepStrictEqual(providers.map((p: any) => [p.name, p.status]), [["broker", "online"], ["tools", "offline"]])
    }))

  it.scopedLive("node.spawn: a provider's spawn goes to its own node's capacity provider and is answered with the invocation", () =>
    Effect.gen(function*() {
      const { url, node } = yield* setup
      const broker = yield* connect(url, node.token)
      const tools = yield* connect(url, node.token)
      yield* register(broker, node, { ...provider("broker", "b1"), capabilities: brokerCaps })
      yield* register(tools, node, { ...provider("tools", "t1"), capabilities: [{ name: "summarize" }] })
      const reply = yield* tools.request({ v: 1, id: "spawn-1", type: "node.spawn", input: { name: "helper", cli: "claude", task: "help" } })
      assert.deepStrictEqual([reply.type, reply.id, reply.data.action_name, reply.data.dispatched_node_id], ["reply", "spawn-1", "spawn", node.id])
      const [frame] = yield* broker.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(frame.action, "spawn:claude")
      assert.strictEqual(frame.input.name, "helper")
      const refused = yield* tools.request({ v: 1, id: "spawn-2", type: "node.spawn", input: { name: "x", cli: "gemini" } })
      assert.deepStrictEqual([refused.type, refused.id, refused.code], ["error", "spawn-2", "capability_mismatch"])
    }))

  it.scopedLive("every error answering a request carries its id, including invalid_message; a v5 engine refuses providers that way", () =>
    Effect.gen(function*() {
      const { url, node } = yield* setup
      const client = yield* connect(url, node.token)
      const bad = yield* client.request({ v: 1, id: "bad-1", type: "node.register", name: "laptop", node_id: node.id, capabilities: [], extra: true })
      assert.deepStrictEqual([bad.type, bad.id, bad.code], ["error", "bad-1", "invalid_message"])
      const mismatch = yield* client.request({ ...registerFrame({ id: "node_other", name: "laptop" }), id: "mm-1" })
      assert.deepStrictEqual([mismatch.id, mismatch.code], ["mm-1", "node_id_mismatch"])

      const v5 = yield* startEngine({ nodeProtocol: "v5" })
      const v5ws = yield* createWorkspace(v5.url)
      const v5node = yield* enrollNode(v5ws, "old")
      const old = yield* connect(v5.url, v5node.token)
      const refused = yield* old.request({ ...registerFrame(v5node, provider("broker", "b1")), id: "reg-1" })
      assert.deepStrictEqual([refused.type, refused.id, refused.code], ["error", "reg-1", "invalid_message"])
      assert.match(refused.message, /provider/)
      const spawn = yield* old.request({ v: 1, id: "sp-1", type: "node.spawn", input: { cli: "claude" } })
      assert.deepStrictEqual([spawn.id, spawn.code], ["sp-1", "invalid_message"])
    }))

  it.scopedLive("agent.register: delivery_ack_seq for a cursor-capable provider only; exactly {agent_id, name, token} otherwise", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const alice = yield* createAgent(ws, "alice")
      const broker = yield* connect(url, node.token)
      yield* register(broker, node, { ...provider("broker", "b1"), capabilities: brokerCaps })
      const worker = yield* broker.request({ v: 1, id: "ar-1", type: "agent.register", name: "worker-1" })
      assert.deepStrictEqual(Object.keys(worker.data).sort(), ["agent_id", "delivery_ack_seq", "name", "token"])
      assert.strictEqual(worker.data.delivery_ack_seq, 0)
      for (const text of ["one", "two"]) yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "worker-1", text } })
      yield* broker.waitFor((f) => f.type === "deliver" && f.agent === "worker-1", 2)
      yield* sendAndSettle(broker, { v: 1, type: "delivery.ack", agent: "worker-1", up_to_seq: 2 })
      const again = yield* broker.request({ v: 1, id: "ar-2", type: "agent.register", name: "worker-1" })
      assert.strictEqual(again.data.delivery_ack_seq, 2)

      const other = yield* enrollNode(ws, "plain")
      const legacy = yield* connect(url, other.token)
      yield* register(legacy, other, {})
      const plain = yield* legacy.request({ v: 1, id: "ar-3", type: "agent.register", name: "worker-2" })
      assert.deepStrictEqual(Object.keys(plain.data).sort(), ["agent_id", "name", "token"])
    }))

  it.scopedLive("node-attributed channel posts; members and mute; the terminal control socket is accepted", () =>
    Effect.gen(function*() {
      const { url, ws, node } = yield* setup
      const alice = yield* createAgent(ws, "alice")
      const posted = yield* call(url, "POST", "/v1/channels/general/messages", { token: node.token, body: { text: "build green", from: "ci-bot" } })
      assert.strictEqual(posted.status, 201)
      assert.strictEqual(posted.body.data.agent_name, "ci-bot")
      const pending = yield* data(url, "GET", "/v1/deliveries", { token: alice.token })
      assert.deepStrictEqual(pending.map((d: any) => [d.message.text, d.message.agent_name]), [["build green", "ci-bot"]])
      const impersonation = yield* call(url, "POST", "/v1/channels/general/messages", { token: node.token, body: { text: "x", from: "alice" } })
      assert.deepStrictEqual([impersonation.status, impersonation.body.error.code], [403, "node_attribution_forbidden"])
      const noFrom = yield* call(url, "POST", "/v1/channels/general/messages", { token: node.token, body: { text: "x" } })
      assert.strictEqual(noFrom.status, 400)

      const members = yield* data(url, "GET", "/v1/channels/general/members", { token: ws.key })
      assert.deepStrictEqual(members.map((m: any) => [m.agent_name, m.is_muted]), [["alice", false], ["ci-bot", false]])
      const muted = yield* data(url, "POST", "/v1/channels/general/mute", { token: alice.token })
      assert.deepStrictEqual(muted, { channel: "general", agent_id: alice.id, muted: true })
      assert.isTrue((yield* data(url, "GET", "/v1/channels/general/members", { token: ws.key }))[0].is_muted)
      yield* data(url, "POST", "/v1/channels", { token: ws.key, body: { name: "quiet" } })
      const notMember = yield* call(url, "POST", "/v1/channels/quiet/mute", { token: alice.token })
      assert.deepStrictEqual([notMember.status, notMember.body.error.code], [403, "not_a_member"])

      const terminal = yield* tryConnect(url, node.token, { path: "/v1/node/terminal/ws" })
      assert.strictEqual(terminal._tag, "Open")
      const anonymous = yield* tryConnect(url, undefined, { path: "/v1/node/terminal/ws" })
      assert.deepStrictEqual(anonymous, { _tag: "Rejected", status: 401 })
    }))
})
