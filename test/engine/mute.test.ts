import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createAgent, createWorkspace, data, startEngine } from "./support.js"

// A member who muted a channel keeps reading it but gets no delivery for its posts and thread
// replies, unless a post @mentions it; unmuting restores deliveries.

const recipientsOf = (url: string, key: string, messageId: string) =>
  Effect.map(data(url, "GET", `/v1/messages/${messageId}/deliveries`, { token: key }), (rows: Array<any>) =>
    rows.map((row) => row.agent_name).sort())

describe("engine channel mute", () => {
  it.scopedLive("muted members get no deliveries for posts and replies, but do for @mentions; unmute restores them", () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      yield* createAgent(ws, "bob")
      const carol = yield* createAgent(ws, "carol")
      yield* data(url, "POST", "/v1/channels/general/mute", { token: carol.token })

      const post = yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text: "standup in 5" } })
      assert.deepStrictEqual(yield* recipientsOf(url, ws.key, post.id), ["bob"])
      const reply = yield* data(url, "POST", `/v1/messages/${post.id}/replies`, { token: alice.token, body: { text: "moved to 10" } })
      assert.deepStrictEqual(yield* recipientsOf(url, ws.key, reply.id), ["bob"])
      const mention = yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text: "@carol your turn" } })
      assert.deepStrictEqual(yield* recipientsOf(url, ws.key, mention.id), ["bob", "carol"])
      const history = yield* data(url, "GET", "/v1/channels/general/messages", { token: carol.token })
      assert.include(JSON.stringify(history), "standup in 5")

      yield* data(url, "POST", "/v1/channels/general/unmute", { token: carol.token })
      const after = yield* data(url, "POST", "/v1/channels/general/messages", { token: alice.token, body: { text: "back to normal" } })
      assert.deepStrictEqual(yield* recipientsOf(url, ws.key, after.id), ["bob", "carol"])
    }))
})
