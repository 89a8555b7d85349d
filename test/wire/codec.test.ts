import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import {
  AgentRegisterReplyData,
  decodeNodeFrame,
  decodeServerFrame,
  encodeNodeFrame,
  encodeServerFrame,
  type NodeToServer,
  WireDecodeError
} from "../../src/wire/index.js"

describe("node.register.resume_cursor", () => {
  const register = {
    v: 1, type: "node.register", name: "myhost", node_id: "node_6773ce94725ff60cc1e8e6b2c9065af4",
    capabilities: [], max_agents: 0, tags: [], version: "relay-broker/9.1.6"
  } as const

  it.effect("absent on input decodes as null and is always encoded, as null", () =>
    Effect.gen(function*() {
      const frame = yield* decodeNodeFrame(JSON.stringify(register))
      assert.strictEqual(frame.type === "node.register" ? frame.resume_cursor : "not a register", null)
      const text = yield* encodeNodeFrame(frame)
      // The bootstrap register of broker-spec §1.2, as emitted.
      assert.deepStrictEqual(JSON.parse(text), { ...register, resume_cursor: null })
      assert.include(text, "\"resume_cursor\":null")
    }))

  it.effect("a cursor string round-trips", () =>
    Effect.gen(function*() {
      const text = yield* encodeNodeFrame({ ...register, resume_cursor: "cur_9" })
      assert.strictEqual(JSON.parse(text).resume_cursor, "cur_9")
      const frame = yield* decodeNodeFrame(text)
      assert.strictEqual(frame.type === "node.register" ? frame.resume_cursor : undefined, "cur_9")
    }))
})

describe("optional fields are omitted when absent", () => {
  it.effect("agent.register without id/invocation_id/session_ref/resumable encodes only v, type, name", () =>
    Effect.gen(function*() {
      const text = yield* encodeNodeFrame({ v: 1, type: "agent.register", name: "w" })
      assert.deepStrictEqual(Object.keys(JSON.parse(text)).sort(), ["name", "type", "v"])
    }))

  it.effect("action.result output null is encoded as a present null", () =>
    Effect.gen(function*() {
      const text = yield* encodeNodeFrame({ v: 1, type: "action.result", invocation_id: "i", output: null })
      assert.deepStrictEqual(JSON.parse(text), { v: 1, type: "action.result", invocation_id: "i", output: null })
    }))
})

describe("inbound (server → node) decoding tolerates unknown properties", () => {
  const frames = [
    { v: 1, type: "deliver", agent: "w", agent_id: "a", delivery_id: "d", msg_id: "m", seq: 0, mode: "wait", payload: { k: { deep: 1 } } },
    { v: 1, type: "action.invoke", invocation_id: "i", action: "release", input: { agent: "w" } },
    { v: 1, type: "context.update", topic: "presence", event: "agent.online", data: {} },
    { v: 1, type: "ping" },
    { v: 1, type: "reply", id: "r", ok: true, data: { k: 1 } },
    { v: 1, type: "error", id: "r", ok: false, code: "c", message: "m" }
  ] as const

  for (const frame of frames) {
    it.effect(`${frame.type}: an extra field is dropped, the frame is kept, and re-encoding gives the known fields`, () =>
      Effect.gen(function*() {
        const decoded = yield* decodeServerFrame(JSON.stringify({ ...frame, from_a_newer_engine: { x: [1] } }))
        assert.deepStrictEqual(decoded, frame)
        assert.deepStrictEqual(JSON.parse(yield* encodeServerFrame(decoded)), frame)
      }))
  }

  it.effect("keys inside a payload are data, not extra fields: they are all kept", () =>
    Effect.gen(function*() {
      const decoded = yield* decodeServerFrame(JSON.stringify(frames[0]))
      assert.deepStrictEqual(decoded.type === "deliver" ? decoded.payload : undefined, { k: { deep: 1 } })
    }))
})

describe("AgentRegisterReplyData", () => {
  const decode = Schema.decodeUnknownEither(AgentRegisterReplyData)

  it("needs agent_id and token; name and delivery_ack_seq are optional; other extra fields are tolerated", () => {
    assert.deepStrictEqual(decode({ agent_id: "a", token: "at_live_x" }), Either.right({ agent_id: "a", token: "at_live_x" }))
    assert.deepStrictEqual(
      decode({ agent_id: "a", token: "t", name: "w", delivery_ack_seq: 4, session_ref: "s" }),
      Either.right({ agent_id: "a", token: "t", name: "w", delivery_ack_seq: 4 })
    )
    assert.isTrue(Either.isLeft(decode({ agent_id: "a", token: "t", delivery_ack_seq: -1 })))
    assert.isTrue(Either.isLeft(decode({ agent_id: "a" })))
    assert.isTrue(Either.isLeft(decode({ token: "t" })))
    assert.isTrue(Either.isLeft(decode({ agent_id: "a", token: "t", name: null })))
  })
})

describe("errors", () => {
  it.effect("a WireDecodeError is a tagged error with the frame type, a kind and a short reason", () =>
    Effect.gen(function*() {
      const huge = { v: 1, type: "deliver", agent: "w", seq: -1, payload: { blob: "x".repeat(100_000) } }
      const error = yield* Effect.flip(decodeServerFrame(JSON.stringify(huge)))
      assert.instanceOf(error, WireDecodeError)
      assert.strictEqual(error._tag, "WireDecodeError")
      assert.strictEqual(error.frameType, "deliver")
      assert.strictEqual(error.kind, "invalid_frame")
      assert.isAtMost(error.reason.length, 301)
      assert.include(error.message, "deliver")
    }))

  it.effect("the reason names the field of the frame at fault, not every union member", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeNodeFrame(JSON.stringify({ v: 1, type: "delivery.ack", agent: "w", up_to_seq: -3 })))
      assert.include(error.reason, "up_to_seq")
      assert.notInclude(error.reason, "NodeRegister")
    }))

  it.effect("encoding a frame of an unknown type is a WireEncodeError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(encodeNodeFrame({ v: 1, type: "node.bogus" } as unknown as NodeToServer))
      assert.strictEqual(error._tag, "WireEncodeError")
      assert.strictEqual(error.frameType, "node.bogus")
    }))
})
