import { assert, describe, it } from "@effect/vitest"
import { makeKeyFilter } from "../../src/cli/detachKeys.js"
import { inputOf } from "../../src/broker/http/inputStreamRoute.js"

describe("attach keys", () => {
  it("Ctrl-] then d detaches, also split across reads; what came before it is sent", () => {
    assert.deepStrictEqual(makeKeyFilter().feed("ls\r\x1dd"), { send: "ls\r", detach: true })
    const split = makeKeyFilter()
    assert.deepStrictEqual(split.feed("a\x1d"), { send: "a", detach: false })
    assert.deepStrictEqual(split.feed("d"), { send: "", detach: true })
  })

  it("Ctrl-] twice sends one; Ctrl-] before another key sends both", () => {
    assert.deepStrictEqual(makeKeyFilter().feed("\x1d\x1dx"), { send: "\x1dx", detach: false })
    assert.deepStrictEqual(makeKeyFilter().feed("\x1dq"), { send: "\x1dq", detach: false })
  })
})

describe("input stream frames", () => {
  it("raw text, binary and pty_input frames give the bytes; a bad pty_input frame is refused", () => {
    assert.deepStrictEqual(inputOf("ls\r"), { data: "ls\r" })
    assert.deepStrictEqual(inputOf(new TextEncoder().encode("é")), { data: "é" })
    assert.deepStrictEqual(inputOf(JSON.stringify({ type: "pty_input", data: "x" })), { data: "x" })
    assert.deepStrictEqual(inputOf("{not json"), { data: "{not json" })
    assert.deepStrictEqual(inputOf("{\"a\":1}"), { data: "{\"a\":1}" })
    assert.isTrue("invalid" in inputOf(JSON.stringify({ type: "pty_input", data: 3 })))
  })
})
