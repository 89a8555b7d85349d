import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import { call, connect, createAgent, createWorkspace, data, enrollNode, registerAgent, registerFrame, sendAndSettle, startEngine, tempDir } from "./support.js"

// Stopping the engine mid-stream and starting it on the same data dir loses no message, seq or
// token, and the next node.register replays what was unacked (issue 3, "Restart").

const postUntilRefused = (url: string, token: string, sent: Array<string>) =>
  Effect.promise(async () => {
    for (let i = 0; i < 10_000; i++) {
      try {
        const response = await fetch(`${url}/v1/dm`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ to: "bob", text: `m${i}` })
        })
        if (response.status !== 201) return
        sent.push(((await response.json()) as any).data.id)
      } catch {
        return
      }
    }
  })

describe("engine restart", () => {
  it.scopedLive("a restart on the same data dir keeps messages, seqs and tokens; node.register replays the unacked", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const first = yield* Scope.make()
      const engine = yield* Scope.extend(startEngine({ dataDir }), first)
      const ws = yield* createWorkspace(engine.url)
      const alice = yield* createAgent(ws, "alice")
      const node = yield* enrollNode(ws, "node-a")
      const client = yield* Scope.extend(connect(engine.url, node.token), first)
      client.send(registerFrame(node))
      yield* client.waitFor((f) => f.type === "reply")
      const bob = yield* registerAgent(client, "bob")
      // Stream DMs; ack the first 3; stop the engine while the sender is still going.
      const sent: Array<string> = []
      const sender = yield* Effect.fork(postUntilRefused(engine.url, alice.token, sent))
      yield* client.waitFor((f) => f.type === "deliver", 5)
      yield* sendAndSettle(client, { v: 1, type: "delivery.ack", agent: "bob", up_to_seq: 3 })
      yield* Scope.close(first, Exit.void)
      yield* Fiber.join(sender)
      assert.isAtLeast(sent.length, 5)
      const liveTexts = new Map(client.frames.flatMap((f, i) => (f.type === "deliver" ? [[f.delivery_id, client.texts[i]!]] : [])))

      const second = yield* startEngine({ dataDir })
      // Tokens survive: the workspace key, the agent tokens, the node token.
      assert.strictEqual((yield* call(second.url, "GET", "/v1/workspace", { token: ws.key })).status, 200)
      assert.strictEqual((yield* call(second.url, "GET", "/v1/agent", { token: bob.token })).status, 200)
      const again = yield* connect(second.url, node.token)
      again.send(registerFrame(node))
      yield* again.waitFor((f) => f.type === "reply")
      // Every message that got a 201 is replayed (seq 4 on, contiguous), byte-identical where it had been sent.
      const total = (yield* data(second.url, "GET", "/v1/deliveries?status=queued,delivered,acked&limit=200", { token: bob.token })).length
      assert.isAtLeast(total, sent.length)
      const replayed = yield* again.waitFor((f) => f.type === "deliver", total - 3)
      assert.deepStrictEqual(replayed.map((f) => f.seq), Array.from({ length: total - 3 }, (_, i) => i + 4))
      const replayedIds = new Set(replayed.map((f) => f.msg_id))
      for (const id of sent.slice(3)) assert.isTrue(replayedIds.has(id), `message ${id} replayed`)
      for (const frame of replayed) {
        const before = liveTexts.get(frame.delivery_id)
        if (before !== undefined) assert.strictEqual(again.texts[again.frames.indexOf(frame)], before)
      }
      // The next message continues the sequence.
      yield* data(second.url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "after restart" } })
      const [next] = yield* again.waitFor((f) => f.type === "deliver" && f.payload.data.text === "after restart")
      assert.strictEqual(next.seq, total + 1)
    }))
})
