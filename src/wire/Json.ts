import * as Schema from "effect/Schema"

/** A JSON value: what `JSON.parse` can produce, with finite numbers only. */
export type Json =
  | null
  | boolean
  | number
  | string
  | ReadonlyArray<Json>
  | { readonly [key: string]: Json }

export type JsonObject = { readonly [key: string]: Json }

// JSON text has no -0 (`JSON.stringify(-0)` is "0"), so generated values leave it out to round-trip exactly.
const JsonNumber = Schema.Finite.annotations({
  arbitrary: () => (fc) => fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => (n === 0 ? 0 : n))
})

// Object decoding assigns keys, and assigning `__proto__` replaces the result's prototype instead of
// keeping the key: such an object cannot round-trip, so the key is refused (in every parse mode,
// hence the local `onExcessProperty: "error"`, which only ever concerns this key).
const JsonKey = Schema.String.pipe(Schema.filter((key) => key !== "__proto__"))
  .annotations({ identifier: "JsonKey", description: "any string but \"__proto__\"" })

const jsonRecord = (value: Schema.Schema<Json>) =>
  Schema.Record({ key: JsonKey, value }).annotations({ parseOptions: { onExcessProperty: "error" } })

export const Json: Schema.Schema<Json> = Schema.suspend(
  (): Schema.Schema<Json> =>
    Schema.Union(
      Schema.Null,
      Schema.Boolean,
      JsonNumber,
      Schema.String,
      Schema.Array(Json),
      jsonRecord(Json)
    )
).annotations({ identifier: "Json" })

export const JsonObject: Schema.Schema<JsonObject> = jsonRecord(Json).annotations({ identifier: "JsonObject" })
