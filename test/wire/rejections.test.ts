import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  decodeNodeFrame,
  decodeServerFrame,
  encodeNodeFrame,
  encodeServerFrame,
  type NodeToServer,
  type ServerToNode,
  type WireDecodeError,
  type WireEncodeError
} from "../../src/wire/index.js"

type Frame = Record<string, unknown>

/** One valid frame per type; each rule below breaks one of them in one place. */
const valid = {
  "node.register": {
    v: 1, type: "node.register", name: "h", node_id: "node_1",
    capabilities: [{ name: "spawn:claude", kind: "spawn", metadata: { a: 1 } }],
    max_agents: 2, tags: ["t"], version: "relay-broker/0.1.0", resume_cursor: null
  },
  "node.heartbeat": {
    v: 1, type: "node.heartbeat", name: "h", node_id: "node_1", capabilities: [{ name: "spawn:claude" }],
    max_agents: 2, version: "relay-broker/0.1.0", load: 0.5, active_agents: 1, handlers_live: true
  },
  "node.deregister": { v: 1, type: "node.deregister", provider: { name: "p", instance_id: "i" } },
  "node.spawn": { v: 1, type: "node.spawn", id: "s1", input: { name: "w", cli: "claude" } },
  "agent.register": { v: 1, type: "agent.register", id: "r1", name: "w", invocation_id: "i", session_ref: "s", resumable: true },
  "agent.deregister": { v: 1, type: "agent.deregister", agent_id: "a", name: "w" },
  "delivery.ack": { v: 1, type: "delivery.ack", agent: "w", up_to_seq: 3 },
  "action.result": { v: 1, type: "action.result", invocation_id: "i", output: { ok: true } },
  "inventory.sync": { v: 1, type: "inventory.sync", agents: [{ agent_id: "a", name: "w", invocation_id: "i", session_ref: "s" }] },
  "deliver": { v: 1, type: "deliver", agent: "w", agent_id: "a", delivery_id: "d", msg_id: "m", seq: 1, mode: "wait", payload: { type: "message.created" } },
  "action.invoke": { v: 1, type: "action.invoke", invocation_id: "i", action: "release", input: {}, agent_id: "a", agent_name: "w" },
  "context.update": { v: 1, type: "context.update", topic: "channel", event: "e", channel_id: "c", agent_ids: ["a"], data: {} },
  "ping": { v: 1, type: "ping" },
  "reply": { v: 1, type: "reply", id: "r1", ok: true, data: null },
  "error": { v: 1, type: "error", id: "r1", ok: false, code: "c", message: "m" }
} satisfies Record<NodeToServer["type"] | ServerToNode["type"], Frame>

type FrameType = keyof typeof valid

const isServer = (type: string) => ["deliver", "action.invoke", "context.update", "ping", "reply", "error"].includes(type)

const decode = (frame: Frame): Effect.Effect<unknown, WireDecodeError> =>
  isServer(String(frame.type)) ? decodeServerFrame(JSON.stringify(frame)) : decodeNodeFrame(JSON.stringify(frame))

const encode = (frame: Frame): Effect.Effect<string, WireEncodeError> =>
  isServer(String(frame.type)) ? encodeServerFrame(frame as unknown as ServerToNode) : encodeNodeFrame(frame as unknown as NodeToServer)

/** Decoding fails as an invalid frame of the right type, never as a throw or defect. */
const rejectsOnDecode = (frame: Frame) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(decode(frame))
    assert.strictEqual(error._tag, "WireDecodeError")
    assert.strictEqual(error.kind, "invalid_frame")
    assert.strictEqual(error.frameType, frame.type)
  })

const rejectsOnEncode = (frame: Frame) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(encode(frame))
    assert.strictEqual(error._tag, "WireEncodeError")
    assert.strictEqual(error.frameType, frame.type)
  })

/** Decodes to the same frame and encodes to JSON of the same frame: accepted, and unchanged. */
const accepts = (frame: Frame) =>
  Effect.gen(function*() {
    assert.deepStrictEqual(yield* decode(frame), frame)
    assert.deepStrictEqual(JSON.parse(yield* encode(frame)), frame)
  })

const rejectsBothWays = (frame: Frame) => Effect.zipRight(rejectsOnDecode(frame), rejectsOnEncode(frame))

const withField = (type: FrameType, field: string, value: unknown): Frame => ({ ...valid[type], [field]: value })
const without = (type: FrameType, field: string): Frame =>
  Object.fromEntries(Object.entries(valid[type]).filter(([key]) => key !== field))

describe("the valid base frames", () => {
  for (const [type, frame] of Object.entries(valid)) {
    it.effect(`${type} decodes and encodes unchanged`, () => accepts(frame))
  }
})

describe("v is the literal 1", () => {
  it.effect("{type: ping, v: 2} is rejected", () => rejectsOnDecode({ type: "ping", v: 2 }))
  for (const type of Object.keys(valid) as Array<FrameType>) {
    it.effect(`${type}: v 2, "1", or missing is rejected`, () =>
      Effect.all([
        rejectsBothWays(withField(type, "v", 2)),
        rejectsOnDecode(withField(type, "v", "1")),
        rejectsOnDecode(without(type, "v"))
      ]))
  }
})

describe("an explicit null on an optional field is rejected", () => {
  const optionals: ReadonlyArray<readonly [FrameType, string]> = [
    ["node.register", "id"],
    ["node.heartbeat", "name"],
    ["node.heartbeat", "node_id"],
    ["node.heartbeat", "capabilities"],
    ["node.heartbeat", "max_agents"],
    ["node.heartbeat", "version"],
    ["node.deregister", "id"],
    ["agent.register", "invocation_id"],
    ["agent.register", "session_ref"],
    ["agent.register", "resumable"],
    ["agent.deregister", "name"],
    ["delivery.ack", "id"],
    ["inventory.sync", "id"],
    ["action.invoke", "agent_id"],
    ["action.invoke", "agent_name"],
    ["context.update", "agent_ids"],
    ["node.register", "provider"],
    ["node.register", "machine_id"],
    ["node.heartbeat", "provider"],
    ["node.deregister", "provider"],
    ["node.spawn", "id"]
  ]
  for (const [type, field] of optionals) {
    it.effect(`${type}.${field}: null`, () => rejectsBothWays(withField(type, field, null)))
  }

  it.effect("nested optionals: FleetCapability kind/metadata, InventoryAgent invocation_id/session_ref", () =>
    Effect.all([
      rejectsBothWays(withField("node.register", "capabilities", [{ name: "c", kind: null }])),
      rejectsBothWays(withField("node.heartbeat", "capabilities", [{ name: "c", metadata: null }])),
      rejectsBothWays(withField("inventory.sync", "agents", [{ agent_id: "a", name: "w", invocation_id: null }])),
      rejectsBothWays(withField("inventory.sync", "agents", [{ agent_id: "a", name: "w", session_ref: null }])),
      rejectsBothWays(withField("node.register", "capabilities", [{ name: "c", global: null }])),
      rejectsBothWays(withField("node.register", "capabilities", [{ name: "c", queue: null }]))
    ]))

  it.effect("provider identity: both fields required, nothing else (relaycast 6)", () =>
    Effect.all([
      rejectsBothWays(withField("node.register", "provider", { name: "p" })),
      rejectsBothWays(withField("node.heartbeat", "provider", { instance_id: "i" })),
      rejectsBothWays(withField("node.deregister", "provider", { name: "p", instance_id: "i", extra: 1 })),
      rejectsBothWays(withField("node.register", "capabilities", [{ name: "c", global: "yes" }])),
      rejectsBothWays(withField("node.spawn", "input", [1])),
      rejectsBothWays(without("node.spawn", "input"))
    ]))

  it.effect("an optional set to undefined is rejected on encode (omit it instead)", () =>
    rejectsOnEncode(withField("agent.register", "session_ref", undefined)))

  it.effect("exceptions: node.register.resume_cursor and action.result.output accept null", () =>
    Effect.all([
      accepts(withField("node.register", "resume_cursor", null)),
      accepts(withField("action.result", "output", null))
    ]))

  it.effect("node.register.resume_cursor must still be a string when present", () =>
    rejectsBothWays(withField("node.register", "resume_cursor", 7)))
})

describe("action.result has exactly one of output / error", () => {
  it.effect("both is rejected, including output null with an error", () =>
    Effect.all([
      rejectsBothWays(withField("action.result", "error", "boom")),
      rejectsBothWays({ ...withField("action.result", "output", null), error: "boom" })
    ]))
  it.effect("neither is rejected", () => rejectsBothWays(without("action.result", "output")))
  it.effect("error: null is rejected", () => rejectsBothWays({ ...without("action.result", "output"), error: null }))
})

describe("reply.ok and error.ok are literals", () => {
  it.effect("reply with ok false is rejected", () => rejectsBothWays(withField("reply", "ok", false)))
  it.effect("error with ok true is rejected", () => rejectsBothWays(withField("error", "ok", true)))
  it.effect("reply and error need an id", () => Effect.all([rejectsBothWays(without("reply", "id")), rejectsBothWays(without("error", "id"))]))
})

describe("counters are non-negative integers", () => {
  const counters: ReadonlyArray<readonly [FrameType, string]> = [
    ["deliver", "seq"],
    ["delivery.ack", "up_to_seq"],
    ["node.register", "max_agents"],
    ["node.heartbeat", "max_agents"],
    ["node.heartbeat", "active_agents"]
  ]
  for (const [type, field] of counters) {
    it.effect(`${type}.${field}: -1, 1.5, "3" and 2^53 are rejected; 0 is accepted`, () =>
      Effect.all([
        rejectsBothWays(withField(type, field, -1)),
        rejectsBothWays(withField(type, field, 1.5)),
        rejectsBothWays(withField(type, field, "3")),
        rejectsBothWays(withField(type, field, 2 ** 53)),
        accepts(withField(type, field, 0))
      ]))
  }
})

describe("node.heartbeat.load is finite and >= 0", () => {
  it.effect("NaN, ±Infinity and negative loads are rejected on encode", () =>
    Effect.all([NaN, Infinity, -Infinity, -0.01].map((load) => rejectsOnEncode(withField("node.heartbeat", "load", load)))))
  it.effect("a negative or overflowing (1e400) load is rejected on decode", () =>
    Effect.all([
      rejectsOnDecode(withField("node.heartbeat", "load", -1)),
      Effect.gen(function*() {
        const text = JSON.stringify(valid["node.heartbeat"]).replace('"load":0.5', '"load":1e400')
        const error = yield* Effect.flip(decodeNodeFrame(text))
        assert.strictEqual(error.kind, "invalid_frame")
      })
    ]))
})

describe("mode is wait or steer", () => {
  it.effect("other spellings are rejected", () =>
    Effect.all(["WAIT", "Steer", "push", ""].map((mode) => rejectsBothWays(withField("deliver", "mode", mode)))))
  it.effect("steer is accepted", () => accepts(withField("deliver", "mode", "steer")))
})

describe("payloads are JSON values", () => {
  it.effect("non-finite numbers, undefined and functions are rejected on encode", () =>
    Effect.all([
      rejectsOnEncode(withField("deliver", "payload", { n: NaN })),
      rejectsOnEncode(withField("action.invoke", "input", [Infinity])),
      rejectsOnEncode(withField("reply", "data", { a: undefined })),
      rejectsOnEncode(withField("node.register", "capabilities", [{ name: "c", metadata: { f: () => 1 } }]))
    ]))
  it.effect("capability metadata must be an object", () =>
    rejectsBothWays(withField("node.register", "capabilities", [{ name: "c", metadata: [1] }])))
  it.effect("required payloads cannot be missing", () =>
    Effect.all([
      rejectsBothWays(without("deliver", "payload")),
      rejectsBothWays(without("action.invoke", "input")),
      rejectsBothWays(without("reply", "data")),
      rejectsBothWays(without("context.update", "data"))
    ]))
  it.effect("a __proto__ key is rejected (it cannot survive decoding)", () =>
    Effect.gen(function*() {
      const text = JSON.stringify(valid.deliver).replace('"payload":{', '"payload":{"__proto__":{"text":"x"},')
      const error = yield* Effect.flip(decodeServerFrame(text))
      assert.strictEqual(error.kind, "invalid_frame")
      assert.include(error.reason, "__proto__")
    }))
})

describe("required fields", () => {
  it.effect("deliver needs agent_id, delivery_id, msg_id, seq, mode", () =>
    Effect.all(["agent_id", "delivery_id", "msg_id", "seq", "mode"].map((field) => rejectsBothWays(without("deliver", field)))))
  it.effect("node.register needs name, node_id, capabilities, max_agents, tags, version", () =>
    Effect.all(
      ["name", "node_id", "capabilities", "max_agents", "tags", "version"].map((field) => rejectsBothWays(without("node.register", field)))
    ))
  it.effect("node.heartbeat needs load, active_agents, handlers_live", () =>
    Effect.all(["load", "active_agents", "handlers_live"].map((field) => rejectsBothWays(without("node.heartbeat", field)))))
})

describe("outbound (node → server) frames are strict: an unknown property is an error", () => {
  const nodeTypes = Object.keys(valid).filter((type) => !isServer(type)) as Array<FrameType>
  for (const type of nodeTypes) {
    it.effect(`${type}: an extra top-level property fails encode and the engine-side decode`, () =>
      rejectsBothWays(withField(type, "extra", 1)))
  }
  it.effect("nested FleetCapability and InventoryAgent: an extra property fails both ways", () =>
    Effect.all([
      rejectsBothWays(withField("node.register", "capabilities", [{ name: "c", extra: true }])),
      rejectsBothWays(withField("node.heartbeat", "capabilities", [{ name: "c", extra: true }])),
      rejectsBothWays(withField("inventory.sync", "agents", [{ agent_id: "a", name: "w", extra: "x" }]))
    ]))
})

describe("frames that are not frames", () => {
  it.effect("invalid JSON is a WireDecodeError of kind invalid_json", () =>
    Effect.gen(function*() {
      const decoders: ReadonlyArray<(text: string) => Effect.Effect<unknown, WireDecodeError>> = [decodeServerFrame, decodeNodeFrame]
      for (const decoder of decoders) {
        const error = yield* Effect.flip(decoder("{\"v\":1,"))
        assert.strictEqual(error.kind, "invalid_json")
        assert.isUndefined(error.frameType)
      }
    }))
  it.effect("a JSON value that is not an object is kind not_an_object", () =>
    Effect.gen(function*() {
      for (const text of ["[]", "null", "1", "\"ping\""]) {
        const error = yield* Effect.flip(decodeServerFrame(text))
        assert.strictEqual(error.kind, "not_an_object")
      }
    }))
  it.effect("an unknown inbound type is kind unknown_type, with frameType set", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeServerFrame(JSON.stringify({ v: 1, type: "mystery.frame", x: 1 })))
      assert.strictEqual(error.kind, "unknown_type")
      assert.strictEqual(error.frameType, "mystery.frame")
      assert.include(error.message, "mystery.frame")
    }))
  it.effect("a missing or non-string type is kind unknown_type, without frameType", () =>
    Effect.gen(function*() {
      for (const frame of [{ v: 1 }, { v: 1, type: 7 }]) {
        const error = yield* Effect.flip(decodeServerFrame(JSON.stringify(frame)))
        assert.strictEqual(error.kind, "unknown_type")
        assert.isUndefined(error.frameType)
      }
    }))
  it.effect("an inherited name such as toString is not a frame type", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeNodeFrame(JSON.stringify({ v: 1, type: "toString" })))
      assert.strictEqual(error.kind, "unknown_type")
    }))
  it.effect("a frame nested deeper than 128 levels is an invalid_frame, not a stack overflow", () =>
    Effect.gen(function*() {
      const deep = (levels: number) => `{"v":1,"type":"reply","id":"r","ok":true,"data":${"[".repeat(levels)}${"]".repeat(levels)}}`
      yield* decodeServerFrame(deep(127))
      const error = yield* Effect.flip(decodeServerFrame(deep(100_000)))
      assert.strictEqual(error.kind, "invalid_frame")
      assert.strictEqual(error.frameType, "reply")
    }))
})
