import * as Effect from "effect/Effect"
import {
  capabilityKind,
  deliveryCursorCapability,
  type FleetCapability,
  type NodeDeregister,
  type NodeHeartbeat,
  type NodeRegister,
  type NodeSpawn
} from "../wire/frames.js"
import type { JsonObject } from "../wire/Json.js"
import { Actions, invocationJson } from "./Actions.js"
import { materializeActions } from "./capabilityActions.js"
import { nodeById } from "./directory.js"
import { EngineConfig } from "./EngineConfig.js"
import { fail } from "./EngineError.js"
import { EngineStore, now } from "./EngineStore.js"
import { defaultProvider, type NodeSession, NodeSockets } from "./NodeSockets.js"
import {
  acceptance,
  defaultInstance,
  heartbeatProvider,
  providerOffline,
  recomputeNode,
  removeProvider,
  upsertProvider
} from "./providers.js"
import { type NodeRow, nodeJson, parseCapabilities } from "./rows.js"

// `node.register`, `node.heartbeat`, `node.deregister` and `node.spawn` with providers (spec §3.4,
// §3.5, provider-protocol.md §1). Callers hold the engine lock.

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
    if (other !== undefined) return yield* Effect.fail(fail(409, "node_name_conflict", `Node name "${name}" is already enrolled`))
  })

/**
 * Makes this socket the attachment of `provider` (a new instance replaces the previous socket; the
 * same instance from a second open socket is refused).
 */
const claimProvider = (session: NodeSession, provider: string, instanceId: string) =>
  Effect.gen(function*() {
    const sockets = yield* NodeSockets
    const outcome = yield* sockets.claim(session, provider, instanceId)
    if (outcome._tag === "Conflict") {
      return yield* Effect.fail(fail(409, "provider_instance_conflict",
        `Provider "${provider}" instance "${instanceId}" is already connected to this node`))
    }
  })

/** A socket that speaks without naming a provider is the node's `default` provider (a v5 broker). */
export const claimDefault = (session: NodeSession) =>
  session.provider !== undefined ? Effect.void : claimProvider(session, defaultProvider, defaultInstance())

/** A v5 engine never answers with `delivery_ack_seq`, whatever the node advertises. */
const cursorCapable = (config: EngineConfig["Type"], capabilities: ReadonlyArray<FleetCapability>) =>
  config.nodeProtocol !== "v5" && capabilities.some((capability) => capability.name === deliveryCursorCapability)

/** The provider hosting the node's agents: it registers them, or could (capacity to spawn). */
const hostsAgents = (provider: string, capabilities: ReadonlyArray<FleetCapability>) =>
  provider === defaultProvider || provider === "broker" ||
  capabilities.some((capability) => capabilityKind(capability) === "capacity" && capability.name !== "relay:live-agents:v1")

/** `node.register`: the provider's attachment and registration; the reply data. */
export const registerNode = (session: NodeSession, frame: NodeRegister) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const config = yield* EngineConfig
    const sockets = yield* NodeSockets
    yield* checkNodeId(session, frame.node_id)
    const node = yield* requireSessionNode(session)
    yield* checkName(node, frame.name)
    const provider = frame.provider?.name ?? defaultProvider
    const instanceId = frame.provider?.instance_id ??
      (session.provider === defaultProvider && session.instanceId !== undefined ? session.instanceId : defaultInstance())
    yield* claimProvider(session, provider, instanceId)
    session.cursorCapable = cursorCapable(config, frame.capabilities)
    const at = yield* now
    let refused: ReadonlyMap<string, string> = new Map()
    if (node.role === "direct") {
      yield* sql`UPDATE nodes SET name = ${frame.name}, version = ${frame.version}, status = 'online',
        last_heartbeat_at = ${at}, capabilities = '[]', max_agents = 1, active_agents = 1, handlers_live = 0
        WHERE id = ${node.id}`
    } else {
      yield* upsertProvider(node.id, {
        name: provider,
        instanceId,
        capabilities: frame.capabilities,
        maxAgents: frame.max_agents,
        version: frame.version,
        machineId: frame.machine_id
      })
      yield* sql`UPDATE nodes SET name = ${frame.name}, tags = ${JSON.stringify(frame.tags)}, version = ${frame.version},
        kind = 'ws', role = 'broker' WHERE id = ${node.id}`
      refused = yield* materializeActions(node, provider, frame.capabilities)
      yield* recomputeNode(node.id)
    }
    if (hostsAgents(provider, frame.capabilities)) yield* sockets.setHost(session)
    const updated = yield* requireSessionNode(session)
    if (refused.size > 0) {
      yield* Effect.logWarning("node.register: capabilities refused", { node: node.name, provider, refused: Object.fromEntries(refused) })
    }
    return {
      ...nodeJson(updated, at, config.nodeLivenessTtlMs),
      provider: { name: provider, instance_id: instanceId },
      accepted_capabilities: acceptance(frame.capabilities, refused)
    }
  })

/** `node.heartbeat`: liveness, load and (when present) the roster fields of the sending provider. No reply. */
export const heartbeat = (session: NodeSession, frame: NodeHeartbeat) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    yield* checkNodeId(session, frame.node_id)
    const node = yield* requireSessionNode(session)
    if (frame.provider !== undefined && (frame.provider.name !== session.provider || frame.provider.instance_id !== session.instanceId)) {
      yield* claimProvider(session, frame.provider.name, frame.provider.instance_id)
    }
    yield* claimDefault(session)
    const at = yield* now
    if (node.role === "direct") {
      yield* sql`UPDATE nodes SET status = 'online', last_heartbeat_at = ${at}, load = ${frame.load} WHERE id = ${node.id}`
      return
    }
    const provider = session.provider!
    yield* heartbeatProvider(node.id, provider, session.instanceId!, {
      load: frame.load,
      activeAgents: frame.active_agents,
      handlersLive: frame.handlers_live,
      capabilities: frame.capabilities,
      maxAgents: frame.max_agents,
      version: frame.version
    })
    if (frame.name !== undefined && frame.name !== node.name) {
      const [other] = yield* sql<{ id: string }>`SELECT id FROM nodes
        WHERE workspace_id = ${node.workspace_id} AND name = ${frame.name} AND id != ${node.id} LIMIT 1`
      if (other === undefined) yield* sql`UPDATE nodes SET name = ${frame.name} WHERE id = ${node.id}`
    }
    if (frame.capabilities !== undefined) {
      session.cursorCapable = cursorCapable(yield* EngineConfig, frame.capabilities)
      yield* materializeActions(node, provider, frame.capabilities)
    }
    if (frame.version !== undefined) yield* sql`UPDATE nodes SET version = ${frame.version} WHERE id = ${node.id}`
    yield* recomputeNode(node.id, { activeAgents: true })
  })

/**
 * One provider of the node is gone (its socket closed): it goes offline with the invocations sent to
 * it rescheduled; the node's agents go offline only if it hosted them.
 */
export const providerLost = (nodeId: string, provider: string, hostedAgents: boolean) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const actions = yield* Actions
    yield* providerOffline(nodeId, provider)
    if (hostedAgents) {
      yield* sql`UPDATE agents SET status = 'offline', last_seen = ${yield* now}
        WHERE location_type = 'via_node' AND location_node_id = ${nodeId}`
    }
    yield* actions.onNodeLost(nodeId, provider)
    yield* recomputeNode(nodeId)
  })

/**
 * `node.deregister` with a provider removes that provider only (its socket stays open); without one,
 * the node goes offline (spec §3.7) — the caller does that.
 */
export const deregisterProvider = (session: NodeSession, frame: NodeDeregister) =>
  Effect.gen(function*() {
    const sockets = yield* NodeSockets
    const name = frame.provider!.name
    const wasHost = sockets.route(session.nodeId) === name
    if (session.provider === name) yield* sockets.unclaim(session)
    yield* providerLost(session.nodeId, name, wasHost)
    yield* removeProvider(session.nodeId, name)
    yield* recomputeNode(session.nodeId)
    return !sockets.isConnected(session.nodeId)
  })

/**
 * `node.spawn`: a spawn on this connection's own node through its capacity, never through an action
 * named `spawn`; the reply is the invocation (as `POST /v1/agents/spawn` answers).
 */
export const spawnOnOwnNode = (session: NodeSession, frame: NodeSpawn) =>
  Effect.gen(function*() {
    const actions = yield* Actions
    const node = yield* requireSessionNode(session)
    const input: JsonObject = { ...frame.input, target_node: node.name }
    const capability = typeof input["capability"] === "string" ? input["capability"] : input["cli"]
    if (typeof capability !== "string" || capability === "") {
      return yield* Effect.fail(fail(400, "invalid_request", "node.spawn input needs cli (or capability)"))
    }
    const wanted = capability.startsWith("spawn:") ? capability : `spawn:${capability}`
    if (!parseCapabilities(node.capabilities).some((c) => c.name === wanted)) {
      return yield* Effect.fail(fail(409, "capability_mismatch", `Node "${node.name}" does not provide ${wanted}`))
    }
    const invocation = yield* actions.spawn(node.workspace_id, input, { _tag: "workspace", workspaceId: node.workspace_id, workspaceName: node.name })
    return invocationJson(invocation)
  })
