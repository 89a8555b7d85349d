import { Schema } from "effect"

// Request bodies of the control API. Unknown fields are ignored (upstream clients send many we do
// not use); a field we read must have the right type, and `null` counts as absent.

const nullable = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))

const Strings = Schema.Array(Schema.String)

const unsupportedHarnessId = Schema.Never.annotations({
  message: () => "harness ids are not supported: give cli (and args) instead"
})

/** `POST /api/spawn`. camelCase and snake_case aliases are both accepted where upstream accepts them. */
export const SpawnBody = Schema.Struct({
  name: Schema.String,
  cli: nullable(Schema.String),
  model: nullable(Schema.String),
  args: nullable(Strings),
  task: nullable(Schema.String),
  channels: nullable(Strings),
  cwd: nullable(Schema.String),
  env: nullable(Schema.Record({ key: Schema.String, value: Schema.String })),
  transport: nullable(Schema.Literal("pty")),
  runtime: nullable(Schema.Literal("pty")),
  // Upstream rejects these (a harness id needs the harness registry, which this broker has not).
  harnessId: Schema.optional(unsupportedHarnessId),
  harness_id: Schema.optional(unsupportedHarnessId)
}).annotations({ identifier: "SpawnBody" })
export type SpawnBody = typeof SpawnBody.Type

/** `POST /api/input/{name}`: raw bytes for the terminal. */
export const InputBody = Schema.Struct({
  data: Schema.String
}).annotations({ identifier: "InputBody" })

const Dimension = Schema.Int.pipe(Schema.between(1, 10_000))

/** `POST /api/resize/{name}`. */
export const ResizeBody = Schema.Struct({
  rows: Dimension,
  cols: Dimension
}).annotations({ identifier: "ResizeBody" })

/** `GET /ws?sinceSeq=N` and `GET /api/spawned/{name}/snapshot?format=…`. */
export const SinceSeq = Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative())
export const SnapshotFormat = Schema.Literal("plain", "ansi")
