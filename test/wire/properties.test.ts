import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, FastCheck, Schema, SchemaAST } from "effect"
import * as Wire from "../../src/wire/index.js"

const fastCheck = { fastCheck: { numRuns: 200 } }

/** The `type` literal of a frame schema. */
const frameType = (schema: Schema.Schema.Any): string => {
  const field = SchemaAST.getPropertySignatures(schema.ast).find((signature) => signature.name === "type")
  if (field === undefined || !SchemaAST.isLiteral(field.type) || typeof field.type.literal !== "string") {
    throw new Error(`a frame schema without a literal type: ${String(schema.ast)}`)
  }
  return field.type.literal
}

// Derived from the Schema unions themselves, so a frame type added there is tested here at once.
const tableOf = (union: { readonly members: ReadonlyArray<Schema.Schema.Any> }) =>
  union.members.map((member) => [frameType(member), member as Schema.Schema<any, any>] as const)

const nodeFrames = tableOf(Wire.NodeToServer)
const serverFrames = tableOf(Wire.ServerToNode)

describe("every frame type round-trips: an arbitrary value encodes, then decodes, to the same value", () => {
  it("the unions and the codecs' type lists name the same frame types", () => {
    assert.sameMembers(nodeFrames.map(([type]) => type), [...Wire.nodeFrameTypes])
    assert.sameMembers(serverFrames.map(([type]) => type), [...Wire.serverFrameTypes])
    assert.strictEqual(new Set([...nodeFrames, ...serverFrames].map(([type]) => type)).size, nodeFrames.length + serverFrames.length)
  })

  for (const [type, schema] of nodeFrames) {
    it.prop(`${type} (node → server)`, [schema], ([frame]) => {
      assert.strictEqual(frame.type, type)
      const decoded = Effect.runSync(Effect.flatMap(Wire.encodeNodeFrame(frame), Wire.decodeNodeFrame))
      assert.deepStrictEqual(decoded, frame)
    }, fastCheck)
  }

  for (const [type, schema] of serverFrames) {
    it.prop(`${type} (server → node)`, [schema], ([frame]) => {
      assert.strictEqual(frame.type, type)
      const decoded = Effect.runSync(Effect.flatMap(Wire.encodeServerFrame(frame), Wire.decodeServerFrame))
      assert.deepStrictEqual(decoded, frame)
    }, fastCheck)
  }
})

/** Decoding ends in success or a `WireDecodeError` failure: never a defect or a throw. */
const assertTotal = (decode: (text: string) => Effect.Effect<unknown, Wire.WireDecodeError>, text: string, mustFail: boolean) => {
  const exit = Effect.runSyncExit(Effect.suspend(() => decode(text)))
  if (Exit.isSuccess(exit)) {
    assert.isFalse(mustFail, `decoded junk: ${text}`)
    return
  }
  assert.isFalse(Cause.isDie(exit.cause), Cause.pretty(exit.cause))
  const failure = Cause.failureOption(exit.cause)
  assert.isTrue(failure._tag === "Some" && failure.value instanceof Wire.WireDecodeError, Cause.pretty(exit.cause))
}

const decoders: ReadonlyArray<readonly [string, (text: string) => Effect.Effect<unknown, Wire.WireDecodeError>]> = [
  ["decodeServerFrame", Wire.decodeServerFrame],
  ["decodeNodeFrame", Wire.decodeNodeFrame]
]

const allTypes = [...Wire.nodeFrameTypes, ...Wire.serverFrameTypes, "mystery"]

/** Objects that look like frames (a known `type`, maybe `v: 1`) with junk fields, to reach the schemas. */
const frameLikeJunk = FastCheck.tuple(
  FastCheck.dictionary(FastCheck.string(), FastCheck.jsonValue(), { maxKeys: 6 }),
  FastCheck.constantFrom(...allTypes),
  FastCheck.constantFrom<ReadonlyArray<unknown>>([1], [2], ["1"], [])
).map(([fields, type, v]) => JSON.stringify({ ...fields, type, ...(v.length === 0 ? {} : { v: v[0] }) }))

describe("provider-era reply data round-trips (relaycast 6)", () => {
  for (const [name, schema] of [
    ["NodeRegisterReplyData", Wire.NodeRegisterReplyData],
    ["AgentRegisterReplyData", Wire.AgentRegisterReplyData],
    ["ProviderIdentity", Wire.ProviderIdentity]
  ] as const) {
    it.prop(name, [schema as Schema.Schema<any, any>], ([value]) => {
      const json = JSON.parse(JSON.stringify(Schema.encodeSync(schema as Schema.Schema<any, any>)(value)))
      assert.deepStrictEqual(Schema.decodeUnknownSync(schema as Schema.Schema<any, any>)(json), value)
    }, fastCheck)
  }

  it.prop("capabilityKind: spawn, spawn:* and release are capacity unless a kind says otherwise", [Wire.FleetCapability], ([capability]) => {
    const kind = Wire.capabilityKind(capability)
    if (capability.kind === "action" || capability.kind === "capacity") assert.strictEqual(kind, capability.kind)
    else assert.strictEqual(kind, capability.name === "spawn" || capability.name === "release" || capability.name.startsWith("spawn:") ? "capacity" : "action")
  }, fastCheck)
})

describe("arbitrary junk decodes to a WireDecodeError, never a throw", () => {
  for (const [name, decode] of decoders) {
    it.prop(`${name}: JSON values without a frame type`, [FastCheck.jsonValue()], ([json]) =>
      assertTotal(decode, JSON.stringify(json), !(typeof json === "object" && json !== null && "type" in json)), fastCheck)

    it.prop(`${name}: anything stringified`, [FastCheck.anything()], ([value]) =>
      assertTotal(decode, String(JSON.stringify(value)), false), fastCheck)

    it.prop(`${name}: arbitrary text`, [FastCheck.string({ unit: "binary" })], ([text]) =>
      assertTotal(decode, text, false), fastCheck)

    it.prop(`${name}: frame-like objects with junk fields`, [frameLikeJunk], ([text]) =>
      assertTotal(decode, text, false), fastCheck)
  }
})
