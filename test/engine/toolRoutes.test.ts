import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { call, createAgent, createWorkspace, data, startEngine } from "./support.js"

// The five routes the agent tools need, with relaycast's shapes and error codes:
// GET /v1/search, GET /v1/messages/:id/readers, POST /v1/channels/:n/invite,
// PATCH /v1/channels/:n/topic, DELETE /v1/channels/:n.

describe("engine tool routes", () => {
  it.scopedLive("search: terms must all occur, best first; channel/from/before filters; DMs only for their participants", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      const bob = yield* createAgent(ws, "bob")
      const carol = yield* createAgent(ws, "carol")
      yield* data(url, "POST", "/v1/channels", { token: alice.token, body: { name: "builds" } })
      const first = yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text: "Deploy failed on staging" } })
      const second = yield* data(url, "POST", "/v1/channels/builds/messages", { token: bob.token, body: { text: "deploy deploy: staging is green" } })
      yield* data(url, "POST", "/v1/channels/general/messages", { token: bob.token, body: { text: "lunch?" } })
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "secret deploy key rotation" } })

      const hits = yield* data(url, "GET", "/v1/search?q=DEPLOY%20staging", { token: carol.token })
      assert.deepStrictEqual(hits.map((h: any) => h.id), [second.id, first.id])
      assert.deepStrictEqual(Object.keys(hits[0]).sort(), [
        "agent_id", "agent_name", "channel_id", "channel_name", "conversation_id", "created_at", "id", "relevance_score", "text"
      ])
      assert.strictEqual(hits[0].channel_name, "builds")
      assert.strictEqual(hits[0].agent_name, "bob")
      assert.isTrue(hits[0].relevance_score < hits[1].relevance_score)

      // A DM is found by its participants and by the workspace key, never by a third agent.
      const asCarol = yield* data(url, "GET", "/v1/search?q=rotation", { token: carol.token })
      assert.deepStrictEqual(asCarol, [])
      const asBob = yield* data(url, "GET", "/v1/search?q=rotation", { token: bob.token })
      assert.strictEqual(asBob.length, 1)
      assert.match(asBob[0].conversation_id, /^dm_/)
      const asKey = yield* data(url, "GET", "/v1/search?q=rotation", { token: ws.key })
      assert.strictEqual(asKey.length, 1)

      assert.deepStrictEqual((yield* data(url, "GET", "/v1/search?q=deploy&channel=builds", { token: carol.token })).map((h: any) => h.id), [second.id])
      assert.deepStrictEqual((yield* data(url, "GET", "/v1/search?q=deploy&from=alice", { token: carol.token })).map((h: any) => h.id), [first.id])
      assert.deepStrictEqual((yield* data(url, "GET", `/v1/search?q=deploy&before=${second.id}`, { token: carol.token })).map((h: any) => h.id), [first.id])
      assert.deepStrictEqual((yield* data(url, "GET", "/v1/search?q=deploy&limit=1", { token: carol.token })).length, 1)
      assert.deepStrictEqual(yield* data(url, "GET", "/v1/search?q=deploy&channel=nope", { token: carol.token }), [])
      assert.deepStrictEqual(yield* data(url, "GET", "/v1/search?q=deploy&from=ghost", { token: carol.token }), [])
      assert.deepStrictEqual(yield* data(url, "GET", "/v1/search?q=100%25", { token: carol.token }), [])

      const missing = yield* call(url, "GET", "/v1/search?q=%20", { token: carol.token })
      assert.strictEqual(missing.status, 400)
      assert.deepStrictEqual(missing.body.error, { code: "invalid_request", message: "q (search query) is required" })
      const anonymous = yield* call(url, "GET", "/v1/search?q=deploy")
      assert.strictEqual(anonymous.status, 401)
    }))

  it.scopedLive("readers: who read a message and when; 404 message_not_found", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      const bob = yield* createAgent(ws, "bob")
      const message = yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text: "read me" } })
      assert.deepStrictEqual(yield* data(url, "GET", `/v1/messages/${message.id}/readers`, { token: alice.token }), [])
      const read = yield* data(url, "POST", `/v1/messages/${message.id}/read`, { token: bob.token })
      const readers = yield* data(url, "GET", `/v1/messages/${message.id}/readers`, { token: ws.key })
      assert.deepStrictEqual(readers, [{ agent_id: bob.id, agent_name: "bob", read_at: read.read_at }])
      const unknown = yield* call(url, "GET", "/v1/messages/123/readers", { token: alice.token })
      assert.strictEqual(unknown.status, 404)
      assert.deepStrictEqual(unknown.body.error, { code: "message_not_found", message: "Message not found" })
    }))

  it.scopedLive("invite: a member adds another agent (idempotent); the refusals carry relaycast's codes", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      const bob = yield* createAgent(ws, "bob")
      const carol = yield* createAgent(ws, "carol")
      yield* data(url, "POST", "/v1/channels", { token: alice.token, body: { name: "ops" } })
      const invited = yield* call(url, "POST", "/v1/channels/ops/invite", { token: alice.token, body: { agent_name: "bob" } })
      assert.strictEqual(invited.status, 200)
      assert.deepStrictEqual(invited.body.data, { channel: "ops", agent: "bob" })
      assert.deepStrictEqual(yield* data(url, "POST", "/v1/channels/ops/invite", { token: alice.token, body: { agent_name: "bob" } }), { channel: "ops", agent: "bob" })
      const channel = yield* data(url, "GET", "/v1/channels/ops", { token: alice.token })
      assert.deepStrictEqual(channel.members.map((m: any) => [m.agent_name, m.role]), [["alice", "owner"], ["bob", "member"]])
      // The invitee receives the channel's messages from now on.
      yield* data(url, "POST", "/v1/channels/ops/messages", { token: alice.token, body: { text: "welcome" } })
      const pending = yield* data(url, "GET", "/v1/deliveries", { token: bob.token })
      assert.deepStrictEqual(pending.map((d: any) => d.message.text), ["welcome"])

      const cases: ReadonlyArray<readonly [string, string, unknown, number, string, string]> = [
        [carol.token, "/v1/channels/ops/invite", { agent_name: "carol" }, 403, "not_a_member", "You must be a member of the channel to invite others"],
        [ws.key, "/v1/channels/ops/invite", { agent_name: "carol" }, 403, "agent_token_required", "Agent token required to invite others"],
        [alice.token, "/v1/channels/ops/invite", { agent_name: "ghost" }, 404, "agent_not_found", "Agent \"ghost\" not found"],
        [alice.token, "/v1/channels/nope/invite", { agent_name: "bob" }, 404, "channel_not_found", "Channel \"nope\" not found"],
        [alice.token, "/v1/channels/ops/invite", {}, 400, "invalid_request", "agent_name is required"]
      ]
      for (const [token, path, body, status, code, message] of cases) {
        const result = yield* call(url, "POST", path, { token, body })
        assert.strictEqual(result.status, status, `${path} ${JSON.stringify(body)}`)
        assert.deepStrictEqual(result.body.error, { code, message })
      }
    }))

  it.scopedLive("topic and archive: the updated channel; archived channels leave the list and refuse invites and topics", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      yield* createAgent(ws, "bob")
      yield* data(url, "POST", "/v1/channels", { token: alice.token, body: { name: "ops", topic: "old" } })
      const updated = yield* call(url, "PATCH", "/v1/channels/ops/topic", { token: alice.token, body: { topic: "Incidents only" } })
      assert.strictEqual(updated.status, 200)
      assert.strictEqual(updated.body.data.topic, "Incidents only")
      assert.strictEqual(updated.body.data.name, "ops")
      assert.strictEqual(updated.body.data.is_archived, false)
      assert.strictEqual((yield* data(url, "GET", "/v1/channels/ops", { token: ws.key })).topic, "Incidents only")
      const noTopic = yield* call(url, "PATCH", "/v1/channels/ops/topic", { token: alice.token, body: {} })
      assert.strictEqual(noTopic.status, 400)
      assert.deepStrictEqual(noTopic.body.error, { code: "invalid_request", message: "topic is required" })
      const unknown = yield* call(url, "PATCH", "/v1/channels/nope/topic", { token: alice.token, body: { topic: "x" } })
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.body.error.code, "channel_not_found")

      const general = yield* call(url, "DELETE", "/v1/channels/general", { token: ws.key })
      assert.strictEqual(general.status, 400)
      assert.deepStrictEqual(general.body.error, { code: "cannot_archive_general", message: "The #general channel cannot be archived" })
      const archived = yield* call(url, "DELETE", "/v1/channels/ops", { token: alice.token })
      assert.strictEqual(archived.status, 204)
      assert.strictEqual(archived.text, "")
      assert.deepStrictEqual((yield* data(url, "GET", "/v1/channels", { token: ws.key })).map((c: any) => c.name), ["general"])
      const all = yield* data(url, "GET", "/v1/channels?include_archived=true", { token: ws.key })
      assert.deepStrictEqual(all.map((c: any) => [c.name, c.is_archived]), [["general", false], ["ops", true]])
      const topicAfter = yield* call(url, "PATCH", "/v1/channels/ops/topic", { token: alice.token, body: { topic: "x" } })
      assert.deepStrictEqual([topicAfter.status, topicAfter.body.error.code], [400, "channel_archived"])
      const inviteAfter = yield* call(url, "POST", "/v1/channels/ops/invite", { token: alice.token, body: { agent_name: "bob" } })
      assert.deepStrictEqual([inviteAfter.status, inviteAfter.body.error.code], [400, "channel_archived"])
      const missing = yield* call(url, "DELETE", "/v1/channels/nope", { token: alice.token })
      assert.strictEqual(missing.status, 404)
    }))
})
