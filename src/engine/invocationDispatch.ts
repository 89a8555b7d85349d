import * as Effect from "effect/Effect"
import type { JsonObject } from "../wire/Json.js"
import type { ActionInvoke } from "../wire/index.js"
import { type Caller, type InvocationKind, type InvocationRow, queueCap, retryBaseMs, retryMaxMs, stringField } from "./actionRows.js"
import * as Directory from "./directory.js"
import { EngineConfig } from "./EngineConfig.js"
import { EngineStore, now } from "./EngineStore.js"
import { snowflake } from "./ids.js"
import { NodeSockets } from "./NodeSockets.js"
import { providerWith } from "./providers.js"
import { isLive, type NodeRow, parseCapabilities, parseJson, parseStrings } from "./rows.js"

// Placing and sending invocations: node reservations, spawn candidates, the invoke frame, and the
// write to the owning provider's socket (or the node's queue). Callers hold the lock.

export type InvocationDispatch = Effect.Effect.Success<typeof make>

export const make = Effect.gen(function*() {
  const store = yield* EngineStore
  const { sql } = store
  const agentById = (id: string) => Effect.provideService(Directory.agentById(id), EngineStore, store)
  const nodeById = (id: string) => Effect.provideService(Directory.nodeById(id), EngineStore, store)
  const nodeByName = (workspaceId: string, name: string) => Effect.provideService(Directory.nodeByName(workspaceId, name), EngineStore, store)
  const sockets = yield* NodeSockets
  const config = yield* EngineConfig

  const load = (id: string) =>
    Effect.map(sql<InvocationRow>`SELECT * FROM invocations WHERE id = ${id}`, (rows) => rows[0])
  const reload = (invocation: InvocationRow) => Effect.map(load(invocation.id), (row) => row ?? invocation)

  const reserve = (nodeId: string) =>
    Effect.map(
      sql<{ id: string }>`UPDATE nodes SET reserved_agents = reserved_agents + 1
        WHERE id = ${nodeId} AND (max_agents = 0 OR active_agents + reserved_agents < max_agents) RETURNING id`,
      (rows) => rows.length > 0
    )

  const releaseReservation = (invocation: InvocationRow) =>
    invocation.reserved_node_id === null ? Effect.void : Effect.gen(function*() {
      yield* sql`UPDATE nodes SET reserved_agents = MAX(reserved_agents - 1, 0) WHERE id = ${invocation.reserved_node_id}`
      yield* sql`UPDATE invocations SET reserved_node_id = NULL WHERE id = ${invocation.id}`
    })

  const frameFor = (invocation: InvocationRow) =>
    Effect.gen(function*() {
      const frame: ActionInvoke = {
        v: 1,
        type: "action.invoke",
        invocation_id: invocation.id,
        action: invocation.frame_action,
        input: parseJson(invocation.input)
      }
      if (invocation.kind !== "agent" || invocation.handler_agent_id === null) return frame
      // Agent-hosted only; elsewhere the fields are absent, never null (spec §6.1).
      const handler = yield* agentById(invocation.handler_agent_id)
      return handler === undefined ? frame : { ...frame, agent_id: handler.id, agent_name: handler.name }
    })

  const backoff = (invocation: InvocationRow) =>
    Effect.gen(function*() {
      const at = yield* now
      const delay = Math.min(retryBaseMs * 2 ** Math.max(invocation.dispatch_attempts - 1, 0), retryMaxMs)
      yield* sql`UPDATE invocations SET status = 'pending', dispatched_node_id = NULL, queued_node_id = NULL,
        retry_after_at = ${at + delay} WHERE id = ${invocation.id}`
    })

  /**
   * The provider of `nodeId` that owns the invocation (relaycast 6): a node action's provider, the
   * provider advertising the spawn capacity or `release`; undefined means the node's hosting socket.
   */
  const providerFor = (invocation: InvocationRow, nodeId: string) =>
    Effect.gen(function*() {
      switch (invocation.kind) {
        case "agent":
          return undefined
        case "node": {
          const [action] = yield* sql<{ handler_provider: string | null }>`SELECT handler_provider FROM actions
            WHERE workspace_id = ${invocation.workspace_id} AND name = ${invocation.action_name}`
          return action?.handler_provider ?? undefined
        }
        case "spawn":
        case "release":
          return yield* providerWith(nodeId, invocation.frame_action)
      }
    }).pipe(Effect.provideService(EngineStore, store))

  /** Writes the frame to the owning provider's socket (→ dispatched), or queues it for the node (→ pending). */
  const dispatchTo = (invocation: InvocationRow, nodeId: string) =>
    Effect.gen(function*() {
      const at = yield* now
      const provider = yield* providerFor(invocation, nodeId)
      if (sockets.isConnected(nodeId, provider) && (yield* sockets.send(nodeId, yield* frameFor(invocation), provider))) {
        const route = sockets.route(nodeId, provider) ?? null
        const attempted = new Set(parseStrings(invocation.attempted_node_ids))
        attempted.add(nodeId)
        yield* sql`UPDATE invocations SET status = 'dispatched', dispatched_node_id = ${nodeId}, dispatched_provider = ${route}, queued_node_id = NULL,
          dispatched_at = ${at}, retry_after_at = ${at + config.dispatchTimeoutMs},
          dispatch_attempts = dispatch_attempts + 1, attempted_node_ids = ${JSON.stringify([...attempted])}
          WHERE id = ${invocation.id}`
        return
      }
      const [queued] = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM invocations
        WHERE queued_node_id = ${nodeId} AND status = 'pending' AND id != ${invocation.id}`
      if ((queued?.n ?? 0) >= queueCap) {
        yield* sql`UPDATE invocations SET status = 'pending', dispatched_node_id = NULL, queued_node_id = NULL,
          retry_after_at = ${at + retryBaseMs} WHERE id = ${invocation.id}`
        return
      }
      yield* sql`UPDATE invocations SET status = 'pending', dispatched_node_id = NULL, queued_node_id = ${nodeId},
        retry_after_at = NULL WHERE id = ${invocation.id}`
    })

  const capabilityOf = (input: JsonObject) => {
    const raw = stringField(input, "capability") ?? stringField(input, "cli")
    return raw === undefined ? undefined : raw.startsWith("spawn:") ? raw : `spawn:${raw}`
  }

  const hasCapability = (node: NodeRow, capability: string) =>
    parseCapabilities(node.capabilities).some((c) => c.name === capability)

  /** Live, handlers-live nodes with the capability and room, by load, active agents, name. */
  const candidates = (workspaceId: string, capability: string, exclude: ReadonlySet<string>) =>
    Effect.gen(function*() {
      const at = yield* now
      const nodes = yield* sql<NodeRow>`SELECT * FROM nodes WHERE workspace_id = ${workspaceId} AND role = 'broker'`
      return nodes
        .filter((node) => !exclude.has(node.id))
        .filter((node) => hasCapability(node, capability))
        .filter((node) => isLive(node, at, config.nodeLivenessTtlMs) && node.handlers_live === 1)
        .filter((node) => node.max_agents === 0 || node.active_agents + node.reserved_agents < node.max_agents)
        .sort((a, b) => a.load - b.load || a.active_agents - b.active_agents || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    })

  /** First candidate whose reservation succeeds (spec §5.2 `claimSpawnNode`). */
  const claim = (workspaceId: string, capability: string, exclude: ReadonlySet<string>) =>
    Effect.gen(function*() {
      for (const node of yield* candidates(workspaceId, capability, exclude)) {
        if (yield* reserve(node.id)) return node
      }
      return undefined
    })

  const insert = (invocation: InvocationRow) => Effect.as(sql`INSERT INTO invocations ${sql.insert(invocation)}`, invocation)

  const newInvocation = (workspaceId: string, fields: {
    readonly actionName: string
    readonly frameAction: string
    readonly kind: InvocationKind
    readonly caller: Caller
    readonly input: JsonObject
    readonly handlerAgentId?: string | null
    readonly handlerNodeId?: string | null
    readonly targetNodeId?: string | null
    readonly reservedNodeId?: string | null
  }) =>
    Effect.map(now, (at): InvocationRow => ({
      id: `inv_${snowflake()}`,
      workspace_id: workspaceId,
      action_name: fields.actionName,
      frame_action: fields.frameAction,
      kind: fields.kind,
      caller_id: fields.caller._tag === "agent" ? fields.caller.agent.id : fields.caller.workspaceId,
      caller_name: fields.caller._tag === "agent" ? fields.caller.agent.name : "workspace",
      caller_agent_id: fields.caller._tag === "agent" ? fields.caller.agent.id : null,
      input: JSON.stringify(fields.input),
      status: "pending",
      handler_agent_id: fields.handlerAgentId ?? null,
      handler_node_id: fields.handlerNodeId ?? null,
      target_node_id: fields.targetNodeId ?? null,
      dispatched_node_id: null,
      queued_node_id: null,
      attempted_node_ids: "[]",
      dispatch_attempts: 0,
      dispatched_at: null,
      retry_after_at: null,
      reserved_node_id: fields.reservedNodeId ?? null,
      output: null,
      error: null,
      created_at: at,
      completed_at: null
    }))

  return {
    sql, agentById, nodeById, nodeByName, load, reload, reserve, releaseReservation, backoff, dispatchTo,
    capabilityOf, hasCapability, claim, insert, newInvocation
  }
})
