import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { program } from "../../examples/custom-host.js"

// The library example runs here, so it cannot rot: a real embedded engine, a real node session,
// a real DM through the engine, and the example's recording PtyHost instead of terminals.

describe("examples/custom-host.ts", () => {
  it.live("binds alice on a node of an embedded engine, and she would have seen the DM", () =>
    Effect.gen(function*() {
      const seen = yield* program
      assert.strictEqual(seen.agent, "alice")
      assert.include(seen.text, "Relay message from bob")
      assert.include(seen.text, "Hello alice, please review PR 42.")
    }), 60_000)
})
