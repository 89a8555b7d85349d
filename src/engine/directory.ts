import * as Effect from "effect/Effect"
import { EngineStore, now } from "./EngineStore.js"
import { conflict, notFound } from "./EngineError.js"
import { newAgentToken, sha256Hex, snowflake } from "./ids.js"
import type { AgentRow, BindingRow, ChannelRow, NodeRow, WorkspaceRow } from "./rows.js"

// Shared reads and writes on workspaces, agents, channels, nodes and bindings. Callers hold the engine lock.

export const workspaceByKey = (key: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<WorkspaceRow>`SELECT * FROM workspaces WHERE key_hash = ${sha256Hex(key)}`, (rows) => rows[0]))

export const workspaceById = (id: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<WorkspaceRow>`SELECT * FROM workspaces WHERE id = ${id}`, (rows) => rows[0]))

export const agentByToken = (token: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<AgentRow>`SELECT * FROM agents WHERE token_hash = ${sha256Hex(token)}`, (rows) => rows[0]))

export const agentByName = (workspaceId: string, name: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<AgentRow>`SELECT * FROM agents WHERE workspace_id = ${workspaceId} AND name = ${name}`, (rows) => rows[0]))

export const agentById = (id: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<AgentRow>`SELECT * FROM agents WHERE id = ${id}`, (rows) => rows[0]))

export const requireAgent = (workspaceId: string, name: string) =>
  Effect.flatMap(agentByName(workspaceId, name), (agent) =>
    agent === undefined ? Effect.fail(notFound("agent_not_found", `Agent "${name}" not found`)) : Effect.succeed(agent))

export const nodeById = (id: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<NodeRow>`SELECT * FROM nodes WHERE id = ${id}`, (rows) => rows[0]))

export const nodeByName = (workspaceId: string, name: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<NodeRow>`SELECT * FROM nodes WHERE workspace_id = ${workspaceId} AND name = ${name} ORDER BY created_at LIMIT 1`, (rows) => rows[0]))

export const requireNode = (workspaceId: string, name: string) =>
  Effect.flatMap(nodeByName(workspaceId, name), (node) =>
    node === undefined ? Effect.fail(notFound("node_not_found", `Node "${name}" not found`)) : Effect.succeed(node))

export const channelByName = (workspaceId: string, name: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<ChannelRow>`SELECT * FROM channels WHERE workspace_id = ${workspaceId} AND name = ${name}`, (rows) => rows[0]))

export const channelById = (id: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<ChannelRow>`SELECT * FROM channels WHERE id = ${id}`, (rows) => rows[0]))

/** A public (non-DM) channel by name, or 404 `channel_not_found`. */
export const requireChannel = (workspaceId: string, name: string) =>
  Effect.flatMap(channelByName(workspaceId, name.replace(/^#/, "")), (channel) =>
    channel === undefined || channel.channel_type !== 0
      ? Effect.fail(notFound("channel_not_found", `Channel "${name}" not found`))
      : Effect.succeed(channel))

export const createChannel = (workspaceId: string, name: string, topic: string | null, metadata: string, createdBy: string | null, channelType = 0) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const row: ChannelRow = {
      id: snowflake(),
      workspace_id: workspaceId,
      name,
      topic,
      metadata,
      channel_type: channelType,
      created_by: createdBy,
      archived: 0,
      created_at: yield* now
    }
    yield* sql`INSERT INTO channels ${sql.insert(row)}`
    return row
  })

/** Adds the member if missing; true when it was new. */
export const joinChannel = (channelId: string, agentId: string, role = "member") =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const at = yield* now
    const inserted = yield* sql<{ agent_id: string }>`INSERT INTO members (channel_id, agent_id, role, last_read_id, joined_at)
      VALUES (${channelId}, ${agentId}, ${role}, NULL, ${at}) ON CONFLICT DO NOTHING RETURNING agent_id`
    return inserted.length > 0
  })

/** The identity fields of a new agent; the rest start as a self-connected agent with no deliveries. */
export type NewAgent = Pick<AgentRow, "workspace_id" | "name" | "type" | "status" | "token_hash" | "persona" | "metadata" | "capabilities"> &
  Partial<AgentRow>

export const newAgentRow = (at: number, fields: NewAgent): AgentRow => ({
  id: snowflake(),
  location_type: "self_connected",
  location_node_id: null,
  origin_node_id: null,
  session_ref: null,
  resumable: 0,
  delivery_ack_seq: 0,
  last_seq: 0,
  last_seen: at,
  created_at: at,
  ...fields
})

export const joinGeneral = (workspaceId: string, agentId: string) =>
  Effect.gen(function*() {
    const general = yield* channelByName(workspaceId, "general")
    if (general !== undefined) yield* joinChannel(general.id, agentId)
  })

export const memberIds = (channelId: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<{ agent_id: string }>`SELECT agent_id FROM members WHERE channel_id = ${channelId}`, (rows) => rows.map((row) => row.agent_id)))

/** Members who muted the channel: no delivery for its posts and replies unless @mentioned. */
export const mutedMemberIds = (channelId: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<{ agent_id: string }>`SELECT agent_id FROM members WHERE channel_id = ${channelId} AND is_muted = 1`, (rows) =>
      new Set(rows.map((row) => row.agent_id))))

export const memberAgents = (channelId: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    sql<AgentRow>`SELECT a.* FROM agents a JOIN members m ON m.agent_id = a.id WHERE m.channel_id = ${channelId} ORDER BY a.name`)

/** Mints a fresh agent token (the old one stops working). */
export const rotateAgentToken = (agentId: string) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const token = newAgentToken()
    yield* sql`UPDATE agents SET token_hash = ${sha256Hex(token)} WHERE id = ${agentId}`
    return token
  })

/**
 * Makes `nodeId` the agent's only active binding and its location (`via_node`, `active`), counting a
 * new slot on the node (spec §2.4, §3.6).
 */
export const bindAgentToNode = (agent: AgentRow, node: NodeRow, options: { readonly sessionRef?: string | null; readonly priority?: number | null }) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const at = yield* now
    const [existing] = yield* sql<BindingRow>`SELECT * FROM bindings WHERE agent_id = ${agent.id} AND node_id = ${node.id}`
    if (existing?.status !== "active") {
      const [fresh] = yield* sql<NodeRow>`SELECT * FROM nodes WHERE id = ${node.id}`
      if (fresh !== undefined && fresh.max_agents > 0 && fresh.active_agents >= fresh.max_agents) {
        return yield* Effect.fail(conflict("node_capacity_exceeded", `Node "${node.name}" is at capacity`))
      }
    }
    const others = yield* sql<{ node_id: string }>`UPDATE bindings SET status = 'inactive', updated_at = ${at}
      WHERE agent_id = ${agent.id} AND node_id != ${node.id} AND status = 'active' RETURNING node_id`
    for (const other of others) {
      yield* sql`UPDATE nodes SET active_agents = MAX(active_agents - 1, 0) WHERE id = ${other.node_id}`
    }
    const sessionRef = options.sessionRef ?? existing?.session_ref ?? null
    const priority = options.priority ?? existing?.priority ?? 0
    let binding: BindingRow
    if (existing === undefined) {
      binding = { id: `anb_${snowflake()}`, agent_id: agent.id, node_id: node.id, status: "active", priority, session_ref: sessionRef, created_at: at, updated_at: at }
      yield* sql`INSERT INTO bindings ${sql.insert(binding)}`
    } else {
      binding = { ...existing, status: "active", priority, session_ref: sessionRef, updated_at: at }
      yield* sql`UPDATE bindings SET status = 'active', priority = ${priority}, session_ref = ${sessionRef}, updated_at = ${at}
        WHERE id = ${existing.id}`
    }
    if (existing?.status !== "active") {
      yield* sql`UPDATE nodes SET active_agents = active_agents + 1 WHERE id = ${node.id}`
    }
    yield* sql`UPDATE agents SET location_type = 'via_node', location_node_id = ${node.id}, status = 'active', last_seen = ${at}
      WHERE id = ${agent.id}`
    return binding
  })

export const bindingJson = (binding: BindingRow, agent: AgentRow, node: NodeRow) => ({
  id: binding.id,
  agent_id: agent.id,
  agent_name: agent.name,
  node_id: node.id,
  node_name: node.name,
  node_kind: node.kind,
  node_role: node.role,
  status: binding.status,
  session_ref: binding.session_ref,
  priority: binding.priority,
  created_at: new Date(binding.created_at).toISOString(),
  updated_at: new Date(binding.updated_at).toISOString()
})
