import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { decodeNodeFrame, decodeServerFrame, encodeNodeFrame, encodeServerFrame, serverFrameTypes } from "../../src/wire/index.js"

const dir = new URL("../../../shared/fixtures/upstream-fleet-wire/", import.meta.url)

describe("wire smoke", () => {
  for (const file of readdirSync(dir)) {
    it.effect(`round-trips ${file}`, () =>
      Effect.gen(function*() {
        const text = readFileSync(new URL(file, dir), "utf8")
        const json = JSON.parse(text)
        const isServer = (serverFrameTypes as ReadonlyArray<string>).includes(json.type)
        const out = isServer
          ? yield* Effect.flatMap(decodeServerFrame(text), (f) => encodeServerFrame(f))
          : yield* Effect.flatMap(decodeNodeFrame(text), (f) => encodeNodeFrame(f))
        assert.deepStrictEqual(JSON.parse(out), json)
      }))
  }
})
