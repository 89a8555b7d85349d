import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Json, JsonObject } from "../wire/Json.js"
import type { ActionInvoke, ActionResult, InventoryAgent, WireEncodeError } from "../wire/index.js"
import * as Directory from "./directory.js"
import { Dispatcher } from "./Dispatcher.js"
import { EngineConfig } from "./EngineConfig.js"
import { badRequest, conflict, type EngineError, fail, forbidden, notFound } from "./EngineError.js"
import { EngineStore, now } from "./EngineStore.js"
import { snowflake } from "./ids.js"
import { defaultProvider, NodeSockets } from "./NodeSockets.js"
import { providerWith } from "./providers.js"
import { type AgentRow, isLive, iso, isoOrNull, type NodeRow, parseCapabilities, parseJson, parseStrings } from "./rows.js"

// Actions, spawn placement, release and the invocation lifecycle (spec §5). Callers hold the lock.

export type ActionRow = {
  readonly id: string
  readonly workspace_id: string
  readonly name: string
  readonly description: string | null
  readonly handler_agent_id: string | null
  readonly handler_node_id: string | null
  readonly input_schema: string
  readonly output_schema: string
  readonly available_to: string | null
  readonly is_active: number
  readonly created_at: number
  /** The provider of `handler_node_id` that advertised it (relaycast 6); null for v5-era rows. */
  readonly handler_provider?: string | null
  /** 1: invocations queue while the provider is down; 0: refused with 503 (non-default providers). */
  readonly queue?: number
}

export type InvocationKind = "spawn" | "release" | "node" | "agent"

export type InvocationRow = {
  readonly id: string
  readonly workspace_id: string
  readonly action_name: string
  /** The `action` of the frame: the capability for spawns (`spawn:claude`), else the action name. */
  readonly frame_action: string
  readonly kind: InvocationKind
  readonly caller_id: string
  readonly caller_name: string
  readonly caller_agent_id: string | null
  readonly input: string
  readonly status: "pending" | "dispatched" | "completed" | "failed"
  readonly handler_agent_id: string | null
  readonly handler_node_id: string | null
  /** Spawns with `target_node` / `node` / `target`: never re-placed elsewhere. */
  readonly target_node_id: string | null
  readonly dispatched_node_id: string | null
  /** The provider of that node whose socket got the frame. */
  readonly dispatched_provider?: string | null
  /** Pending and waiting in this node's queue for its next attach / register / heartbeat. */
  readonly queued_node_id: string | null
  readonly attempted_node_ids: string
  readonly dispatch_attempts: number
  readonly dispatched_at: number | null
  readonly retry_after_at: number | null
  readonly reserved_node_id: string | null
  readonly output: string | null
  readonly error: string | null
  readonly created_at: number
  readonly completed_at: number | null
}

export type Caller =
  | { readonly _tag: "agent"; readonly agent: AgentRow }
  | { readonly _tag: "workspace"; readonly workspaceId: string; readonly workspaceName: string }

export const dispatchTimeoutMs = 30_000
const queueCap = 100
const retryBaseMs = 5_000
const retryMaxMs = 60_000

type Effects<A> = Effect.Effect<A, SqlError | WireEncodeError>

export interface InventoryOutcome {
  readonly open: number
  readonly completed: number
  readonly rescheduled: number
}

export class Actions extends Context.Tag("relay-broker/engine/Actions")<Actions, {
  /** `invokeAction` (spec §5.2): the 201 invocation object, or a refusal. */
  readonly invoke: (workspaceId: string, name: string, input: JsonObject, caller: Caller) => Effect.Effect<InvocationRow, EngineError | SqlError | WireEncodeError>
  /** A spawn placed by `input` (`cli`/`capability`, `target_node`…), bypassing any action named `spawn` (`node.spawn`). */
  readonly spawn: (workspaceId: string, input: JsonObject, caller: Caller) => Effect.Effect<InvocationRow, EngineError | SqlError | WireEncodeError>
  /** `POST /v1/agents/release`. */
  readonly release: (workspaceId: string, input: { readonly name: string; readonly reason: string | null; readonly delete_agent: boolean }, caller: Caller) => Effect.Effect<InvocationRow, EngineError | SqlError | WireEncodeError>
  /** Sends this node's queued invocations (attach, register, heartbeat). */
  readonly drain: (nodeId: string) => Effects<number>
  readonly onResult: (nodeId: string, frame: ActionResult) => Effects<void>
  readonly onInventory: (nodeId: string, agents: ReadonlyArray<InventoryAgent>) => Effects<InventoryOutcome>
  /** The node (or one provider of it) went offline: the invocations dispatched there are rescheduled. */
  readonly onNodeLost: (nodeId: string, provider?: string | undefined) => Effects<number>
  /** Dispatch timeouts and due retries (every sweep). */
  readonly sweep: Effects<number>
  /** Agent-hosted completion over HTTP by the handler agent. */
  readonly completeByAgent: (invocation: InvocationRow, agent: AgentRow, result: { readonly output?: Json; readonly error?: string }) => Effect.Effect<InvocationRow, EngineError | SqlError | WireEncodeError>
}>() {}

export const invocationJson = (invocation: InvocationRow) => ({
  invocation_id: invocation.id,
  action_name: invocation.action_name,
  handler_agent_id: invocation.handler_agent_id,
  handler_node_id: invocation.handler_node_id,
  dispatched_node_id: invocation.dispatched_node_id,
  input: parseJson(invocation.input),
  status: invocation.status,
  created_at: iso(invocation.created_at)
})

export const invocationDetailJson = (invocation: InvocationRow) => ({
  invocation_id: invocation.id,
  action_name: invocation.action_name,
  caller_id: invocation.caller_id,
  caller_name: invocation.caller_name,
  input: parseJson(invocation.input),
  output: parseJson(invocation.output),
  status: invocation.status,
  error: invocation.error,
  duration_ms: invocation.completed_at === null ? null : invocation.completed_at - invocation.created_at,
  dispatched_node_id: invocation.dispatched_node_id,
  dispatched_at: isoOrNull(invocation.dispatched_at),
  created_at: iso(invocation.created_at),
  completed_at: isoOrNull(invocation.completed_at)
})

export const actionJson = (action: ActionRow) => ({
  id: action.id,
  name: action.name,
  description: action.description,
  handler_agent_id: action.handler_agent_id,
  handler_node_id: action.handler_node_id,
  input_schema: parseJson(action.input_schema),
  output_schema: parseJson(action.output_schema),
  available_to: action.available_to === null ? null : parseStrings(action.available_to),
  is_active: action.is_active === 1,
  created_at: iso(action.created_at)
})

const stringField = (input: JsonObject, key: string): string | undefined => {
  const value = input[key]
  return typeof value === "string" && value !== "" ? value : undefined
}

export const make = Effect.gen(function*() {
  const store = yield* EngineStore
  const { sql } = store
  const agentById = (id: string) => Effect.provideService(Directory.agentById(id), EngineStore, store)
  const nodeById = (id: string) => Effect.provideService(Directory.nodeById(id), EngineStore, store)
  const nodeByName = (workspaceId: string, name: string) => Effect.provideService(Directory.nodeByName(workspaceId, name), EngineStore, store)
  const sockets = yield* NodeSockets
  const dispatcher = yield* Dispatcher
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

  const placeSpawn = (workspaceId: string, input: JsonObject, caller: Caller) =>
    Effect.gen(function*() {
      const capability = capabilityOf(input)
      if (capability === undefined) return yield* Effect.fail(badRequest("cli is required"))
      const target = stringField(input, "target_node") ?? stringField(input, "node") ?? stringField(input, "target")
      let node: NodeRow | undefined
      if (target === "self") {
        if (caller._tag !== "agent") {
          return yield* Effect.fail(badRequest("target \"self\" needs an agent caller", "placement_self_requires_agent"))
        }
        const fresh = yield* agentById(caller.agent.id)
        if (fresh?.location_type !== "via_node" || fresh.location_node_id === null) {
          return yield* Effect.fail(conflict("placement_self_unavailable", "The caller is not hosted on a node"))
        }
        node = yield* nodeById(fresh.location_node_id)
        if (node === undefined) return yield* Effect.fail(conflict("placement_self_unavailable", "The caller is not hosted on a node"))
      } else if (target !== undefined) {
        node = yield* nodeByName(workspaceId, target)
        if (node === undefined) return yield* Effect.fail(notFound("node_not_found", `Node "${target}" not found`))
      }
      if (node !== undefined) {
        if (!hasCapability(node, capability)) {
          return yield* Effect.fail(conflict("capability_mismatch", `Node "${node.name}" does not provide ${capability}`))
        }
        const at = yield* now
        let reserved = false
        if (isLive(node, at, config.nodeLivenessTtlMs) && node.handlers_live === 1) {
          reserved = yield* reserve(node.id)
          if (!reserved) return yield* Effect.fail(fail(503, "handler_unavailable", `Node "${node.name}" is at capacity`))
        }
        const invocation = yield* insert(yield* newInvocation(workspaceId, {
          actionName: "spawn", frameAction: capability, kind: "spawn", caller, input,
          handlerNodeId: node.id, targetNodeId: node.id, reservedNodeId: reserved ? node.id : null
        }))
        yield* dispatchTo(invocation, node.id)
        return yield* reload(invocation)
      }
      const claimed = yield* claim(workspaceId, capability, new Set())
      if (claimed === undefined) {
        return yield* Effect.fail(fail(503, "handler_unavailable", `No live node provides ${capability}`))
      }
      const invocation = yield* insert(yield* newInvocation(workspaceId, {
        actionName: "spawn", frameAction: capability, kind: "spawn", caller, input,
        handlerNodeId: claimed.id, reservedNodeId: claimed.id
      }))
      yield* dispatchTo(invocation, claimed.id)
      return yield* reload(invocation)
    })

  const deny = (action: ActionRow, caller: Caller) =>
    Effect.gen(function*() {
      const error = `Agent "${caller._tag === "agent" ? caller.agent.name : "workspace"}" may not invoke "${action.name}"`
      if (caller._tag === "agent") {
        yield* dispatcher.fanOut({
          type: "action.denied",
          key: `${action.name}:${caller.agent.id}`,
          msgId: action.name,
          data: { action_name: action.name, caller_name: caller.agent.name, error }
        }, [caller.agent.id])
      }
      return yield* Effect.fail(forbidden("action_denied", error))
    })

  const invoke = Effect.fn("Actions.invoke")(function*(workspaceId: string, name: string, input: JsonObject, caller: Caller) {
      const [action] = yield* sql<ActionRow>`SELECT * FROM actions WHERE workspace_id = ${workspaceId} AND name = ${name} AND is_active = 1`
      if (action !== undefined) {
        const allowed = action.available_to === null ? [] : parseStrings(action.available_to)
        if (allowed.length > 0 && (caller._tag !== "agent" || !allowed.includes(caller.agent.name))) {
          return yield* deny(action, caller)
        }
        if (action.handler_agent_id !== null) {
          const handler = yield* agentById(action.handler_agent_id)
          if (handler?.location_type !== "via_node" || handler.location_node_id === null) {
            return yield* Effect.fail(fail(503, "handler_unavailable", "handler is not bound to a node"))
          }
          const invocation = yield* insert(yield* newInvocation(workspaceId, {
            actionName: name, frameAction: name, kind: "agent", caller, input,
            handlerAgentId: handler.id, handlerNodeId: handler.location_node_id
          }))
          yield* dispatchTo(invocation, handler.location_node_id)
          return yield* reload(invocation)
        }
        if (action.handler_node_id !== null) {
          const provider = action.handler_provider ?? defaultProvider
          if (provider !== defaultProvider && action.queue !== 1 && !sockets.isConnected(action.handler_node_id, provider)) {
            return yield* Effect.fail(fail(503, "handler_unavailable", `The provider "${provider}" of action "${name}" is not connected`))
          }
          const reserved = name.startsWith("spawn") && (yield* reserve(action.handler_node_id))
          const invocation = yield* insert(yield* newInvocation(workspaceId, {
            actionName: name, frameAction: name, kind: "node", caller, input,
            handlerNodeId: action.handler_node_id, reservedNodeId: reserved ? action.handler_node_id : null
          }))
          yield* dispatchTo(invocation, action.handler_node_id)
          return yield* reload(invocation)
        }
        return yield* Effect.fail(fail(503, "handler_unavailable", `Action "${name}" has no handler`))
      }
      if (name === "spawn") return yield* placeSpawn(workspaceId, input, caller)
      if (name === "release") {
        const target = stringField(input, "name")
        if (target === undefined) return yield* Effect.fail(badRequest("name is required"))
        return yield* release(workspaceId, {
          name: target,
          reason: stringField(input, "reason") ?? null,
          delete_agent: input["delete_agent"] === true
        }, caller)
      }
      return yield* Effect.fail(notFound("action_not_found", `Action "${name}" not found`))
    })

  const release = Effect.fn("Actions.release")(function*(workspaceId: string, input: { readonly name: string; readonly reason: string | null; readonly delete_agent: boolean }, caller: Caller) {
      const [agent] = yield* sql<AgentRow>`SELECT * FROM agents WHERE workspace_id = ${workspaceId} AND name = ${input.name}`
      if (agent === undefined) return yield* Effect.fail(notFound("agent_not_found", `Agent "${input.name}" not found`))
      if (agent.location_type !== "via_node" || agent.location_node_id === null) {
        return yield* Effect.fail(conflict("agent_not_node_bound", `Agent "${input.name}" is not bound to a node`))
      }
      const invocation = yield* insert(yield* newInvocation(workspaceId, {
        actionName: "release", frameAction: "release", kind: "release", caller,
        input: { name: input.name, reason: input.reason, delete_agent: input.delete_agent },
        handlerNodeId: agent.location_node_id
      }))
      yield* dispatchTo(invocation, agent.location_node_id)
      return yield* reload(invocation)
    })

  const applyRelease = (invocation: InvocationRow) =>
    Effect.gen(function*() {
      const input = parseJson(invocation.input) as JsonObject
      const name = stringField(input, "name")
      if (name === undefined || invocation.dispatched_node_id === null) return
      const [agent] = yield* sql<AgentRow>`SELECT * FROM agents WHERE workspace_id = ${invocation.workspace_id} AND name = ${name}`
      if (agent === undefined) return
      const deactivated = yield* sql<{ id: string }>`UPDATE bindings SET status = 'inactive', updated_at = ${yield* now}
        WHERE agent_id = ${agent.id} AND node_id = ${invocation.dispatched_node_id} AND status = 'active' RETURNING id`
      if (deactivated.length > 0) {
        yield* sql`UPDATE nodes SET active_agents = MAX(active_agents - 1, 0) WHERE id = ${invocation.dispatched_node_id}`
      }
      if (input["delete_agent"] === true) {
        yield* sql`DELETE FROM members WHERE agent_id = ${agent.id}`
        yield* sql`DELETE FROM bindings WHERE agent_id = ${agent.id}`
        yield* sql`DELETE FROM agents WHERE id = ${agent.id}`
        return
      }
      const metadata = { ...(parseJson(agent.metadata) as JsonObject) }
      delete metadata["spawn"]
      delete metadata["cli"]
      metadata["release"] = { reason: stringField(input, "reason") ?? null, released_at: iso(yield* now) }
      yield* sql`UPDATE agents SET status = 'offline', location_type = 'self_connected', location_node_id = NULL,
        metadata = ${JSON.stringify(metadata)} WHERE id = ${agent.id}`
    })

  /** Terminal state, capacity released, release side effects, then the caller's seq-0 frame (spec §5.3, §5.5). */
  const finish = (invocation: InvocationRow, result: { readonly output?: Json; readonly error?: string }) =>
    Effect.gen(function*() {
      const at = yield* now
      const status = result.error === undefined ? "completed" : "failed"
      const output = result.error === undefined ? (result.output ?? null) : null
      yield* sql`UPDATE invocations SET status = ${status}, output = ${JSON.stringify(output)}, error = ${result.error ?? null},
        completed_at = ${at}, retry_after_at = NULL, queued_node_id = NULL WHERE id = ${invocation.id}`
      yield* releaseReservation(invocation)
      if (invocation.kind === "release" && status === "completed") yield* applyRelease(invocation)
      if (invocation.caller_agent_id !== null) {
        yield* dispatcher.fanOut({
          type: status === "completed" ? "action.completed" : "action.failed",
          key: invocation.id,
          msgId: invocation.id,
          data: { invocation_id: invocation.id, action_name: invocation.action_name, status, output, error: result.error ?? null }
        }, [invocation.caller_agent_id])
      }
      return yield* reload(invocation)
    })

  /**
   * Sends the same invocation id again: agent-hosted to its handler's node, release and node actions
   * to their node, spawns re-placed (excluding attempted nodes when asked) unless they had a target.
   */
  const redispatch = (invocation: InvocationRow, excludeAttempted: boolean) =>
    Effect.gen(function*() {
      yield* releaseReservation(invocation)
      const current = yield* reload(invocation)
      switch (current.kind) {
        case "agent": {
          const handler = current.handler_agent_id === null ? undefined : yield* agentById(current.handler_agent_id)
          if (handler?.location_type !== "via_node" || handler.location_node_id === null) return yield* backoff(current)
          return yield* dispatchTo(current, handler.location_node_id)
        }
        case "release":
        case "node":
          return current.handler_node_id === null ? yield* backoff(current) : yield* dispatchTo(current, current.handler_node_id)
        case "spawn": {
          if (current.target_node_id !== null) {
            if (yield* reserve(current.target_node_id)) {
              yield* sql`UPDATE invocations SET reserved_node_id = ${current.target_node_id} WHERE id = ${current.id}`
            }
            return yield* dispatchTo(yield* reload(current), current.target_node_id)
          }
          const exclude = new Set(excludeAttempted ? parseStrings(current.attempted_node_ids) : [])
          const node = yield* claim(current.workspace_id, current.frame_action, exclude)
          if (node === undefined) return yield* backoff(current)
          yield* sql`UPDATE invocations SET reserved_node_id = ${node.id}, handler_node_id = ${node.id} WHERE id = ${current.id}`
          return yield* dispatchTo(yield* reload(current), node.id)
        }
      }
    })

  const drain = Effect.fn("Actions.drain")(function*(nodeId: string) {
      if (!sockets.isConnected(nodeId)) return 0
      const queued = yield* sql<InvocationRow>`SELECT * FROM invocations WHERE queued_node_id = ${nodeId} AND status = 'pending'
        ORDER BY created_at, id LIMIT ${queueCap}`
      const at = yield* now
      for (const invocation of queued) {
        if (invocation.kind === "spawn" && invocation.reserved_node_id === null) {
          if (!(yield* reserve(nodeId))) {
            yield* sql`UPDATE invocations SET queued_node_id = NULL, retry_after_at = ${at + retryBaseMs} WHERE id = ${invocation.id}`
            continue
          }
          yield* sql`UPDATE invocations SET reserved_node_id = ${nodeId} WHERE id = ${invocation.id}`
        }
        yield* dispatchTo(yield* reload(invocation), nodeId)
      }
      return queued.length
    })

  const onResult = Effect.fn("Actions.onResult")(function*(nodeId: string, frame: ActionResult) {
      const invocation = yield* load(frame.invocation_id)
      if (invocation === undefined || invocation.status !== "dispatched" || invocation.dispatched_node_id !== nodeId) return
      if (frame.error === "handler_unavailable") {
        yield* sql`UPDATE nodes SET handlers_live = 0 WHERE id = ${nodeId}`
        if (invocation.kind === "spawn" && invocation.target_node_id === null) {
          yield* releaseReservation(invocation)
          const exclude = new Set(parseStrings(invocation.attempted_node_ids))
          const node = yield* claim(invocation.workspace_id, invocation.frame_action, exclude)
          if (node !== undefined) {
            yield* sql`UPDATE invocations SET reserved_node_id = ${node.id}, handler_node_id = ${node.id} WHERE id = ${invocation.id}`
            yield* dispatchTo(yield* reload(invocation), node.id)
            return
          }
        }
      }
      yield* finish(invocation, "error" in frame && frame.error !== undefined ? { error: frame.error } : { output: frame.output ?? null })
    })

  const onInventory = Effect.fn("Actions.onInventory")(function*(nodeId: string, agents: ReadonlyArray<InventoryAgent>) {
      const open = yield* sql<InvocationRow>`SELECT * FROM invocations WHERE status = 'dispatched' AND dispatched_node_id = ${nodeId}
        ORDER BY created_at`
      const byId = new Map(open.map((invocation) => [invocation.id, invocation]))
      let completed = 0
      for (const item of agents) {
        const invocation = item.invocation_id === undefined ? undefined : byId.get(item.invocation_id)
        if (invocation === undefined) continue
        byId.delete(invocation.id)
        yield* finish(invocation, {
          output: { agent_id: item.agent_id, name: item.name, invocation_id: invocation.id, session_ref: item.session_ref ?? null }
        })
        completed++
      }
      let rescheduled = 0
      for (const invocation of byId.values()) {
        yield* redispatch(invocation, true)
        rescheduled++
      }
      return { open: open.length, completed, rescheduled }
    })

  const onNodeLost = Effect.fn("Actions.onNodeLost")(function*(nodeId: string, provider?: string | undefined) {
      const open = yield* sql<InvocationRow>`SELECT * FROM invocations WHERE status = 'dispatched' AND dispatched_node_id = ${nodeId}
        ${provider === undefined ? sql`` : sql`AND (dispatched_provider = ${provider} OR dispatched_provider IS NULL)`}
        ORDER BY created_at`
      for (const invocation of open) yield* redispatch(invocation, true)
      return open.length
    })

  const sweep = Effect.gen(function*() {
    const at = yield* now
    const due = yield* sql<InvocationRow>`SELECT * FROM invocations
      WHERE (status = 'dispatched' AND dispatched_at <= ${at - config.dispatchTimeoutMs})
         OR (status = 'pending' AND retry_after_at IS NOT NULL AND retry_after_at <= ${at})
      ORDER BY created_at`
    for (const invocation of due) yield* redispatch(invocation, invocation.status === "dispatched")
    return due.length
  })

  const completeByAgent = Effect.fn("Actions.completeByAgent")(function*(invocation: InvocationRow, agent: AgentRow, result: { readonly output?: Json; readonly error?: string }) {
      if (invocation.kind !== "agent") {
        return yield* Effect.fail(forbidden("node_owned_invocation", "This invocation is completed by its node"))
      }
      if (invocation.handler_agent_id !== agent.id) {
        return yield* Effect.fail(forbidden("not_invocation_handler", "Only the handler agent may complete this invocation"))
      }
      if (invocation.status === "completed" || invocation.status === "failed") return invocation
      return yield* finish(invocation, result)
    })

  return Actions.of({ invoke, spawn: placeSpawn, release, drain, onResult, onInventory, onNodeLost, sweep, completeByAgent })
})

export const layer: Layer.Layer<Actions, never, EngineStore | NodeSockets | Dispatcher | EngineConfig> = Layer.effect(Actions, make)
