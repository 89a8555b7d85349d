import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Json, JsonObject } from "../wire/Json.js"
import type { ActionResult, InventoryAgent, WireEncodeError } from "../wire/index.js"
import { type ActionRow, type Caller, type Effects, type InvocationRow, queueCap, retryBaseMs, stringField } from "./actionRows.js"
import { Dispatcher } from "./Dispatcher.js"
import { EngineConfig } from "./EngineConfig.js"
import { badRequest, conflict, type EngineError, fail, forbidden, notFound } from "./EngineError.js"
import { EngineStore, now } from "./EngineStore.js"
import * as InvocationDispatch from "./invocationDispatch.js"
import * as InvocationOutcome from "./invocationOutcome.js"
import { defaultProvider, NodeSockets } from "./NodeSockets.js"
import { type AgentRow, isLive, type NodeRow, parseStrings } from "./rows.js"

// Actions, spawn placement, release and the invocation lifecycle (spec §5). Callers hold the lock.
// Rows and JSON forms: actionRows.ts; placing and sending: invocationDispatch.ts; ending and
// re-sending: invocationOutcome.ts.

export {
  type ActionRow,
  actionJson,
  type Caller,
  dispatchTimeoutMs,
  invocationDetailJson,
  invocationJson,
  type InvocationKind,
  type InvocationRow
} from "./actionRows.js"

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

export const make = Effect.gen(function*() {
  const dispatch = yield* InvocationDispatch.make
  const { sql, agentById, nodeById, nodeByName, load, reload, reserve, releaseReservation, dispatchTo } = dispatch
  const { capabilityOf, hasCapability, claim, insert, newInvocation } = dispatch
  const { finish, redispatch } = yield* InvocationOutcome.make(dispatch)
  const sockets = yield* NodeSockets
  const dispatcher = yield* Dispatcher
  const config = yield* EngineConfig

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
