import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  connect,
  connectNode,
  createAgent,
  createWorkspace,
  data,
  enrollNode,
  registerAgent,
  registerFrame,
  sendAndSettle,
  startEngine
} from "./support.js"

// Durable deliveries and `deliver` frames (spec §4; §6.1 items 7–10).

const setup = (options: { readonly depthCap?: number } = {}) =>
  Effect.gen(function*() {
    const engine = yield* startEngine(options)
    const ws = yield* createWorkspace(engine.url)
    const node = yield* enrollNode(ws, "node-a")
    const client = yield* connectNode(engine.url, node)
    const alice = yield* createAgent(ws, "alice")
    return { url: engine.url, ws, node, client, alice }
  })

describe("engine deliveries", () => {
  it.scopedLive("a DM arrives as one deliver frame with the exact dm.received payload and the request's mode", () =>
    Effect.gen(function*() {
      const { url, client, alice } = yield* setup()
      const bob = yield* registerAgent(client, "bob")
      const sent = yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "ping", mode: "steer" } })
      const [frame] = yield* client.waitFor((f) => f.type === "deliver")
      assert.deepStrictEqual(frame, {
        v: 1,
        type: "deliver",
        agent: "bob",
        agent_id: bob.agent_id,
        delivery_id: `del_${sent.id}_${bob.agent_id}`,
        msg_id: sent.id,
        seq: 1,
        mode: "steer",
        payload: {
          type: "dm.received",
          data: {
            conversation_id: sent.conversation_id,
            message: { id: sent.id, agent_id: alice.id, agent_name: "alice", text: "ping", injection_mode: "steer", attachments: [] },
            created_at: sent.created_at,
            id: sent.id,
            from_agent_id: alice.id,
            to: "bob",
            text: "ping",
            injection_mode: "steer",
            attachments: [],
            from_name: "alice"
          }
        }
      })
    }))

  it.scopedLive("a channel message goes to every member but the sender; only via_node members get frames", () =>
    Effect.gen(function*() {
      const { url, ws, client, alice } = yield* setup()
      const bob = yield* registerAgent(client, "bob")
      const carol = yield* registerAgent(client, "carol")
      const dave = yield* createAgent(ws, "dave") // HTTP-only: a row, no frame
      const sent = yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text: "hi @carol" } })
      const frames = yield* client.waitFor((f) => f.type === "deliver", 2)
      assert.deepStrictEqual(frames.map((f) => [f.agent, f.seq, f.mode]), [["bob", 1, "wait"], ["carol", 1, "wait"]])
      const general = (yield* data(url, "GET", "/v1/channels", { token: ws.key }))[0]
      assert.deepStrictEqual(frames[0].payload, {
        type: "message.created",
        data: {
          id: sent.id,
          channel_id: general.id,
          agent_id: alice.id,
          agent_name: "alice",
          text: "hi @carol",
          blocks: null,
          metadata: {},
          has_attachments: false,
          thread_id: null,
          created_at: sent.created_at,
          mentions: ["carol"],
          attachments: [],
          injection_mode: "wait",
          channel_name: "general",
          from_name: "alice"
        }
      })
      assert.deepStrictEqual(frames[1].payload, frames[0].payload)
      assert.strictEqual(frames[1].agent_id, carol.agent_id)
      assert.strictEqual(frames[0].agent_id, bob.agent_id)
      const daveRows = yield* data(url, "GET", "/v1/deliveries", { token: dave.token })
      assert.deepStrictEqual(daveRows.map((d: any) => [d.seq, d.status, d.message_id]), [[1, "queued", sent.id]])
      const aliceRows = yield* data(url, "GET", "/v1/deliveries", { token: alice.token })
      assert.deepStrictEqual(aliceRows, [])
      const carolRows = yield* data(url, "GET", "/v1/deliveries", { token: carol.token })
      assert.deepStrictEqual(carolRows.map((d: any) => [d.status, d.reason]), [["delivered", "mention"]])
    }))

  it.scopedLive("a thread reply reaches the parent channel's members as thread.reply, always in wait mode", () =>
    Effect.gen(function*() {
      const { url, client, alice } = yield* setup()
      const bob = yield* registerAgent(client, "bob")
      const root = yield* data(url, "POST", "/v1/channels/general/messages", { token: bob.token, body: { text: "root" } })
      const reply = yield* data(url, "POST", `/v1/messages/${root.id}/replies`, { token: alice.token, body: { text: "re" } })
      const [frame] = yield* client.waitFor((f) => f.type === "deliver")
      assert.strictEqual(frame.seq, 1)
      assert.strictEqual(frame.mode, "wait")
      assert.strictEqual(frame.msg_id, reply.id)
      assert.deepStrictEqual(frame.payload, {
        type: "thread.reply",
        data: {
          id: reply.id,
          channel_id: root.channel_id,
          channel_name: "general",
          agent_id: alice.id,
          agent_name: "alice",
          thread_id: root.id,
          text: "re",
          blocks: null,
          metadata: {},
          has_attachments: false,
          created_at: reply.created_at,
          from_name: "alice"
        }
      })
    }))

  it.scopedLive("group DMs reach the other participants as group_dm.received", () =>
    Effect.gen(function*() {
      const { url, client, alice } = yield* setup()
      yield* registerAgent(client, "bob")
      yield* registerAgent(client, "carol")
      const group = yield* data(url, "POST", "/v1/dm/group", { token: alice.token, body: { participants: ["bob", "carol"], name: "trio" } })
      assert.strictEqual(group.dm_type, "group")
      const sent = yield* data(url, "POST", `/v1/dm/${group.id}/messages`, { token: alice.token, body: { text: "all of you" } })
      const frames = yield* client.waitFor((f) => f.type === "deliver", 2)
      assert.deepStrictEqual(frames.map((f) => f.agent), ["bob", "carol"])
      assert.strictEqual(frames[0].payload.type, "group_dm.received")
      const payloadData = frames[0].payload.data
      assert.strictEqual(payloadData.text, "all of you")
      assert.strictEqual(payloadData.agent_id, alice.id)
      assert.strictEqual(payloadData.from_name, "alice")
      assert.strictEqual(payloadData.conversation_id, group.id)
      assert.isFalse("to" in payloadData)
      assert.strictEqual(sent.id, frames[0].msg_id)
    }))

  it.scopedLive("per-agent seq is contiguous from 1 across message kinds; a DM to yourself creates nothing", () =>
    Effect.gen(function*() {
      const { url, client, alice } = yield* setup()
      const bob = yield* registerAgent(client, "bob")
      yield* registerAgent(client, "carol")
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "1" } })
      const root = yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text: "2" } })
      yield* data(url, "POST", `/v1/messages/${root.id}/replies`, { token: alice.token, body: { text: "3" } })
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "4" } })
      yield* data(url, "POST", "/v1/dm", { token: bob.token, body: { to: "@self", text: "note" } })
      yield* client.waitFor((f) => f.type === "deliver" && f.agent === "bob", 4)
      yield* client.waitFor((f) => f.type === "deliver" && f.agent === "carol", 2)
      assert.deepStrictEqual(client.delivers("bob").map((f) => [f.seq, f.payload.data.text]), [[1, "1"], [2, "2"], [3, "3"], [4, "4"]])
      assert.deepStrictEqual(client.delivers("carol").map((f) => f.seq), [1, 2])
    }))

  it.scopedLive("replay on node.register resends unacked rows with identical bytes, by agent name then seq; acks are cumulative", () =>
    Effect.gen(function*() {
      const { url, node, client, alice } = yield* setup()
      yield* registerAgent(client, "zed")
      yield* registerAgent(client, "bob")
      for (const text of ["one", "two", "three"]) {
        yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text } })
      }
      yield* client.waitFor((f) => f.type === "deliver", 6)
      const liveTexts = new Map(client.frames.flatMap((f, i) => (f.type === "deliver" ? [[f.delivery_id, client.texts[i]!]] : [])))
      // bob acks up to 2 (cumulative), zed acks nothing.
      yield* sendAndSettle(client, { v: 1, type: "delivery.ack", agent: "bob", up_to_seq: 2 })
      client.ws.close()
      yield* client.waitClosed()

      const again = yield* connect(url, node.token)
      again.send(registerFrame(node))
      const replayed = yield* again.waitFor((f) => f.type === "deliver", 4)
      assert.deepStrictEqual(replayed.map((f) => [f.agent, f.seq]), [["bob", 3], ["zed", 1], ["zed", 2], ["zed", 3]])
      for (const frame of replayed) {
        const text = again.texts[again.frames.indexOf(frame)]!
        assert.strictEqual(text, liveTexts.get(frame.delivery_id))
      }
      // A stale ack (≤ cursor) changes nothing; the next ack covers queued rows too.
      yield* sendAndSettle(again, { v: 1, type: "delivery.ack", agent: "bob", up_to_seq: 1 })
      yield* sendAndSettle(again, { v: 1, type: "delivery.ack", agent: "zed", up_to_seq: 3 })
      const third = yield* connect(url, node.token)
      third.send(registerFrame(node))
      yield* third.waitFor((f) => f.type === "reply")
      yield* sendAndSettle(third, { v: 1, type: "node.heartbeat", load: 0, active_agents: 2, handlers_live: false })
      assert.deepStrictEqual(third.delivers().map((f) => [f.agent, f.seq]), [["bob", 3]])
      // The ack also marked zed's messages read.
      const zedToken = (yield* registerAgent(third, "zed")).token
      const inbox = yield* data(url, "GET", "/v1/inbox", { token: zedToken })
      assert.deepStrictEqual(inbox.unread_channels, [])
    }))

  it.scopedLive("agent.register replays that agent's unacked rows (starting past its ack cursor, as v5 does)", () =>
    Effect.gen(function*() {
      const { url, client, alice } = yield* setup()
      yield* registerAgent(client, "bob")
      for (const text of ["a", "b", "c"]) yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text } })
      yield* client.waitFor((f) => f.type === "deliver", 3)
      yield* sendAndSettle(client, { v: 1, type: "delivery.ack", agent: "bob", up_to_seq: 1 })
      const before = client.delivers().length
      // A restarted broker re-registers the same name: the engine resends seq 2 and 3, never seq 1 again.
      yield* registerAgent(client, "bob")
      const frames = yield* client.waitFor((f) => f.type === "deliver", before + 2)
      assert.deepStrictEqual(frames.slice(before).map((f) => f.seq), [2, 3])
    }))

  it.scopedLive("no timed redelivery inside a connection: an unacked frame is not resent until the next register", () =>
    Effect.gen(function*() {
      const { url, client, alice } = yield* setup()
      yield* registerAgent(client, "bob")
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "once" } })
      yield* client.waitFor((f) => f.type === "deliver")
      // Later traffic on the same socket (a gap-style ack at the old cursor included) resends nothing.
      yield* sendAndSettle(client, { v: 1, type: "delivery.ack", agent: "bob", up_to_seq: 0 })
      yield* sendAndSettle(client, { v: 1, type: "node.heartbeat", load: 0, active_agents: 1, handlers_live: false })
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "twice" } })
      yield* client.waitFor((f) => f.type === "deliver", 2)
      yield* sendAndSettle(client, { v: 1, type: "node.heartbeat", load: 0, active_agents: 1, handlers_live: false })
      assert.deepStrictEqual(client.delivers().map((f) => f.seq), [1, 2])
    }))

  it.scopedLive("seq-0 fan-out: message.read to the node-hosted channel members, mode wait, msg_id = message id", () =>
    Effect.gen(function*() {
      const { url, client, alice } = yield* setup()
      const bob = yield* registerAgent(client, "bob")
      const carol = yield* registerAgent(client, "carol")
      const sent = yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text: "read me" } })
      yield* client.waitFor((f) => f.type === "deliver" && f.seq > 0, 2)
      const read = yield* data(url, "POST", `/v1/messages/${sent.id}/read`, { token: bob.token })
      const fanned = yield* client.waitFor((f) => f.type === "deliver" && f.seq === 0, 2)
      assert.deepStrictEqual(fanned.map((f) => f.agent), ["bob", "carol"])
      const norm = (s: string) => s.replace(/[^A-Za-z0-9]+/g, "_").replace(/^_+|_+$/g, "")
      assert.deepStrictEqual(fanned[1], {
        v: 1,
        type: "deliver",
        agent: "carol",
        agent_id: carol.agent_id,
        delivery_id: `evt_message_read_${norm(`${sent.id}:${bob.agent_id}:${read.read_at}`)}_${carol.agent_id}`,
        msg_id: sent.id,
        seq: 0,
        mode: "wait",
        payload: { type: "message.read", data: { message_id: sent.id, agent_id: bob.agent_id, read_at: read.read_at, agent_name: "bob" } }
      })
      // A reaction on the same message reuses msg_id (the broker dedups it away, as upstream).
      yield* data(url, "POST", `/v1/messages/${sent.id}/reactions`, { token: alice.token, body: { emoji: "thumbsup" } })
      const reacted = yield* client.waitFor((f) => f.type === "deliver" && f.payload.type === "message.reacted", 2)
      assert.strictEqual(reacted[0].msg_id, sent.id)
      assert.strictEqual(reacted[0].payload.data.action, "added")
      assert.strictEqual(reacted[0].payload.data.channel_name, "general")
      // The single-row ack of a read does not move bob's cursor: replay still skips nothing else.
      const bobRows = yield* data(url, "GET", "/v1/deliveries?status=acked", { token: bob.token })
      assert.deepStrictEqual(bobRows.map((d: any) => d.seq), [1])
    }))

  it.scopedLive("the depth cap refuses new rows for a full mailbox", () =>
    Effect.gen(function*() {
      const { url, ws, alice } = yield* setup({ depthCap: 2 })
      const bob = yield* createAgent(ws, "bob")
      for (const text of ["1", "2", "3"]) yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text } })
      const rows = yield* data(url, "GET", "/v1/deliveries", { token: bob.token })
      assert.deepStrictEqual(rows.map((d: any) => [d.seq, d.message.text]), [[1, "1"], [2, "2"]])
    }))

  it.scopedLive("an agent bound over HTTP receives frames on its node; unbound agents never do", () =>
    Effect.gen(function*() {
      const { url, ws, client, alice } = yield* setup()
      yield* createAgent(ws, "worker-1")
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "worker-1", text: "queued while unbound" } })
      yield* sendAndSettle(client, { v: 1, type: "node.heartbeat", load: 0, active_agents: 0, handlers_live: false })
      assert.strictEqual(client.delivers().length, 0)
      yield* data(url, "POST", "/v1/nodes/node-a/agents", { token: ws.key, body: { agent_name: "worker-1" } })
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "worker-1", text: "after bind" } })
      const [frame] = yield* client.waitFor((f) => f.type === "deliver")
      assert.deepStrictEqual([frame.agent, frame.seq, frame.payload.data.text], ["worker-1", 2, "after bind"])
    }))

  it.scopedLive("acks sent in one burst (merged per agent by the engine) leave the same state as one by one", () =>
    Effect.gen(function*() {
      const { url, node, client, alice } = yield* setup()
      yield* registerAgent(client, "bob")
      yield* registerAgent(client, "zed")
      for (const text of ["1", "2", "3"]) yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text } })
      yield* client.waitFor((f) => f.type === "deliver", 6)
      client.send({ v: 1, type: "delivery.ack", agent: "bob", up_to_seq: 1 })
      client.send({ v: 1, type: "delivery.ack", agent: "zed", up_to_seq: 2 })
      client.send({ v: 1, type: "delivery.ack", agent: "bob", up_to_seq: 3 })
      client.send({ v: 1, type: "delivery.ack", agent: "zed", up_to_seq: 1 })
      yield* sendAndSettle(client, { v: 1, type: "delivery.ack", agent: "nobody", up_to_seq: 9 })
      const again = yield* connect(url, node.token)
      again.send(registerFrame(node))
      yield* again.waitFor((f) => f.type === "reply")
      yield* sendAndSettle(again, { v: 1, type: "node.heartbeat", load: 0, active_agents: 2, handlers_live: false })
      assert.deepStrictEqual(again.delivers().map((f) => [f.agent, f.seq]), [["zed", 3]])
    }))

  it.scopedLive("one burst of acks from several agents: each agent's own range is read (receipts and inbox), no other", () =>
    Effect.gen(function*() {
      const { url, ws, client, alice } = yield* setup()
      const bob = yield* registerAgent(client, "bob")
      const zed = yield* registerAgent(client, "zed")
      const sent = []
      for (const text of ["1", "2", "3"]) sent.push(yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text } }))
      yield* client.waitFor((f) => f.type === "deliver", 6)
      client.send({ v: 1, type: "delivery.ack", agent: "bob", up_to_seq: 3 })
      yield* sendAndSettle(client, { v: 1, type: "delivery.ack", agent: "zed", up_to_seq: 1 })
      const readersOf = (id: string) =>
        Effect.map(data(url, "GET", `/v1/messages/${id}/readers`, { token: ws.key }), (rows: Array<{ agent_name: string }>) => rows.map((r) => r.agent_name).sort())
      assert.deepStrictEqual(yield* readersOf(sent[0].id), ["bob", "zed"])
      assert.deepStrictEqual(yield* readersOf(sent[1].id), ["bob"])
      assert.deepStrictEqual(yield* readersOf(sent[2].id), ["bob"])
      const unread = (token: string) =>
        Effect.map(data(url, "GET", "/v1/inbox", { token }), (inbox: { unread_channels?: Array<{ channel_name: string; unread_count: number }> }) =>
          (inbox.unread_channels ?? []).filter((c) => c.channel_name === "general").map((c) => c.unread_count))
      assert.deepStrictEqual(yield* unread(bob.token), [])
      assert.deepStrictEqual(yield* unread(zed.token), [2])
    }))
})
