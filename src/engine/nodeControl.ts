import * as Effect from "effect/Effect"
import type { Json } from "../wire/Json.js"
import type { AgentDeregister, AgentRegister, InventorySync } from "../wire/index.js"
import { agentByName, bindAgentToNode, joinGeneral, newAgentRow, rotateAgentToken } from "./directory.js"
import { Actions } from "./Actions.js"
import { Dispatcher } from "./Dispatcher.js"
import { fail } from "./EngineError.js"
import { EngineStore, now } from "./EngineStore.js"
import { requireSessionNode } from "./nodeRegistration.js"
import type { NodeSession } from "./NodeSockets.js"
import { providerOffline } from "./providers.js"
import { type AgentRow, parseObject } from "./rows.js"

// What the agent-level node → engine frames do (spec §3.6–3.8); node.register, heartbeats and
// providers are in nodeRegistration.ts. Callers hold the engine lock.

const nodeError = (code: string, message: string) => fail(409, code, message)

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
      agent = newAgentRow(at, {
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
        resumable: frame.resumable === true ? 1 : 0
      })
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
    // Exactly these keys for a v5 broker (it rejects any other); a cursor-capable one also learns
    // where the agent's acks stand, so a restarted broker resumes there (provider-protocol.md §3).
    const [cursor] = session.cursorCapable
      ? yield* sql<{ delivery_ack_seq: number }>`SELECT delivery_ack_seq FROM agents WHERE id = ${agent.id}`
      : []
    const data: Json = {
      agent_id: agent.id,
      name: agent.name,
      token,
      ...(cursor === undefined ? {} : { delivery_ack_seq: cursor.delivery_ack_seq })
    }
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
 * this node are rescheduled (spec §3.7). Returns the reply data and the ids of the agents rebound.
 */
export const syncInventory = (session: NodeSession, frame: InventorySync) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const node = yield* requireSessionNode(session)
    const at = yield* now
    const rebound: Array<string> = []
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
      rebound.push(agent.id)
    }
    const active = yield* sql<{ id: string }>`SELECT id FROM agents
      WHERE location_type = 'via_node' AND location_node_id = ${node.id} AND status = 'active'`
    for (const { id } of active) {
      if (!listed.has(id)) yield* sql`UPDATE agents SET status = 'offline', last_seen = ${at} WHERE id = ${id}`
    }
    const actions = yield* Actions
    const invocations = yield* actions.onInventory(node.id, frame.agents)
    const reply: Json = {
      rebound_agents: rebound.length,
      open_invocations: invocations.open,
      completed_invocations: invocations.completed,
      rescheduled_invocations: invocations.rescheduled
    }
    return { reply, rebound }
  })

/** Close, liveness timeout or `node.deregister` (spec §3.8): the node and its agents go offline, keeping their routing. */
export const nodeOffline = (nodeId: string) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const at = yield* now
    yield* sql`UPDATE nodes SET status = 'offline', handlers_live = 0, load = 0, active_agents = 0, last_heartbeat_at = ${at}
      WHERE id = ${nodeId}`
    yield* providerOffline(nodeId, undefined)
    yield* sql`UPDATE agents SET status = 'offline', last_seen = ${at}
      WHERE location_type = 'via_node' AND location_node_id = ${nodeId}`
    const actions = yield* Actions
    yield* actions.onNodeLost(nodeId)
  })

export const ack = (session: NodeSession, agent: string, upToSeq: number) =>
  Effect.flatMap(Dispatcher, (dispatcher) => dispatcher.ack(session.nodeId, agent, upToSeq))
