import { assert, describe, it } from "@effect/vitest"
import { combineAcks, type OutboxFrame } from "../../src/broker/nodeOutbox.js"

// Acks are cumulative: within one outbox batch an agent's acks combine into its last one; every
// other frame, and the order of what is kept, is untouched.

const ack = (agent: string, upToSeq: number): OutboxFrame => ({ text: `ack ${agent} ${upToSeq}`, ack: { agent, upToSeq } })
const other = (text: string): OutboxFrame => ({ text })
const texts = (frames: ReadonlyArray<OutboxFrame>) => frames.map((frame) => frame.text)

describe("node outbox: combined acks", () => {
  it("keeps each agent's last ack where it stands, and every other frame in order", () => {
    const batch = [ack("a", 1), other("register x"), ack("b", 4), ack("a", 2), other("result"), ack("a", 3)]
    assert.deepStrictEqual(texts(combineAcks(batch)), ["register x", "ack b 4", "result", "ack a 3"])
  })

  it("never drops an ack that a later one does not cover", () => {
    assert.deepStrictEqual(texts(combineAcks([ack("a", 5), ack("a", 3)])), ["ack a 5", "ack a 3"])
    assert.deepStrictEqual(texts(combineAcks([ack("a", 2), ack("a", 2)])), ["ack a 2"])
    assert.deepStrictEqual(texts(combineAcks([])), [])
  })
})
