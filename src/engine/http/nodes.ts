import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { JsonObject } from "../../wire/Json.js"
import { bindAgentToNode, bindingJson, requireAgent, requireNode } from "../directory.js"
import { EngineConfig } from "../EngineConfig.js"
import { EngineStore, now } from "../EngineStore.js"
import { badRequest, conflict, notFound } from "../EngineError.js"
import { newNodeToken, sha256Hex, snowflake } from "../ids.js"
import { type AgentRow, type BindingRow, nodeJson, type NodeRow, parseCapabilities } from "../rows.js"
import { listProviders } from "../providers.js"
import { authenticate, body, created, handle, noContent, ok, param, query, Required } from "./support.js"

const CapabilityInput = Schema.Union(
  Schema.String,
  Schema.Struct({ name: Schema.String, kind: Schema.optional(Schema.String), metadata: Schema.optional(JsonObject) })
)

const CreateNode = Schema.Struct({
  name: Required,
  node_id: Schema.optional(Schema.NullOr(Schema.String)),
  kind: Schema.optional(Schema.NullOr(Schema.Literal("ws", "http_push", "poll", "fleet_ws", "direct_ws"))),
  role: Schema.optional(Schema.NullOr(Schema.Literal("broker", "direct"))),
  capabilities: Schema.optional(Schema.NullOr(Schema.Array(CapabilityInput))),
  max_agents: Schema.optional(Schema.NullOr(Schema.NonNegativeInt)),
  tags: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  version: Schema.optional(Schema.NullOr(Schema.String)),
  delivery: Schema.optional(Schema.NullOr(JsonObject)),
  delivery_adapter: Schema.optional(Schema.NullOr(Schema.String))
})

/**
 * `POST /v1/nodes` (workspace key) with the v5 identity rule: a node with this name keeps its id and
 * gets a new token (the old one dies at once, the row goes offline); otherwise a new row with
 * `node_id ?? node_<snowflake>` (spec §2.3).
 */
const createNode = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const config = yield* EngineConfig
  const { workspace } = yield* authenticate("workspace")
  const input = yield* body(CreateNode)
  const aliasKind = input.kind === "fleet_ws" ? "ws" : input.kind === "direct_ws" ? "ws" : input.kind ?? "ws"
  const aliasRole = input.kind === "fleet_ws" ? "broker" : input.kind === "direct_ws" ? "direct" : undefined
  const maxAgents = input.max_agents ?? 0
  const role = input.role ?? aliasRole ?? (aliasKind === "ws" || maxAgents > 1 ? "broker" : "direct")
  if (role === "direct" && maxAgents !== 1 && input.max_agents != null) {
    return yield* Effect.fail(badRequest("direct nodes must have max_agents 1", "direct_node_capacity_exceeded"))
  }
  if (aliasKind === "http_push" && typeof input.delivery?.["url"] !== "string") {
    return yield* Effect.fail(badRequest("http_push nodes need delivery.url", "invalid_node_delivery"))
  }
  const capabilities = JSON.stringify((input.capabilities ?? []).map((capability) =>
    typeof capability === "string" ? { name: capability } : capability
  ))
  const token = newNodeToken()
  const at = yield* now
  const [existing] = yield* sql<NodeRow>`SELECT * FROM nodes WHERE workspace_id = ${workspace.id} AND name = ${input.name}
    ORDER BY created_at LIMIT 1`
  if (existing !== undefined) {
    yield* sql`UPDATE nodes SET token_hash = ${sha256Hex(token)}, status = 'offline', handlers_live = 0,
      version = COALESCE(${input.version ?? null}, version) WHERE id = ${existing.id}`
  } else {
    const id = input.node_id ?? `node_${snowflake()}`
    const [taken] = yield* sql<{ id: string }>`SELECT id FROM nodes WHERE id = ${id}`
    if (taken !== undefined) {
      return yield* Effect.fail(conflict("node_id_conflict", `Node id "${id}" is already enrolled under another name`))
    }
    const row: NodeRow = {
      id,
      workspace_id: workspace.id,
      name: input.name,
      token_hash: sha256Hex(token),
      kind: aliasKind,
      role,
      capabilities,
      max_agents: role === "direct" ? 1 : maxAgents,
      active_agents: 0,
      reserved_agents: 0,
      tags: JSON.stringify(input.tags ?? []),
      version: input.version ?? null,
      status: "offline",
      handlers_live: 0,
      load: 0,
      last_heartbeat_at: null,
      delivery: input.delivery === undefined || input.delivery === null ? null : JSON.stringify(input.delivery),
      created_at: at
    }
    yield* sql`INSERT INTO nodes ${sql.insert(row)}`
  }
  const [node] = yield* sql<NodeRow>`SELECT * FROM nodes WHERE token_hash = ${sha256Hex(token)}`
  return created({ ...nodeJson(node!, at, config.nodeLivenessTtlMs), token })
}))

const listNodes = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const config = yield* EngineConfig
  const { workspace } = yield* authenticate("any")
  const params = yield* query
  const capability = params.get("capability")
  const name = params.get("name")
  const at = yield* now
  const rows = yield* sql<NodeRow>`SELECT * FROM nodes WHERE workspace_id = ${workspace.id} ORDER BY name`
  return ok(rows
    .filter((node) => name === null || node.name === name)
    .filter((node) => capability === null || parseCapabilities(node.capabilities).some((c) => c.name === capability))
    .map((node) => nodeJson(node, at, config.nodeLivenessTtlMs)))
}))

/** `GET /v1/nodes/:name`: the node, plus its providers (relaycast 6) and their own figures. */
const getNode = handle(Effect.gen(function*() {
  const config = yield* EngineConfig
  const { workspace } = yield* authenticate("any")
  const node = yield* requireNode(workspace.id, yield* param("name"))
  const providers = yield* listProviders(node.id)
  return ok({
    ...nodeJson(node, yield* now, config.nodeLivenessTtlMs),
    providers: providers.map((provider) => ({
      name: provider.name,
      instance_id: provider.instance_id,
      status: provider.status,
      capabilities: parseCapabilities(provider.capabilities),
      max_agents: provider.max_agents,
      active_agents: provider.active_agents,
      load: provider.load,
      handlers_live: provider.handlers_live === 1,
      machine_id: provider.machine_id,
      version: provider.version
    }))
  })
}))

const BindAgent = Schema.Struct({
  agent_name: Required,
  session_ref: Schema.optional(Schema.NullOr(Schema.String)),
  priority: Schema.optional(Schema.NullOr(Schema.Int))
})

/** `POST /v1/nodes/:name/agents` (workspace key): the agent becomes `via_node` on this node (spec §2.4). */
const bindAgent = handle(Effect.gen(function*() {
  const { workspace } = yield* authenticate("workspace")
  const input = yield* body(BindAgent)
  const node = yield* requireNode(workspace.id, yield* param("name"))
  const agent = yield* requireAgent(workspace.id, input.agent_name)
  const binding = yield* bindAgentToNode(agent, node, { sessionRef: input.session_ref ?? null, priority: input.priority ?? null })
  return created(bindingJson(binding, agent, node))
}))

const listBindings = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace } = yield* authenticate("any")
  const node = yield* requireNode(workspace.id, yield* param("name"))
  const rows = yield* sql<BindingRow & { agent_name: string }>`SELECT b.*, a.name AS agent_name FROM bindings b
    JOIN agents a ON a.id = b.agent_id WHERE b.node_id = ${node.id} AND b.status = 'active' ORDER BY a.name`
  return ok(rows.map((row) => bindingJson(row, { id: row.agent_id, name: row.agent_name } as AgentRow, node)))
}))

const unbindAgent = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace } = yield* authenticate("workspace")
  const node = yield* requireNode(workspace.id, yield* param("name"))
  const agentName = yield* param("agent")
  const agent = yield* requireAgent(workspace.id, agentName).pipe(
    Effect.mapError(() => notFound("node_agent_binding_not_found", `Agent "${agentName}" is not bound to node "${node.name}"`))
  )
  const at = yield* now
  const removed = yield* sql<{ id: string; status: string }>`DELETE FROM bindings WHERE agent_id = ${agent.id} AND node_id = ${node.id}
    RETURNING id, status`
  if (removed.length === 0) {
    return yield* Effect.fail(notFound("node_agent_binding_not_found", `Agent "${agentName}" is not bound to node "${node.name}"`))
  }
  if (removed[0]!.status === "active") yield* sql`UPDATE nodes SET active_agents = MAX(active_agents - 1, 0) WHERE id = ${node.id}`
  if (agent.location_type === "via_node" && agent.location_node_id === node.id) {
    yield* sql`UPDATE agents SET location_type = 'self_connected', location_node_id = NULL, status = 'offline', last_seen = ${at}
      WHERE id = ${agent.id}`
  }
  return noContent()
}))

/**
 * `POST /v1/agent/node-token` (agent token): the agent's implicit direct node (`role=direct`,
 * `max_agents=1`), with a fresh token; the agent becomes `via_node` on it (spec §2.3, §3.9).
 */
const directNodeToken = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace, agent } = yield* authenticate("agent")
  const nodeId = `node_direct_${agent!.id}`
  const [bound] = yield* sql<{ node_id: string }>`SELECT node_id FROM bindings
    WHERE agent_id = ${agent!.id} AND status = 'active' AND node_id != ${nodeId}`
  if (bound !== undefined) {
    return yield* Effect.fail(conflict("agent_bound_to_node", `Agent "${agent!.name}" is bound to another node`))
  }
  const token = newNodeToken()
  const at = yield* now
  const [existing] = yield* sql<NodeRow>`SELECT * FROM nodes WHERE id = ${nodeId}`
  if (existing === undefined) {
    const row: NodeRow = {
      id: nodeId,
      workspace_id: workspace.id,
      name: `direct-${agent!.id}`,
      token_hash: sha256Hex(token),
      kind: "ws",
      role: "direct",
      capabilities: "[]",
      max_agents: 1,
      active_agents: 0,
      reserved_agents: 0,
      tags: JSON.stringify(["implicit", "direct"]),
      version: "implicit",
      status: "offline",
      handlers_live: 0,
      load: 0,
      last_heartbeat_at: null,
      delivery: null,
      created_at: at
    }
    yield* sql`INSERT INTO nodes ${sql.insert(row)}`
  } else {
    yield* sql`UPDATE nodes SET token_hash = ${sha256Hex(token)} WHERE id = ${nodeId}`
  }
  const [node] = yield* sql<NodeRow>`SELECT * FROM nodes WHERE id = ${nodeId}`
  yield* bindAgentToNode(agent!, node!, {})
  return ok({ node_id: nodeId, node_name: node!.name, token })
}))

export const routes = HttpRouter.empty.pipe(
  HttpRouter.post("/v1/agent/node-token", directNodeToken),
  HttpRouter.post("/v1/nodes", createNode),
  HttpRouter.get("/v1/nodes", listNodes),
  HttpRouter.get("/v1/nodes/:name", getNode),
  HttpRouter.post("/v1/nodes/:name/agents", bindAgent),
  HttpRouter.get("/v1/nodes/:name/agents", listBindings),
  HttpRouter.del("/v1/nodes/:name/agents/:agent", unbindAgent)
)
