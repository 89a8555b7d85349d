import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Json, JsonObject } from "../../wire/Json.js"
import { type ActionRow, actionJson, Actions, type Caller as ActionCaller, invocationDetailJson, invocationJson, type InvocationRow } from "../Actions.js"
import { agentByName, nodeByName } from "../directory.js"
import { EngineStore, now } from "../EngineStore.js"
import { badRequest, conflict, forbidden, notFound } from "../EngineError.js"
import { snowflake } from "../ids.js"
import { parseCapabilities } from "../rows.js"
import { authenticate, body, type Caller, created, handle, ok, param, requireCallerAgent, Required } from "./support.js"

// Spawn, release and actions over HTTP (spec §5.4, §5.5).

const clis = ["claude", "codex", "gemini", "aider", "goose", "opencode", "grok"] as const

const actionCaller = (caller: Caller): ActionCaller =>
  caller.agent === undefined
    ? { _tag: "workspace", workspaceId: caller.workspace.id, workspaceName: caller.workspace.name }
    : { _tag: "agent", agent: caller.agent }

const Spawn = Schema.Struct({
  name: Required,
  cli: Schema.String.pipe(Schema.filter((cli) => (clis as ReadonlyArray<string>).includes(cli) || `must be one of: ${clis.join(", ")}`)),
  task: Required,
  channel: Schema.optional(Schema.NullOr(Schema.String)),
  persona: Schema.optional(Schema.NullOr(Schema.String)),
  model: Schema.optional(Schema.NullOr(Schema.String)),
  metadata: Schema.optional(Schema.NullOr(JsonObject)),
  // Placement hints (spec §5.2), passed through in the input when given.
  target_node: Schema.optional(Schema.String),
  node: Schema.optional(Schema.String),
  target: Schema.optional(Schema.String),
  capability: Schema.optional(Schema.String)
})

/** `POST /v1/agents/spawn` (workspace key or agent token) → `invokeAction("spawn")`. */
const spawn = handle(Effect.gen(function*() {
  const actions = yield* Actions
  const caller = yield* authenticate("any")
  const input = yield* body(Spawn)
  const metadata: Record<string, Json> = { ...(input.metadata ?? {}) }
  if (input.model != null) metadata["model"] = input.model
  const hints: Record<string, Json> = {}
  for (const key of ["target_node", "node", "target", "capability"] as const) {
    if (input[key] !== undefined) hints[key] = input[key]!
  }
  const invocation = yield* actions.invoke(caller.workspace.id, "spawn", {
    name: input.name,
    cli: input.cli,
    task: input.task,
    channel: input.channel ?? null,
    persona: input.persona ?? null,
    model: input.model ?? null,
    metadata,
    ...hints
  }, actionCaller(caller))
  return created(invocationJson(invocation))
}))

const Release = Schema.Struct({
  name: Required,
  reason: Schema.optional(Schema.NullOr(Schema.String)),
  delete_agent: Schema.optional(Schema.NullOr(Schema.Boolean))
})

/** `POST /v1/agents/release` → `action.invoke {action:"release"}` to the agent's node. */
const release = handle(Effect.gen(function*() {
  const actions = yield* Actions
  const caller = yield* authenticate("any")
  const input = yield* body(Release)
  const invocation = yield* actions.release(caller.workspace.id, {
    name: input.name,
    reason: input.reason ?? null,
    delete_agent: input.delete_agent === true
  }, actionCaller(caller))
  return created(invocationJson(invocation))
}))

const Invoke = Schema.Struct({ input: Schema.optional(Schema.NullOr(JsonObject)) })

/** `POST /v1/actions/:name/invoke` (agent token; a workspace key is 403 agent_token_required). */
const invoke = handle(Effect.gen(function*() {
  const actions = yield* Actions
  const caller = yield* authenticate("any")
  const agent = yield* requireCallerAgent(caller)
  const input = yield* body(Invoke)
  const invocation = yield* actions.invoke(caller.workspace.id, yield* param("name"), input.input ?? {}, { _tag: "agent", agent })
  return created(invocationJson(invocation))
}))

const requireInvocation = (workspaceId: string) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const name = yield* param("name")
    const id = yield* param("id")
    const [invocation] = yield* sql<InvocationRow>`SELECT * FROM invocations
      WHERE id = ${id} AND workspace_id = ${workspaceId} AND action_name = ${name}`
    if (invocation === undefined) return yield* Effect.fail(notFound("invocation_not_found", `Invocation "${id}" not found`))
    return invocation
  })

const getInvocation = handle(Effect.gen(function*() {
  const caller = yield* authenticate("any")
  return ok(invocationDetailJson(yield* requireInvocation(caller.workspace.id)))
}))

const Complete = Schema.Struct({ output: Schema.optional(Json), error: Schema.optional(Schema.String) })

const complete = handle(Effect.gen(function*() {
  const actions = yield* Actions
  const caller = yield* authenticate("agent")
  const input = yield* body(Complete)
  const invocation = yield* requireInvocation(caller.workspace.id)
  const done = yield* actions.completeByAgent(
    invocation,
    caller.agent!,
    input.error === undefined ? { output: input.output ?? null } : { error: input.error }
  )
  return ok(invocationDetailJson(done))
}))

const RegisterAction = Schema.Struct({
  name: Required,
  description: Schema.optional(Schema.NullOr(Schema.String)),
  handler_agent: Schema.optional(Schema.NullOr(Schema.String)),
  handler_node: Schema.optional(Schema.NullOr(Schema.String)),
  input_schema: Schema.optional(Schema.NullOr(JsonObject)),
  output_schema: Schema.optional(Schema.NullOr(JsonObject)),
  available_to: Schema.optional(Schema.NullOr(Schema.Array(Schema.String)))
})

/** `POST /v1/actions`: an agent- or node-hosted action (exactly one handler). */
const registerAction = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const caller = yield* authenticate("any")
  const input = yield* body(RegisterAction)
  const byAgent = input.handler_agent ?? null
  const byNode = input.handler_node ?? null
  if ((byAgent === null) === (byNode === null)) {
    return yield* Effect.fail(badRequest("exactly one of handler_agent / handler_node is required"))
  }
  let handlerAgentId: string | null = null
  let handlerNodeId: string | null = null
  if (byAgent !== null) {
    const agent = yield* agentByName(caller.workspace.id, byAgent)
    if (agent === undefined) return yield* Effect.fail(notFound("agent_not_found", `Agent "${byAgent}" not found`))
    if (caller.agent !== undefined && caller.agent.id !== agent.id) {
      return yield* Effect.fail(forbidden("forbidden", "An agent may only register actions it handles itself"))
    }
    handlerAgentId = agent.id
  } else {
    const node = yield* nodeByName(caller.workspace.id, byNode!)
    if (node === undefined) return yield* Effect.fail(notFound("node_not_found", `Node "${byNode}" not found`))
    if (!parseCapabilities(node.capabilities).some((c) => c.name === input.name)) {
      return yield* Effect.fail(conflict("capability_mismatch", `Node "${node.name}" does not provide ${input.name}`))
    }
    handlerNodeId = node.id
  }
  const [existing] = yield* sql<ActionRow>`SELECT * FROM actions WHERE workspace_id = ${caller.workspace.id} AND name = ${input.name}`
  if (existing !== undefined) {
    return yield* Effect.fail(conflict("action_already_exists", `Action "${input.name}" already exists`))
  }
  const row: ActionRow = {
    id: `act_${snowflake()}`,
    workspace_id: caller.workspace.id,
    name: input.name,
    description: input.description ?? null,
    handler_agent_id: handlerAgentId,
    handler_node_id: handlerNodeId,
    input_schema: JSON.stringify(input.input_schema ?? {}),
    output_schema: JSON.stringify(input.output_schema ?? {}),
    available_to: input.available_to == null ? null : JSON.stringify(input.available_to),
    is_active: 1,
    created_at: yield* now
  }
  yield* sql`INSERT INTO actions ${sql.insert(row)}`
  return created(actionJson(row))
}))

const listActions = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const caller = yield* authenticate("any")
  const rows = yield* sql<ActionRow>`SELECT * FROM actions WHERE workspace_id = ${caller.workspace.id} ORDER BY name`
  return ok(rows.map(actionJson))
}))

export const routes = HttpRouter.empty.pipe(
  HttpRouter.post("/v1/agents/spawn", spawn),
  HttpRouter.post("/v1/agents/release", release),
  HttpRouter.post("/v1/actions", registerAction),
  HttpRouter.get("/v1/actions", listActions),
  HttpRouter.post("/v1/actions/:name/invoke", invoke),
  HttpRouter.get("/v1/actions/:name/invocations/:id", getInvocation),
  HttpRouter.post("/v1/actions/:name/invocations/:id/complete", complete)
)
