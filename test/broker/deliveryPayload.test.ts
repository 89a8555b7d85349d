import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { ackOnlyTypes, classify, extractFields, injectTypes } from "../../src/broker/deliveryPayload.js"
import type { Json } from "../../src/wire/Json.js"

const fixture = JSON.parse(
  readFileSync(new URL("../../../shared/fixtures/upstream-fleet-wire/deliver.json", import.meta.url), "utf8")
) as { readonly payload: Json; readonly agent: string }

describe("classify (broker-spec §4.5)", () => {
  it("injects every message, thread, dm and group_dm alias, action results, and the empty type", () => {
    const expected = [
      "action.completed", "action.failed", "action.denied",
      "message.created", "message.received", "message.new", "message.sent", "message.delivered",
      "thread.reply", "thread.message.created", "thread.message.sent",
      "dm.received", "dm.created", "dm.new", "dm.sent", "dm.message.created",
      "direct_message.received", "direct_message.created", "direct_message.new", "direct_message.sent",
      "group_dm.received", "group_dm.created", "group_dm.new", "group_dm.sent", "group_dm.message.created",
      ""
    ]
    assert.strictEqual(injectTypes.size, expected.length)
    for (const type of expected) {
      assert.deepStrictEqual(classify({ type, data: {} }), { _tag: "Inject", type })
    }
  })

  it("acks receipts without injecting them", () => {
    assert.deepStrictEqual([...ackOnlyTypes].sort(), ["message.reacted", "message.read"])
    assert.deepStrictEqual(classify({ type: "message.reacted", data: {} }), { _tag: "AckOnly", type: "message.reacted" })
    assert.deepStrictEqual(classify({ type: "message.read", data: {} }), { _tag: "AckOnly", type: "message.read" })
  })

  it("treats a flat payload without a type as a legacy message", () => {
    assert.deepStrictEqual(classify({ text: "hi", from: "alice" }), { _tag: "Inject", type: "" })
  })

  it("reports unknown types as unsupported", () => {
    assert.deepStrictEqual(classify({ type: "agent.online" }), { _tag: "Unsupported", type: "agent.online" })
    assert.deepStrictEqual(classify({ type: "Message.Created" }), { _tag: "Unsupported", type: "Message.Created" })
  })

  it("reports payloads that are not objects, or whose type is not a string, as undecodable", () => {
    for (const payload of ["hello", 42, null, [1, 2], true] as ReadonlyArray<Json>) {
      assert.strictEqual(classify(payload)._tag, "Undecodable")
    }
    assert.strictEqual(classify({ type: 7 })._tag, "Undecodable")
    assert.strictEqual(classify({ type: null })._tag, "Undecodable")
  })
})

describe("extractFields (broker-spec §4.6)", () => {
  it("reads the node data envelope: agent_name beats from_name, the channel becomes the target, the thread id is kept", () => {
    const fields = extractFields({
      type: "message.created",
      data: {
        text: "hello",
        agent_name: "alice",
        from_name: "ignored",
        channel_name: "general",
        thread_id: "thr-9"
      }
    }, "bob")
    assert.deepStrictEqual(fields, { body: "hello", from: "alice", target: "#general", threadId: "thr-9" })
  })

  it("falls back to from_name and to a direct message to the recipient", () => {
    const fields = extractFields({ type: "dm.received", data: { text: "ping", from_name: "carol", to: "bob" } }, "bob")
    assert.deepStrictEqual(fields, { body: "ping", from: "carol", target: "bob" })
  })

  it("supports the legacy flat payload", () => {
    const fields = extractFields({ text: "  hi there  ", from: "dave", target: "#ops", thread_id: "t1" }, "bob")
    assert.deepStrictEqual(fields, { body: "hi there", from: "dave", target: "#ops", threadId: "t1" })
  })

  it("reads the upstream deliver fixture; its null thread_id is skipped", () => {
    const fields = extractFields(fixture.payload, fixture.agent)
    assert.deepStrictEqual(fields, {
      body: "Please run the fleet fixture tests.",
      from: "orchestrator",
      target: "#general"
    })
  })

  it("takes the first hit in pointer order, skipping blanks, objects and booleans; numbers count as text", () => {
    const fields = extractFields({
      data: { text: "   ", agent_name: { nested: true }, thread_id: null, parent_id: 123 },
      text: "from text",
      sender: false,
      author: "erin"
    }, "bob")
    assert.deepStrictEqual(fields, { body: "from text", from: "erin", target: "bob", threadId: "123" })
  })

  it("keeps a channel that already has its #", () => {
    assert.strictEqual(extractFields({ channel: "#dev", text: "x" }, "bob").target, "#dev")
  })

  it("uses the action output or error, else the whole payload as compact JSON", () => {
    assert.strictEqual(extractFields({ type: "action.failed", data: { error: "boom" } }, "bob").body, "boom")
    const payload = { type: "action.completed", data: { output: { spawned: true } } }
    assert.strictEqual(extractFields(payload, "bob").body, JSON.stringify(payload))
    assert.strictEqual(extractFields(payload, "bob").from, "relaycast")
  })

  it("reads a numeric priority (u8 only), else a label", () => {
    assert.strictEqual(extractFields({ data: { priority: 3 } }, "b").priority, 3)
    assert.strictEqual(extractFields({ priority: 300, metadata: { priority: "URGENT" } }, "b").priority, 4)
    assert.strictEqual(extractFields({ data: { metadata: { priority: "low" } } }, "b").priority, 1)
    assert.strictEqual(extractFields({ data: { metadata: { priority: "whenever" } } }, "b").priority, undefined)
  })
})
