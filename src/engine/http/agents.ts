import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Json, JsonObject } from "../../wire/Json.js"
import { agentByName, joinGeneral, newAgentRow, requireAgent, rotateAgentToken } from "../directory.js"
import { EngineStore, now } from "../EngineStore.js"
import { badRequest, conflict } from "../EngineError.js"
import { newAgentToken, sha256Hex } from "../ids.js"
import { agentJson, type AgentRow, iso } from "../rows.js"
import { authenticate, body, created, handle, ok, okBare, param, query, Required } from "./support.js"

const CreateAgent = Schema.Struct({
  name: Required,
  type: Schema.optional(Schema.Literal("agent", "human", "system")),
  persona: Schema.optional(Schema.NullOr(Schema.String)),
  metadata: Schema.optional(Schema.NullOr(JsonObject)),
  skills: Schema.optional(Schema.NullOr(Json)),
  capabilities: Schema.optional(Schema.NullOr(JsonObject))
})

const statuses = new Set(["active", "idle", "blocked", "waiting", "offline"])

/** `POST /v1/agents` (workspace key): an HTTP identity, `active` + `self_connected`, in #general. */
const createAgent = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace } = yield* authenticate("workspace")
  const input = yield* body(CreateAgent)
  if ((yield* agentByName(workspace.id, input.name)) !== undefined) {
    return yield* Effect.fail(conflict("agent_already_exists", `Agent "${input.name}" already exists in this workspace`))
  }
  const token = newAgentToken()
  const at = yield* now
  const agent = newAgentRow(at, {
    workspace_id: workspace.id,
    name: input.name,
    type: input.type ?? "agent",
    status: "active",
    token_hash: sha256Hex(token),
    persona: input.persona ?? null,
    metadata: JSON.stringify(input.metadata ?? {}),
    capabilities: input.capabilities === undefined || input.capabilities === null ? null : JSON.stringify(input.capabilities)
  })
  yield* sql`INSERT INTO agents ${sql.insert(agent)}`
  yield* joinGeneral(workspace.id, agent.id)
  return created({
    id: agent.id,
    name: agent.name,
    handle: `@${agent.name}`,
    token,
    status: agent.status,
    capabilities: input.capabilities ?? null,
    created_at: iso(at),
    workspace_id: workspace.id
  })
}))

const listAgents = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace } = yield* authenticate("any")
  const params = yield* query
  const status = params.get("status") ?? "all"
  if (status !== "all" && !statuses.has(status === "online" ? "active" : status)) {
    return yield* Effect.fail(badRequest("status must be one of: active, idle, blocked, waiting, offline, all"))
  }
  const rows = status === "all"
    ? yield* sql<AgentRow>`SELECT * FROM agents WHERE workspace_id = ${workspace.id} ORDER BY name`
    : yield* sql<AgentRow>`SELECT * FROM agents WHERE workspace_id = ${workspace.id}
        AND status = ${status === "online" ? "active" : status} ORDER BY name`
  return ok(rows.map(agentJson))
}))

export const agentDetail = (agent: AgentRow) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const channels = yield* sql<{ id: string; name: string; role: string; joined_at: number }>`
      SELECT c.id, c.name, m.role, m.joined_at FROM members m JOIN channels c ON c.id = m.channel_id
      WHERE m.agent_id = ${agent.id} AND c.channel_type = 0 ORDER BY c.name`
    const pending = yield* sql<{ id: string; message_id: string; seq: number; status: string }>`
      SELECT id, message_id, seq, status FROM deliveries
      WHERE agent_id = ${agent.id} AND status IN ('queued', 'delivered') ORDER BY seq LIMIT 100`
    const provided = yield* sql<{ name: string }>`SELECT name FROM actions WHERE handler_agent_id = ${agent.id} ORDER BY name`
    return {
      ...agentJson(agent),
      channels: channels.map((channel) => ({ ...channel, joined_at: iso(channel.joined_at) })),
      actions_provided: provided.map((action) => action.name),
      actions_available_to: [],
      pending_deliveries: pending
    }
  })

const getAgent = handle(Effect.gen(function*() {
  const { workspace } = yield* authenticate("any")
  const agent = yield* requireAgent(workspace.id, yield* param("name"))
  return ok(yield* agentDetail(agent))
}))

const getMe = handle(Effect.gen(function*() {
  const { agent } = yield* authenticate("agent")
  const { sql } = yield* EngineStore
  const [fresh] = yield* sql<AgentRow>`SELECT * FROM agents WHERE id = ${agent!.id}`
  return ok(yield* agentDetail(fresh ?? agent!))
}))

/** `POST /v1/agents/:name/rotate-token` (workspace key, as in v5). */
const rotateToken = handle(Effect.gen(function*() {
  const { workspace } = yield* authenticate("workspace")
  const agent = yield* requireAgent(workspace.id, yield* param("name"))
  const token = yield* rotateAgentToken(agent.id)
  return ok({ id: agent.id, name: agent.name, token })
}))

const presence = (status: "active" | "offline") =>
  handle(Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const { agent } = yield* authenticate("agent")
    const at = yield* now
    yield* sql`UPDATE agents SET status = ${status}, last_seen = ${at} WHERE id = ${agent!.id}`
    return okBare()
  }))

export const routes = HttpRouter.empty.pipe(
  HttpRouter.post("/v1/agents", createAgent),
  HttpRouter.get("/v1/agents", listAgents),
  HttpRouter.post("/v1/agents/heartbeat", presence("active")),
  HttpRouter.post("/v1/agents/disconnect", presence("offline")),
  HttpRouter.get("/v1/agents/:name", getAgent),
  HttpRouter.post("/v1/agents/:name/rotate-token", rotateToken),
  HttpRouter.get("/v1/agent", getMe)
)
