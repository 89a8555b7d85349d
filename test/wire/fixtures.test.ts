import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import {
  AgentRegisterReplyData,
  decodeNodeFrame,
  decodeServerFrame,
  nodeFrameTypes,
  serverFrameTypes,
  type WireDecodeError
} from "../../src/wire/index.js"
import { type Fixture, isNodeType, isServerType, ownFixtureDir, readFixtures, roundTrip, upstreamFixtureDir } from "./support.js"

const allFrameTypes: ReadonlyArray<string> = [...nodeFrameTypes, ...serverFrameTypes]

/** `*.extra-field.json`: top-level keys prefixed `x_` are unknown to the codec and dropped on the way through. */
const isExtraFieldFixture = (file: string) => file.endsWith(".extra-field.json")
const extraKeys = (fixture: Fixture) => Object.keys(fixture.json).filter((key) => key.startsWith("x_"))
const withoutExtraKeys = (fixture: Fixture) =>
  Object.fromEntries(Object.entries(fixture.json).filter(([key]) => !key.startsWith("x_")))

/** The fixture decodes with the union its `type` belongs to, and the other union does not know that type. */
const assertRightUnion = (fixture: Fixture) =>
  Effect.gen(function*() {
    const { type } = fixture.json
    assert.isTrue(isServerType(type) || isNodeType(type), `${fixture.file}: unknown frame type ${type}`)
    const server = isServerType(type)
    const decodedType = server ? (yield* decodeServerFrame(fixture.text)).type : (yield* decodeNodeFrame(fixture.text)).type
    assert.strictEqual(decodedType, type)
    const otherUnion: Effect.Effect<unknown, WireDecodeError> = server ? decodeNodeFrame(fixture.text) : decodeServerFrame(fixture.text)
    const rejected = yield* Effect.flip(otherUnion)
    assert.strictEqual(rejected.kind, "unknown_type")
    assert.strictEqual(rejected.frameType, type)
  })

describe("upstream fleet-wire fixtures (../shared/fixtures/upstream-fleet-wire)", () => {
  const fixtures = readFixtures(upstreamFixtureDir)

  it("are present", () => {
    assert.isAbove(fixtures.length, 0)
  })

  for (const fixture of fixtures) {
    it.effect(`${fixture.file} decodes with its union and re-encodes to the same JSON`, () =>
      Effect.gen(function*() {
        yield* assertRightUnion(fixture)
        assert.deepStrictEqual(yield* roundTrip(fixture.text, fixture.json.type), fixture.json)
      }))
  }

  it.effect("reply.agent_register.json data is AgentRegisterReplyData", () =>
    Effect.gen(function*() {
      const fixture = fixtures.find((f) => f.file === "reply.agent_register.json")
      assert.isDefined(fixture)
      const frame = yield* decodeServerFrame(fixture!.text)
      assert.strictEqual(frame.type, "reply")
      const data = yield* Schema.decodeUnknown(AgentRegisterReplyData)(frame.type === "reply" ? frame.data : undefined)
      assert.deepStrictEqual(data, {
        agent_id: "agt_01J7FLEET000000000000101",
        token: "at_live_0123456789abcdef01234567",
        name: "codex-builder-1"
      })
    }))
})

describe("project fixtures (fixtures/wire)", () => {
  const fixtures = readFixtures(ownFixtureDir)

  it("cover every frame type", () => {
    const covered = new Set(fixtures.map((f) => f.json.type))
    assert.deepStrictEqual(allFrameTypes.filter((type) => !covered.has(type)), [])
  })

  it("include the edge cases: seq 0 fan-out deliver, action.result with output null, a deliver with an extra field", () => {
    assert.isTrue(fixtures.some((f) => f.json.type === "deliver" && f.json.seq === 0))
    assert.isTrue(fixtures.some((f) => f.json.type === "action.result" && f.json.output === null))
    assert.isTrue(fixtures.some((f) => f.json.type === "deliver" && isExtraFieldFixture(f.file)))
  })

  for (const fixture of fixtures.filter((f) => !isExtraFieldFixture(f.file))) {
    it.effect(`${fixture.file} decodes with its union and re-encodes to the same JSON`, () =>
      Effect.gen(function*() {
        yield* assertRightUnion(fixture)
        assert.deepStrictEqual(yield* roundTrip(fixture.text, fixture.json.type), fixture.json)
      }))
  }

  for (const fixture of fixtures.filter((f) => isExtraFieldFixture(f.file))) {
    it.effect(`${fixture.file} decodes, and re-encodes without its unknown x_ keys`, () =>
      Effect.gen(function*() {
        assert.isAbove(extraKeys(fixture).length, 0, `${fixture.file} must carry at least one x_ key`)
        yield* assertRightUnion(fixture)
        assert.deepStrictEqual(yield* roundTrip(fixture.text, fixture.json.type), withoutExtraKeys(fixture))
      }))
  }

  it.effect("reply.agent_register.json data is AgentRegisterReplyData, with delivery_ack_seq", () =>
    Effect.gen(function*() {
      const fixture = fixtures.find((f) => f.file === "reply.agent_register.json")
      assert.isDefined(fixture)
      const frame = yield* decodeServerFrame(fixture!.text)
      const data = yield* Schema.decodeUnknown(AgentRegisterReplyData)(frame.type === "reply" ? frame.data : undefined)
      assert.deepStrictEqual(data, { agent_id: "2989001122334455", name: "worker-1", token: "at_live_fixture_not_a_secret", delivery_ack_seq: 6 })
    }))
})
