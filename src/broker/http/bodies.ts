import * as Schema from "effect/Schema"

// Request bodies of the control API. Unknown fields are ignored (upstream clients send many we do
// not use); a field we read must have the right type, and `null` counts as absent.

const nullable = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))

const Strings = Schema.Array(Schema.String)

const Count = Schema.Int.pipe(Schema.nonNegative())

/** `restartPolicy` (AgentSupervisor): every field optional, unknown fields ignored. */
export const RestartPolicyBody = Schema.Struct({
  enabled: nullable(Schema.Boolean),
  max_restarts: nullable(Count),
  cooldown_ms: nullable(Count),
  max_consecutive_failures: nullable(Count)
}).annotations({ identifier: "RestartPolicy" })

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
  transport: nullable(Schema.Literal("pty", "headless")),
  runtime: nullable(Schema.Literal("pty", "headless")),
  // Kept with the agent and shown in `/api/spawned`, as upstream does.
  team: nullable(Schema.String),
  // Sent by harness-driver 9.1.6: restartPolicy (AgentSupervisor), idleThresholdSecs, spawnMode and
  // exitAfterTask (AgentIdleness) have their behaviour; the others are accepted.
  skipRelayPrompt: nullable(Schema.Boolean),
  restartPolicy: nullable(RestartPolicyBody),
  restart_policy: nullable(RestartPolicyBody),
  idleThresholdSecs: nullable(Schema.Number),
  spawnMode: nullable(Schema.Literal("interactive", "task_exit", "single_shot")),
  exitAfterTask: nullable(Schema.Boolean),
  agentToken: nullable(Schema.String),
  shadowOf: nullable(Schema.String),
  shadowMode: nullable(Schema.String),
  continueFrom: nullable(Schema.String),
  harnessConfig: nullable(Schema.Unknown),
  agentResultSchema: nullable(Schema.Unknown),
  agent_result_schema: nullable(Schema.Unknown),
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
