import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import {
  call,
  connect,
  connectNode,
  createAgent,
  createWorkspace,
  data,
  enrollNode,
  eventually,
  heartbeatFrame,
  type NodeClient,
  registerAgent,
  registerFrame,
  sendAndSettle,
  startEngine,
  tempDir,
  type Workspace
} from "./support.js"

// Actions: spawn placement, release and the invocation lifecycle (spec §5; issue 4), with raw ws nodes.

interface CapableNode {
  readonly id: string
  readonly name: string
  readonly token: string
  readonly client: NodeClient
}

/** A broker node advertising `capabilities`, live with the given load and capacity. */
const capableNode = (
  ws: Workspace,
  name: string,
  options: { readonly capabilities?: ReadonlyArray<string>; readonly maxAgents?: number; readonly load?: number; readonly activeAgents?: number; readonly handlersLive?: boolean } = {}
) =>
  Effect.gen(function*() {
    const node = yield* enrollNode(ws, name)
    const capabilities = (options.capabilities ?? ["spawn:claude"]).map((c) => ({ name: c }))
    const client = yield* connectNode(ws.url, node, { capabilities, max_agents: options.maxAgents ?? 0 })
    yield* sendAndSettle(client, heartbeatFrame({
      load: options.load ?? 0,
      active_agents: options.activeAgents ?? 0,
      handlers_live: options.handlersLive ?? true
    }))
    return { ...node, client } satisfies CapableNode
  })

const spawnBody = (name: string, extra: Record<string, unknown> = {}) => ({ name, cli: "claude", task: "Fix the bug", ...extra })

const invokes = (client: NodeClient) => client.frames.filter((f) => f.type === "action.invoke")

const keysOf = (client: NodeClient, frame: unknown) => Object.keys(JSON.parse(client.texts[client.frames.indexOf(frame)]!)).sort()

const setup = Effect.gen(function*() {
  const engine = yield* startEngine()
  const ws = yield* createWorkspace(engine.url)
  return { url: engine.url, ws }
})

describe("engine actions", () => {
  it.scopedLive("with no capable node (the v5 broker advertises none) spawn is 503 handler_unavailable; bad input is 400", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const node = yield* enrollNode(ws, "v5-broker")
      yield* connectNode(url, node)
      const refused = yield* call(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1") })
      assert.strictEqual(refused.status, 503)
      assert.deepStrictEqual(refused.body.error, { code: "handler_unavailable", message: "No live node provides spawn:claude" })
      const badCli = yield* call(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1", { cli: "vim" }) })
      assert.strictEqual(badCli.status, 400)
      assert.strictEqual(badCli.body.error.message, "cli must be one of: claude, codex, gemini, aider, goose, opencode, grok")
      const noTask = yield* call(url, "POST", "/v1/agents/spawn", { token: ws.key, body: { name: "w1", cli: "claude" } })
      assert.strictEqual(noTask.body.error.message, "task is required")
      const unknown = yield* call(url, "POST", "/v1/actions/deploy/invoke", { token: (yield* createAgent(ws, "a")).token, body: { input: {} } })
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.body.error.code, "action_not_found")
      const withKey = yield* call(url, "POST", "/v1/actions/deploy/invoke", { token: ws.key, body: { input: {} } })
      assert.strictEqual(withKey.status, 403)
      assert.strictEqual(withKey.body.error.code, "agent_token_required")
    }))

  it.scopedLive("placement picks live, handlers-live nodes with room, by load, then active agents, then name; reservations count", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const a = yield* capableNode(ws, "a", { load: 0.5 })
      const b = yield* capableNode(ws, "b", { load: 0.1, maxAgents: 1 })
      const c = yield* capableNode(ws, "c", { load: 0, maxAgents: 2, activeAgents: 2 }) // full
      const d = yield* capableNode(ws, "d", { load: 0, capabilities: ["spawn:codex"] }) // other harness
      const e = yield* capableNode(ws, "e", { load: 0, handlersLive: false }) // handlers down
      const first = yield* call(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1", { model: "opus" }) })
      assert.strictEqual(first.status, 201)
      assert.strictEqual(first.body.data.dispatched_node_id, b.id)
      assert.strictEqual(first.body.data.status, "dispatched")
      assert.strictEqual(first.body.data.action_name, "spawn")
      assert.match(first.body.data.invocation_id, /^inv_/)
      const [frame] = yield* b.client.waitFor((f) => f.type === "action.invoke")
      assert.deepStrictEqual(keysOf(b.client, frame), ["action", "input", "invocation_id", "type", "v"])
      assert.deepStrictEqual(frame, {
        v: 1,
        type: "action.invoke",
        invocation_id: first.body.data.invocation_id,
        action: "spawn:claude",
        input: { name: "w1", cli: "claude", task: "Fix the bug", channel: null, persona: null, model: "opus", metadata: { model: "opus" } }
      })
      // b's only slot is reserved now: the next spawn goes to a.
      const second = yield* data(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w2") })
      assert.strictEqual(second.dispatched_node_id, a.id)
      yield* a.client.waitFor((f) => f.type === "action.invoke")
      for (const other of [c, d, e]) assert.strictEqual(invokes(other.client).length, 0)
      // Ties on load and active agents fall back to the name.
      const codex = yield* capableNode(ws, "b-codex", { capabilities: ["spawn:codex"] })
      const third = yield* data(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w3", { cli: "codex" }) })
      assert.strictEqual(third.dispatched_node_id, codex.id)
    }))

  it.scopedLive("target_node picks the node; errors for unknown targets, missing capabilities and self without an agent", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const a = yield* capableNode(ws, "a", { load: 0.9 })
      yield* capableNode(ws, "b", { load: 0 })
      yield* capableNode(ws, "plain", { capabilities: ["spawn:codex"] })
      const targeted = yield* data(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1", { target_node: "a" }) })
      assert.strictEqual(targeted.dispatched_node_id, a.id)
      const [frame] = yield* a.client.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(frame.input.target_node, "a")
      const missing = yield* call(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w2", { target_node: "ghost" }) })
      assert.deepStrictEqual([missing.status, missing.body.error.code], [404, "node_not_found"])
      const mismatch = yield* call(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w2", { target_node: "plain" }) })
      assert.deepStrictEqual([mismatch.status, mismatch.body.error.code], [409, "capability_mismatch"])
      const self = yield* call(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w2", { target_node: "self" }) })
      assert.deepStrictEqual([self.status, self.body.error.code], [400, "placement_self_requires_agent"])
      const loner = yield* createAgent(ws, "loner")
      const selfHttp = yield* call(url, "POST", "/v1/agents/spawn", { token: loner.token, body: spawnBody("w2", { target_node: "self" }) })
      assert.deepStrictEqual([selfHttp.status, selfHttp.body.error.code], [409, "placement_self_unavailable"])
      const lead = yield* registerAgent(a.client, "lead")
      const selfOk = yield* data(url, "POST", "/v1/agents/spawn", { token: lead.token, body: spawnBody("w3", { target: "self" }) })
      assert.strictEqual(selfOk.dispatched_node_id, a.id)
    }))

  it.scopedLive("a spawn for an offline target is queued (pending) and dispatched when the node attaches", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const enrolled = yield* data(url, "POST", "/v1/nodes", { token: ws.key, body: { name: "later", capabilities: ["spawn:claude"] } })
      const queued = yield* data(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1", { target_node: "later" }) })
      assert.strictEqual(queued.status, "pending")
      assert.strictEqual(queued.dispatched_node_id, null)
      const client = yield* connect(url, enrolled.token)
      const [frame] = yield* client.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(frame.invocation_id, queued.invocation_id)
      const detail = yield* data(url, "GET", `/v1/actions/spawn/invocations/${queued.invocation_id}`, { token: ws.key })
      assert.strictEqual(detail.status, "dispatched")
      assert.strictEqual(detail.dispatched_node_id, enrolled.id)
      assert.strictEqual(detail.caller_name, "workspace")
      // The node finishes it.
      client.send({ v: 1, type: "action.result", invocation_id: queued.invocation_id, output: { spawned: true, name: "w1" } })
      yield* eventually("the invocation completes", Effect.map(
        data(url, "GET", `/v1/actions/spawn/invocations/${queued.invocation_id}`, { token: ws.key }),
        (d) => d.status === "completed"
      ))
      const done = yield* data(url, "GET", `/v1/actions/spawn/invocations/${queued.invocation_id}`, { token: ws.key })
      assert.deepStrictEqual(done.output, { spawned: true, name: "w1" })
      assert.isNumber(done.duration_ms)
      // A late or foreign result changes nothing.
      yield* sendAndSettle(client, { v: 1, type: "action.result", invocation_id: queued.invocation_id, error: "late" })
      assert.strictEqual((yield* data(url, "GET", `/v1/actions/spawn/invocations/${queued.invocation_id}`, { token: ws.key })).status, "completed")
    }))

  it.scoped("the 30 s dispatch timeout re-dispatches the same invocation id to a node not yet tried, then backs off", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const a = yield* capableNode(ws, "a", { load: 0 })
      const b = yield* capableNode(ws, "b", { load: 0.5 })
      const spawned = yield* data(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1") })
      assert.strictEqual(spawned.dispatched_node_id, a.id)
      yield* a.client.waitFor((f) => f.type === "action.invoke")
      const beat = (load: number) => (node: CapableNode) => sendAndSettle(node.client, heartbeatFrame({ load, handlers_live: true }))
      // Silence from a: the sweep at 30 s does not fire yet (not older than 30 s), the one at 45 s does.
      yield* TestClock.adjust("20 seconds")
      yield* beat(0)(a)
      yield* beat(0.5)(b)
      yield* TestClock.adjust("25 seconds")
      const [again] = yield* b.client.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(again.invocation_id, spawned.invocation_id)
      assert.strictEqual(invokes(a.client).length, 1)
      // b is silent too: every live node was tried, so it waits (pending, 10 s backoff), then may go back to a.
      yield* beat(0)(a)
      yield* beat(0.5)(b)
      yield* TestClock.adjust("30 seconds")
      yield* eventually("the invocation backs off", Effect.map(
        data(url, "GET", `/v1/actions/spawn/invocations/${spawned.invocation_id}`, { token: ws.key }),
        (d) => d.status === "pending" || invokes(a.client).length === 2
      ))
      yield* beat(0)(a)
      yield* beat(0.5)(b)
      yield* TestClock.adjust("15 seconds")
      const retried = yield* a.client.waitFor((f) => f.type === "action.invoke", 2)
      assert.strictEqual(retried[1].invocation_id, spawned.invocation_id)
    }))

  it.scopedLive("a lost node's dispatched spawn is placed again elsewhere; handler_unavailable does the same", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const a = yield* capableNode(ws, "a", { load: 0 })
      const b = yield* capableNode(ws, "b", { load: 0.2 })
      const c = yield* capableNode(ws, "c", { load: 0.4 })
      const spawned = yield* data(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1") })
      yield* a.client.waitFor((f) => f.type === "action.invoke")
      a.client.ws.close()
      const [moved] = yield* b.client.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(moved.invocation_id, spawned.invocation_id)
      b.client.send({ v: 1, type: "action.result", invocation_id: spawned.invocation_id, error: "handler_unavailable" })
      const [third] = yield* c.client.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(third.invocation_id, spawned.invocation_id)
      assert.strictEqual((yield* data(url, "GET", "/v1/nodes/b", { token: ws.key })).handlers_live, false)
      c.client.send({ v: 1, type: "action.result", invocation_id: spawned.invocation_id, error: "spawn_failed" })
      yield* eventually("the spawn fails", Effect.map(
        data(url, "GET", `/v1/actions/spawn/invocations/${spawned.invocation_id}`, { token: ws.key }),
        (d) => d.status === "failed" && d.error === "spawn_failed"
      ))
    }))

  it.scopedLive("inventory.sync completes a spawn before its action.result, which is then ignored", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const a = yield* capableNode(ws, "a")
      const spawned = yield* data(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1") })
      yield* a.client.waitFor((f) => f.type === "action.invoke")
      const worker = yield* a.client.request({ v: 1, type: "agent.register", id: "ar1", name: "w1", invocation_id: spawned.invocation_id })
      const sync = yield* a.client.request({
        v: 1,
        type: "inventory.sync",
        id: "sync1",
        agents: [{ agent_id: worker.data.agent_id, name: "w1", invocation_id: spawned.invocation_id, session_ref: "pty://w1" }]
      })
      assert.deepStrictEqual(sync.data, { rebound_agents: 1, open_invocations: 1, completed_invocations: 1, rescheduled_invocations: 0 })
      yield* sendAndSettle(a.client, { v: 1, type: "action.result", invocation_id: spawned.invocation_id, output: { spawned: true } })
      const detail = yield* data(url, "GET", `/v1/actions/spawn/invocations/${spawned.invocation_id}`, { token: ws.key })
      assert.strictEqual(detail.status, "completed")
      assert.deepStrictEqual(detail.output, { agent_id: worker.data.agent_id, name: "w1", invocation_id: spawned.invocation_id, session_ref: "pty://w1" })
    }))

  it.scopedLive("release over HTTP reaches the agent's node; on success the binding goes inactive and the agent offline or deleted", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const home = yield* enrollNode(ws, "home")
      const other = yield* enrollNode(ws, "other")
      const client = yield* connectNode(url, home)
      const otherClient = yield* connectNode(url, other)
      yield* registerAgent(client, "worker-1")
      yield* registerAgent(client, "worker-2")
      const released = yield* call(url, "POST", "/v1/agents/release", { token: ws.key, body: { name: "worker-1", reason: "done" } })
      assert.strictEqual(released.status, 201)
      assert.strictEqual(released.body.data.action_name, "release")
      const [frame] = yield* client.waitFor((f) => f.type === "action.invoke")
      assert.deepStrictEqual(frame, {
        v: 1,
        type: "action.invoke",
        invocation_id: released.body.data.invocation_id,
        action: "release",
        input: { name: "worker-1", reason: "done", delete_agent: false }
      })
      assert.strictEqual(invokes(otherClient).length, 0)
      yield* sendAndSettle(client, { v: 1, type: "action.result", invocation_id: frame.invocation_id, output: { released: true, name: "worker-1" } })
      const agent = yield* data(url, "GET", "/v1/agents/worker-1", { token: ws.key })
      assert.strictEqual(agent.status, "offline")
      assert.strictEqual(agent.location_type, "self_connected")
      assert.strictEqual(agent.metadata.release.reason, "done")
      assert.deepStrictEqual((yield* data(url, "GET", "/v1/nodes/home/agents", { token: ws.key })).map((b: any) => b.agent_name), ["worker-2"])

      const notBound = yield* call(url, "POST", "/v1/agents/release", { token: ws.key, body: { name: "worker-1" } })
      assert.deepStrictEqual([notBound.status, notBound.body.error.code], [409, "agent_not_node_bound"])
      const unknown = yield* call(url, "POST", "/v1/agents/release", { token: ws.key, body: { name: "ghost" } })
      assert.deepStrictEqual([unknown.status, unknown.body.error.code], [404, "agent_not_found"])

      const deleted = yield* data(url, "POST", "/v1/agents/release", { token: ws.key, body: { name: "worker-2", delete_agent: true } })
      const [second] = yield* client.waitFor((f) => f.type === "action.invoke", 2).pipe(Effect.map((fs) => fs.slice(1)))
      assert.strictEqual(second.invocation_id, deleted.invocation_id)
      yield* sendAndSettle(client, { v: 1, type: "action.result", invocation_id: second.invocation_id, output: { released: true } })
      assert.strictEqual((yield* call(url, "GET", "/v1/agents/worker-2", { token: ws.key })).status, 404)
    }))

  it.scopedLive("the caller agent gets action.completed / action.failed as seq-0 frames on its node, and action.denied on refusal", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const worker = yield* capableNode(ws, "workers")
      const leadNode = yield* enrollNode(ws, "lead-node")
      const leadClient = yield* connectNode(url, leadNode)
      const lead = yield* registerAgent(leadClient, "lead")
      const ok = yield* data(url, "POST", "/v1/agents/spawn", { token: lead.token, body: spawnBody("w1") })
      yield* worker.client.waitFor((f) => f.type === "action.invoke")
      worker.client.send({ v: 1, type: "action.result", invocation_id: ok.invocation_id, output: { spawned: true, name: "w1" } })
      const [completed] = yield* leadClient.waitFor((f) => f.type === "deliver" && f.payload.type === "action.completed")
      const norm = (s: string) => s.replace(/[^A-Za-z0-9]+/g, "_").replace(/^_+|_+$/g, "")
      assert.deepStrictEqual(completed, {
        v: 1,
        type: "deliver",
        agent: "lead",
        agent_id: lead.agent_id,
        delivery_id: `evt_action_completed_${norm(ok.invocation_id)}_${lead.agent_id}`,
        msg_id: ok.invocation_id,
        seq: 0,
        mode: "wait",
        payload: {
          type: "action.completed",
          data: { invocation_id: ok.invocation_id, action_name: "spawn", status: "completed", output: { spawned: true, name: "w1" }, error: null }
        }
      })
      const bad = yield* data(url, "POST", "/v1/agents/spawn", { token: lead.token, body: spawnBody("w2") })
      yield* worker.client.waitFor((f) => f.type === "action.invoke", 2)
      worker.client.send({ v: 1, type: "action.result", invocation_id: bad.invocation_id, error: "spawn_failed" })
      const [failed] = yield* leadClient.waitFor((f) => f.type === "deliver" && f.payload.type === "action.failed")
      assert.deepStrictEqual(failed.payload.data, { invocation_id: bad.invocation_id, action_name: "spawn", status: "failed", output: null, error: "spawn_failed" })

      // An agent-hosted action: the frame names the handler; available_to refuses others with action.denied.
      const reviewer = yield* registerAgent(worker.client, "reviewer")
      const registered = yield* call(url, "POST", "/v1/actions", {
        token: reviewer.token,
        body: { name: "review", handler_agent: "reviewer", available_to: ["reviewer"] }
      })
      assert.strictEqual(registered.status, 201)
      const denied = yield* call(url, "POST", "/v1/actions/review/invoke", { token: lead.token, body: { input: { pr: 7 } } })
      assert.deepStrictEqual([denied.status, denied.body.error.code], [403, "action_denied"])
      const [denial] = yield* leadClient.waitFor((f) => f.type === "deliver" && f.payload.type === "action.denied")
      assert.strictEqual(denial.msg_id, "review")
      assert.strictEqual(denial.seq, 0)
      assert.deepStrictEqual(Object.keys(denial.payload.data).sort(), ["action_name", "caller_name", "error"])
      assert.strictEqual(denial.payload.data.caller_name, "lead")
      const own = yield* data(url, "POST", "/v1/actions/review/invoke", { token: reviewer.token, body: { input: { pr: 8 } } })
      const frames = yield* worker.client.waitFor((f) => f.type === "action.invoke" && f.action === "review")
      assert.deepStrictEqual(frames[0], {
        v: 1,
        type: "action.invoke",
        invocation_id: own.invocation_id,
        action: "review",
        agent_id: reviewer.agent_id,
        agent_name: "reviewer",
        input: { pr: 8 }
      })
    }))

  it.scopedLive("node capabilities become workspace actions pinned to the first node; a bare spawn is capacity (relaycast 6)", () =>
    Effect.gen(function*() {
      const { url, ws } = yield* setup
      const first = yield* capableNode(ws, "first", { capabilities: ["spawn", "run:test", "spawn:claude"] })
      const second = yield* capableNode(ws, "second", { capabilities: ["run:test", "spawn:codex"], load: 0 })
      const actions = yield* data(url, "GET", "/v1/actions", { token: ws.key })
      assert.deepStrictEqual(actions.map((a: any) => [a.name, a.handler_node_id]), [["run:test", first.id]])
      // v5 turned a bare `spawn` into an action that shadowed placement; classified by name it is
      // capacity now, so a codex spawn is placed on the node that provides spawn:codex.
      const spawned = yield* data(url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1", { cli: "codex" }) })
      assert.strictEqual(spawned.dispatched_node_id, second.id)
      const [frame] = yield* second.client.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(frame.action, "spawn:codex")
      assert.isFalse("agent_id" in frame)
    }))

  it.scopedLive("open invocations survive an engine restart and reach their nodes when they reconnect", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const ids = yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* startEngine({ dataDir })
        const ws = yield* createWorkspace(engine.url)
        const a = yield* capableNode(ws, "a")
        const offline = yield* data(engine.url, "POST", "/v1/nodes", { token: ws.key, body: { name: "offline", capabilities: ["spawn:claude"] } })
        const dispatched = yield* data(engine.url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w1", { target_node: "a" }) })
        yield* a.client.waitFor((f) => f.type === "action.invoke")
        const queued = yield* data(engine.url, "POST", "/v1/agents/spawn", { token: ws.key, body: spawnBody("w2", { target_node: "offline" }) })
        assert.strictEqual(queued.status, "pending")
        return { ws, a, offline, dispatched: dispatched.invocation_id as string, queued: queued.invocation_id as string }
      }))
      const engine = yield* startEngine({ dataDir })
      const ws = { ...ids.ws, url: engine.url }
      const a = yield* connect(engine.url, ids.a.token)
      a.send(registerFrame(ids.a, { capabilities: [{ name: "spawn:claude" }] }))
      const [again] = yield* a.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(again.invocation_id, ids.dispatched)
      const offline = yield* connect(engine.url, ids.offline.token)
      const [drained] = yield* offline.waitFor((f) => f.type === "action.invoke")
      assert.strictEqual(drained.invocation_id, ids.queued)
      for (const id of [ids.dispatched, ids.queued]) {
        const detail = yield* data(engine.url, "GET", `/v1/actions/spawn/invocations/${id}`, { token: ws.key })
        assert.strictEqual(detail.status, "dispatched")
      }
    }))
})
