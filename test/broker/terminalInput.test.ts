import { assert, describe, it } from "@effect/vitest"
import {
  defaultInjectTimings,
  enter,
  injectionSteps,
  pasteEnd,
  pasteStart,
  sanitize,
  steerKeys
} from "../../src/broker/terminalInput.js"

const writes = (steps: ReturnType<typeof injectionSteps>) =>
  steps.flatMap((step) => step._tag === "Write" ? [step.data] : [])

describe("terminalInput", () => {
  it("sanitize keeps text, newlines and tabs", () => {
    assert.strictEqual(sanitize("hello\tworld\nsecond line ✓ ünï"), "hello\tworld\nsecond line ✓ ünï")
  })

  it("sanitize removes what could close a paste, press keys or move the cursor", () => {
    assert.strictEqual(sanitize("a\x1b[201~b"), "a[201~b")
    assert.strictEqual(sanitize("stop\x03now\x04"), "stopnow")
    assert.strictEqual(sanitize("\x1b]0;title\x07x"), "]0;titlex")
    assert.strictEqual(sanitize("up\x1b[Adown\x1bOB"), "up[AdownOB")
    assert.strictEqual(sanitize("del\x7f\x08ete"), "delete")
    assert.strictEqual(sanitize("c1\x9b31m\x9d"), "c131m")
    assert.strictEqual(sanitize("nul\x00byte"), "nulbyte")
  })

  it("sanitize turns CR and CRLF into newlines, so no Enter is pressed mid-message", () => {
    assert.strictEqual(sanitize("one\r\ntwo\rthree"), "one\ntwo\nthree")
  })

  it("no control byte but \\n and \\t survives sanitize", () => {
    let all = ""
    for (let code = 0; code < 0x100; code++) all += String.fromCharCode(code)
    const kept = [...sanitize(all)].filter((char) => char < " " || (char >= "\x7f" && char <= "\x9f"))
    assert.deepStrictEqual([...new Set(kept)].sort(), ["\t", "\n"])
  })

  it("paste: bracketed paste around the sanitised text, then Enter", () => {
    const steps = injectionSteps("hi\x1b[201~\x03", { input: "paste", steer: false })
    assert.deepStrictEqual(writes(steps), [`${pasteStart}hi[201~${pasteEnd}`, enter])
  })

  it("type: the raw text, a settle, then Enter", () => {
    const steps = injectionSteps("echo hi", { input: "type", steer: false })
    assert.deepStrictEqual(steps, [
      { _tag: "Write", data: "echo hi" },
      { _tag: "Pause", millis: defaultInjectTimings.typeSettleMillis },
      { _tag: "Write", data: "\r" }
    ])
  })

  it("steer: ESC ESC and a pause come first", () => {
    const steps = injectionSteps("now", { input: "paste", steer: true })
    assert.deepStrictEqual(steps[0], { _tag: "Write", data: steerKeys })
    assert.deepStrictEqual(steps[1], { _tag: "Pause", millis: defaultInjectTimings.steerPauseMillis })
    assert.deepStrictEqual(writes(steps).slice(1), [`${pasteStart}now${pasteEnd}`, enter])
  })

  it("zero pauses are left out, and the default delays stay at a few ms", () => {
    const steps = injectionSteps("x", { input: "type", steer: true }, {
      typeSettleMillis: 0,
      pasteSettleMillis: 0,
      steerPauseMillis: 0
    })
    assert.deepStrictEqual(writes(steps), [steerKeys, "x", enter])
    assert.strictEqual(steps.length, 3)
    // What an injection with the defaults actually waits, from its steps (upstream waited 183 ms).
    const paused = (input: "type" | "paste") =>
      injectionSteps("x", { input, steer: false }).reduce((total, step) => total + (step._tag === "Pause" ? step.millis : 0), 0)
    assert.deepStrictEqual([paused("type"), paused("paste")].map((millis) => millis <= 20), [true, true])
  })
})
