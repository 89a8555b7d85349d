import { Effect } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import {
  decodeNodeFrame,
  decodeServerFrame,
  encodeNodeFrame,
  encodeServerFrame,
  nodeFrameTypes,
  serverFrameTypes
} from "../../src/wire/index.js"

const repoRoot = new URL("../../", import.meta.url)

/** The upstream broker's fixtures; `shared/` sits beside the repo (CI clones it there). */
export const upstreamFixtureDir = fileURLToPath(new URL("../shared/fixtures/upstream-fleet-wire/", repoRoot))
export const ownFixtureDir = fileURLToPath(new URL("fixtures/wire/", repoRoot))

export interface Fixture {
  readonly file: string
  readonly text: string
  readonly json: { readonly type: string } & Record<string, unknown>
}

/** Every `.json` file in `dir`, read at collection time so new files become new tests. */
export const readFixtures = (dir: string): ReadonlyArray<Fixture> =>
  readdirSync(dir)
    .filter((file) => file.endsWith(".json"))
    .sort()
    .map((file) => {
      const text = readFileSync(`${dir}/${file}`, "utf8")
      return { file, text, json: JSON.parse(text) }
    })

export const isServerType = (type: string): boolean => (serverFrameTypes as ReadonlyArray<string>).includes(type)
export const isNodeType = (type: string): boolean => (nodeFrameTypes as ReadonlyArray<string>).includes(type)

/** Decode with the union `type` belongs to, re-encode, and parse the text back to plain JSON. */
export const roundTrip = (text: string, type: string) =>
  isServerType(type)
    ? decodeServerFrame(text).pipe(Effect.flatMap(encodeServerFrame), Effect.map((out): unknown => JSON.parse(out)))
    : decodeNodeFrame(text).pipe(Effect.flatMap(encodeNodeFrame), Effect.map((out): unknown => JSON.parse(out)))
