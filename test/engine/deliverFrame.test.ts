import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Deliver, encodeServerFrame } from "../../src/wire/index.js"
import { deliverText } from "../../src/engine/deliverFrame.js"

// The engine's fast `deliver` serialiser must be byte-identical to the wire codec's encoding.

describe("deliverText", () => {
  it.effect.prop("equals encodeServerFrame for any deliver frame", [Deliver], ([frame]) =>
    Effect.gen(function*() {
      const { payload, ...envelope } = frame
      const expected = yield* encodeServerFrame(frame)
      assert.strictEqual(deliverText(envelope, JSON.stringify(payload)), expected)
    }), { fastCheck: { numRuns: 300 } })
})
