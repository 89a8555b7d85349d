import { assert, describe, it } from "@effect/vitest"
import { Arbitrary, Effect, FastCheck as fc } from "effect"
import { NodeToServer } from "../../src/wire/index.js"
import { call, connectNode, createAgent, createWorkspace, data, enrollNode, registerAgent, registerFrame, startEngine } from "./support.js"

// 10 000 random inputs (node frames and HTTP bodies) get clean answers and leave the engine serving.
// About 90 s on one loaded core, hence the generous limits (a stalled CI machine must not fail it).

const frameCount = 6000
const bodyCount = 4000
const seed = 20_260_627

const validFrames = Arbitrary.make(NodeToServer).map((frame) => JSON.stringify(frame))
const jsonNoise = fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value))
const textNoise = fc.string({ maxLength: 80 })
const mutated = fc.tuple(Arbitrary.make(NodeToServer), fc.string({ minLength: 1, maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }))
  .map(([frame, key, value]) => JSON.stringify({ ...frame, [key]: value }))
const truncated = validFrames.chain((text) => fc.nat({ max: Math.max(0, text.length - 1) }).map((n) => text.slice(0, n)))
const frames = fc.oneof(validFrames, jsonNoise, textNoise, mutated, truncated)

const routes = [
  ["POST", "/v1/workspaces"],
  ["POST", "/v1/agents"],
  ["POST", "/v1/nodes"],
  ["POST", "/v1/nodes/fuzz-node/agents"],
  ["POST", "/v1/channels"],
  ["POST", "/v1/channels/general/messages"],
  ["POST", "/v1/dm"],
  ["POST", "/v1/dm/group"],
  ["POST", "/v1/messages/1/replies"],
  ["POST", "/v1/messages/1/reactions"],
  ["POST", "/v1/agents/fuzz/rotate-token"],
  ["GET", "/v1/deliveries?status=%%%&limit=-4"],
  ["GET", "/v1/channels/general/messages?before=abc&limit=9999"],
  ["DELETE", "/v1/nodes/x/agents/y"],
  ["PUT", "/v1/agents"]
] as const

describe("engine fuzz", () => {
  it.scopedLive(`${frameCount} random node frames and ${bodyCount} random HTTP bodies get clean errors; the engine keeps serving`, () =>
    Effect.gen(function*() {
      const { url } = yield* startEngine()
      const ws = yield* createWorkspace(url)
      const alice = yield* createAgent(ws, "alice")
      const node = yield* enrollNode(ws, "fuzz-node")
      const client = yield* connectNode(url, node)

      for (const text of fc.sample(frames, { numRuns: frameCount, seed })) client.send(text)
      // Frames are handled in order: the answer to this one means every fuzz frame was handled.
      const last = yield* client.request({ ...registerFrame(node), id: "after_fuzz" }, "240 seconds")
      assert.strictEqual(last.type, "reply")
      assert.isFalse(client.closed)
      for (const frame of client.frames) {
        assert.include(["reply", "error", "deliver", "action.invoke"], frame.type)
        if (frame.type === "error") {
          assert.isString(frame.code)
          assert.notStrictEqual(frame.code, "node_control_failed", JSON.stringify(frame))
        }
      }

      const tokens = [ws.key, alice.token, node.token, "rk_live_x", undefined, "garbage"]
      const bodies = fc.sample(
        fc.record({
          route: fc.constantFrom(...routes),
          token: fc.constantFrom(...tokens),
          body: fc.oneof(jsonNoise, textNoise, fc.constant(""), fc.object({ maxDepth: 2 }).map((o) => JSON.stringify(o)))
        }),
        { numRuns: bodyCount, seed }
      )
      const results = yield* Effect.forEach(bodies, ({ body, route, token }) =>
        call(url, route[0], route[1], {
          ...(token === undefined ? {} : { token }),
          ...(route[0] === "GET" ? {} : { rawBody: body })
        }), { concurrency: 8 })
      for (const result of results) {
        assert.isBelow(result.status, 500, result.text)
        if (result.status !== 204) {
          assert.isBoolean(result.body?.ok, result.text)
          if (result.body.ok === false) assert.isString(result.body.error.code)
        }
      }

      // Still serving: a normal delivery goes through.
      yield* registerAgent(client, "still-here")
      yield* data(url, "POST", "/v1/dm", { token: alice.token, body: { to: "still-here", text: "ok" } })
      yield* client.waitFor((f) => f.type === "deliver" && f.agent === "still-here")
      assert.strictEqual((yield* call(url, "GET", "/health")).status, 200)
    }), 300_000)
})
