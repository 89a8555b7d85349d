import { Effect } from "effect"
import type { Json, JsonObject } from "../wire/Json.js"
import type { AgentDeregister, AgentRegister, InventorySync, NodeHeartbeat, NodeRegister } from "../wire/index.js"
import {
  agentByName,
  bindAgentToNode,
  joinGeneral,
  nodeById,
  rotateAgentToken
} from "./directory.js"
import { Actions } from "./Actions.js"
import { Dispatcher } from "./Dispatcher.js"
import { EngineConfig } from "./EngineConfig.js"
import { fail } from "./EngineError.js"
import { EngineStore, now } from "./EngineStore.js"
import { snowflake } from "./ids.js"
import type { NodeSession } from "./NodeSockets.js"
import { type AgentRow, type NodeRow, nodeJson, parseCapabilities, parseObject } from "./rows.js"

// What each node → engine frame does (spec §3.4–3.8). Callers hold the engine lock.

const nodeError = (code: string, message: string) => fail(409, code, message)

export const requireSessionNode = (session: NodeSession) =>
  Effect.flatMap(nodeById(session.nodeId), (node) =>
    node === undefined || node.workspace_id !== session.workspaceId
      ? Effect.fail(fail(404, "node_not_found", "Node not found"))
      : Effect.succeed(node))

const checkNodeId = (session: NodeSession, nodeId: string | undefined) =>
  nodeId !== undefined && nodeId !== session.nodeId
    ? Effect.fail(fail(403, "node_id_mismatch", "node_id does not match the authenticated node token"))
    : Effect.void

const checkName = (node: NodeRow, name: string) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const [other] = yield* sql<{ id: string }>`SELECT id FROM nodes
      WHERE workspace_id = ${node.workspace_id} AND name = ${name} AND id != ${node.id} LIMIT 1`
    if (other !== undefined) return yield* Effect.fail(nodeError("node_name_conflict", `Node name "${name}" is already enrolled`))
  })

const capabilitiesText = (capabilities: ReadonlyArray<{ readonly name: string; readonly kind?: string; readonly metadata?: JsonObject }>) =>
  JSON.stringify(capabilities.map((capability) => ({
    name: capability.name,
    ...(capability.kind === undefined ? {} : { kind: capability.kind }),
    ...(capability.metadata === undefined ? {} : { metadata: capability.metadata })
  })))

/** `node.register`: returns the public node object for the reply. */
export const registerNode = (session: NodeSession, frame: NodeRegister) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const config = yield* EngineConfig
    yield* checkNodeId(session, frame.node_id)
    const node = yield* requireSessionNode(session)
    yield* checkName(node, frame.name)
    const at = yield* now
    if (node.role === "direct") {
      yield* sql`UPDATE nodes SET name = ${frame.name}, version = ${frame.version}, status = 'online',
        last_heartbeat_at = ${at}, capabilities = '[]', max_agents = 1, active_agents = 1, handlers_live = 0
        WHERE id = ${node.id}`
    } else {
      yield* sql`UPDATE nodes SET name = ${frame.name}, capabilities = ${capabilitiesText(frame.capabilities)},
        max_agents = ${frame.max_agents}, tags = ${JSON.stringify(frame.tags)}, version = ${frame.version},
        status = 'online', last_heartbeat_at = ${at}, handlers_live = ${frame.capabilities.length > 0 ? 1 : 0},
        kind = 'ws', role = 'broker'
        WHERE id = ${node.id}`
    }
    const updated = yield* requireSessionNode(session)
    const actions = yield* Actions
    yield* actions.ensureCapabilityActions(updated, parseCapabilities(updated.capabilities))
    return nodeJson(updated, at, config.nodeLivenessTtlMs)
  })

/** `node.heartbeat`: liveness, load and (when present) the roster fields. No reply. */
export const heartbeat = (session: NodeSession, frame: NodeHeartbeat) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    yield* checkNodeId(session, frame.node_id)
    const node = yield* requireSessionNode(session)
    const at = yield* now
    if (node.role === "direct") {
      yield* sql`UPDATE nodes SET status = 'online', last_heartbeat_at = ${at}, load = ${frame.load} WHERE id = ${node.id}`
      return
    }
    yield* sql`UPDATE nodes SET status = 'online', last_heartbeat_at = ${at}, load = ${frame.load},
      active_agents = ${frame.active_agents}, handlers_live = ${frame.handlers_live ? 1 : 0} WHERE id = ${node.id}`
    if (frame.name !== undefined && frame.name !== node.name) {
      const [other] = yield* sql<{ id: string }>`SELECT id FROM nodes
        WHERE workspace_id = ${node.workspace_id} AND name = ${frame.name} AND id != ${node.id} LIMIT 1`
      if (other === undefined) yield* sql`UPDATE nodes SET name = ${frame.name} WHERE id = ${node.id}`
    }
    if (frame.capabilities !== undefined) {
      yield* sql`UPDATE nodes SET capabilities = ${capabilitiesText(frame.capabilities)} WHERE id = ${node.id}`
      const actions = yield* Actions
      yield* actions.ensureCapabilityActions(node, frame.capabilities)
    }
    if (frame.max_agents !== undefined) yield* sql`UPDATE nodes SET max_agents = ${frame.max_agents} WHERE id = ${node.id}`
    if (frame.version !== undefined) yield* sql`UPDATE nodes SET version = ${frame.version} WHERE id = ${node.id}`
  })

/**
 * `agent.register`: upsert by name; the agent becomes `via_node` here with a fresh token and joins
 * #general. The reply data is exactly `{agent_id, name, token}` (spec §3.6, §6.1).
 */
export const registerAgent = (session: NodeSession, frame: AgentRegister) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const node = yield* requireSessionNode(session)
    const at = yield* now
    const existing = yield* agentByName(node.workspace_id, frame.name)
    const fleet = { node_id: node.id, invocation_id: frame.invocation_id ?? null, registered_at: new Date(at).toISOString() }
    let agent: AgentRow
    if (existing === undefined) {
      agent = {
        id: snowflake(),
        workspace_id: node.workspace_id,
        name: frame.name,
        type: "agent",
        status: "active",
        token_hash: null,
        persona: null,
        metadata: JSON.stringify({ fleet }),
        capabilities: null,
        location_type: "via_node",
        location_node_id: node.id,
        origin_node_id: node.id,
        session_ref: frame.session_ref ?? null,
        resumable: frame.resumable === true ? 1 : 0,
        delivery_ack_seq: 0,
        last_seq: 0,
        last_seen: at,
        created_at: at
      }
      yield* sql`INSERT INTO agents ${sql.insert(agent)}`
    } else {
      const hereAlready = existing.location_type === "via_node" && existing.location_node_id === node.id
      if (existing.status === "active" && !hereAlready) {
        return yield* Effect.fail(nodeError("agent_location_conflict", `Agent "${frame.name}" already has an active location`))
      }
      const metadata = parseObject(existing.metadata)
      const merged = { ...metadata, fleet: { ...parseObject(JSON.stringify(metadata["fleet"] ?? {})), ...fleet } }
      yield* sql`UPDATE agents SET metadata = ${JSON.stringify(merged)}, origin_node_id = COALESCE(origin_node_id, ${node.id}),
        session_ref = ${frame.session_ref ?? null}, resumable = ${frame.resumable === true ? 1 : 0}
        WHERE id = ${existing.id}`
      agent = existing
    }
    yield* bindAgentToNode(agent, node, { sessionRef: frame.session_ref ?? null })
    const token = yield* rotateAgentToken(agent.id)
    yield* joinGeneral(node.workspace_id, agent.id)
    const data: Json = { agent_id: agent.id, name: agent.name, token }
    return { data, agentId: agent.id }
  })

/** `agent.deregister`: the agent (by id, else name) among those on this node goes offline; routing is kept. */
export const deregisterAgent = (session: NodeSession, frame: AgentDeregister) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const at = yield* now
    const [byId] = yield* sql<{ id: string }>`SELECT id FROM agents
      WHERE id = ${frame.agent_id} AND location_type = 'via_node' AND location_node_id = ${session.nodeId}`
    const target = byId ?? (frame.name === undefined
      ? undefined
      : (yield* sql<{ id: string }>`SELECT id FROM agents
          WHERE workspace_id = ${session.workspaceId} AND name = ${frame.name}
            AND location_type = 'via_node' AND location_node_id = ${session.nodeId}`)[0])
    if (target === undefined) return
    yield* sql`UPDATE agents SET status = 'offline', last_seen = ${at} WHERE id = ${target.id}`
  })

/**
 * `inventory.sync`: the listed agents are alive here (rebound, active); agents active here but not
 * listed go offline; listed invocation ids complete their open invocations, the other open ones on
 * this node are rescheduled (spec §3.7). Returns the reply data.
 */
export const syncInventory = (session: NodeSession, frame: InventorySync) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const node = yield* requireSessionNode(session)
    const at = yield* now
    let rebound = 0
    const listed = new Set<string>()
    for (const item of frame.agents) {
      const agent = yield* agentByName(node.workspace_id, item.name)
      if (agent === undefined) continue
      listed.add(agent.id)
      const bound = yield* bindAgentToNode(agent, node, { sessionRef: item.session_ref ?? null }).pipe(
        Effect.as(true),
        Effect.catchTag("EngineError", () => Effect.succeed(false))
      )
      if (!bound) continue
      if (item.session_ref !== undefined) yield* sql`UPDATE agents SET session_ref = ${item.session_ref} WHERE id = ${agent.id}`
      rebound++
    }
    const active = yield* sql<{ id: string }>`SELECT id FROM agents
      WHERE location_type = 'via_node' AND location_node_id = ${node.id} AND status = 'active'`
    for (const { id } of active) {
      if (!listed.has(id)) yield* sql`UPDATE agents SET status = 'offline', last_seen = ${at} WHERE id = ${id}`
    }
    const actions = yield* Actions
    const invocations = yield* actions.onInventory(node.id, frame.agents)
    return {
      rebound_agents: rebound,
      open_invocations: invocations.open,
      completed_invocations: invocations.completed,
      rescheduled_invocations: invocations.rescheduled
    }
  })

/** Close, liveness timeout or `node.deregister` (spec §3.8): the node and its agents go offline, keeping their routing. */
export const nodeOffline = (nodeId: string) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const at = yield* now
    yield* sql`UPDATE nodes SET status = 'offline', handlers_live = 0, load = 0, active_agents = 0, last_heartbeat_at = ${at}
      WHERE id = ${nodeId}`
    yield* sql`UPDATE agents SET status = 'offline', last_seen = ${at}
      WHERE location_type = 'via_node' AND location_node_id = ${nodeId}`
    const actions = yield* Actions
    yield* actions.onNodeLost(nodeId)
  })

export const ack = (session: NodeSession, agent: string, upToSeq: number) =>
  Effect.flatMap(Dispatcher, (dispatcher) => dispatcher.ack(session.nodeId, agent, upToSeq))
