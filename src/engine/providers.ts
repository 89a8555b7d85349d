import * as Effect from "effect/Effect"
import { capabilityKind, type CapabilityAcceptance, type FleetCapability } from "../wire/frames.js"
import type { JsonObject } from "../wire/Json.js"
import { EngineStore, now } from "./EngineStore.js"
import { snowflake } from "./ids.js"
import { defaultProvider } from "./NodeSockets.js"
import { type Capability, parseCapabilities } from "./rows.js"

// Node providers (relaycast 6, provider-protocol.md §1): each provider of a node keeps its own
// capabilities, capacity and load; the node row carries their aggregate (union of capabilities,
// summed max/active agents, highest load, any handlers live). Callers hold the engine lock.

export type ProviderRow = {
  readonly node_id: string
  readonly name: string
  readonly instance_id: string
  readonly capabilities: string
  readonly max_agents: number
  readonly active_agents: number
  readonly load: number
  readonly handlers_live: number
  readonly status: string
  readonly version: string | null
  readonly machine_id: string | null
  readonly last_heartbeat_at: number | null
  readonly created_at: number
}

export const capabilitiesText = (capabilities: ReadonlyArray<FleetCapability | Capability>): string =>
  JSON.stringify(capabilities.map((capability) => {
    const { global, queue } = capability as FleetCapability
    return {
      name: capability.name,
      ...(capability.kind === undefined ? {} : { kind: capability.kind }),
      ...(global === undefined ? {} : { global }),
      ...(queue === undefined ? {} : { queue }),
      ...(capability.metadata === undefined ? {} : { metadata: capability.metadata as JsonObject })
    }
  }))

export const listProviders = (nodeId: string) =>
  Effect.flatMap(EngineStore, ({ sql }) => sql<ProviderRow>`SELECT * FROM node_providers WHERE node_id = ${nodeId} ORDER BY created_at, name`)

export interface ProviderRegistration {
  readonly name: string
  readonly instanceId: string
  readonly capabilities: ReadonlyArray<FleetCapability>
  readonly maxAgents: number
  readonly version: string
  readonly machineId: string | undefined
}

/** A provider's registration: its capabilities fully replace its previous set. */
export const upsertProvider = (nodeId: string, registration: ProviderRegistration) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const at = yield* now
    const capabilities = capabilitiesText(registration.capabilities)
    const handlersLive = registration.capabilities.length > 0 ? 1 : 0
    yield* sql`INSERT INTO node_providers (node_id, name, instance_id, capabilities, max_agents, active_agents, load, handlers_live,
        status, version, machine_id, last_heartbeat_at, created_at)
      VALUES (${nodeId}, ${registration.name}, ${registration.instanceId}, ${capabilities}, ${registration.maxAgents}, 0, 0,
        ${handlersLive}, 'online', ${registration.version}, ${registration.machineId ?? null}, ${at}, ${at})
      ON CONFLICT (node_id, name) DO UPDATE SET instance_id = excluded.instance_id, capabilities = excluded.capabilities,
        max_agents = excluded.max_agents, handlers_live = excluded.handlers_live, status = 'online', version = excluded.version,
        machine_id = COALESCE(excluded.machine_id, node_providers.machine_id), last_heartbeat_at = excluded.last_heartbeat_at`
  })

export interface ProviderBeat {
  readonly load: number
  readonly activeAgents: number
  readonly handlersLive: boolean
  readonly capabilities: ReadonlyArray<FleetCapability> | undefined
  readonly maxAgents: number | undefined
  readonly version: string | undefined
}

/** A heartbeat of one provider; a provider that never registered (a v5 heartbeat first) is created. */
export const heartbeatProvider = (nodeId: string, name: string, instanceId: string, beat: ProviderBeat) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const at = yield* now
    yield* sql`INSERT INTO node_providers (node_id, name, instance_id, created_at) VALUES (${nodeId}, ${name}, ${instanceId}, ${at})
      ON CONFLICT (node_id, name) DO NOTHING`
    yield* sql`UPDATE node_providers SET load = ${beat.load}, active_agents = ${beat.activeAgents},
      handlers_live = ${beat.handlersLive ? 1 : 0}, status = 'online', last_heartbeat_at = ${at}
      WHERE node_id = ${nodeId} AND name = ${name}`
    if (beat.capabilities !== undefined) {
      yield* sql`UPDATE node_providers SET capabilities = ${capabilitiesText(beat.capabilities)} WHERE node_id = ${nodeId} AND name = ${name}`
    }
    if (beat.maxAgents !== undefined) yield* sql`UPDATE node_providers SET max_agents = ${beat.maxAgents} WHERE node_id = ${nodeId} AND name = ${name}`
    if (beat.version !== undefined) yield* sql`UPDATE node_providers SET version = ${beat.version} WHERE node_id = ${nodeId} AND name = ${name}`
  })

/** A disconnected provider hosts nothing live: offline, no load, no agents, no handlers. */
export const providerOffline = (nodeId: string, name: string | undefined) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const at = yield* now
    yield* sql`UPDATE node_providers SET status = 'offline', handlers_live = 0, load = 0, active_agents = 0, last_heartbeat_at = ${at}
      WHERE node_id = ${nodeId} ${name === undefined ? sql`` : sql`AND name = ${name}`}`
  })

/** `node.deregister` with a provider: the provider and the actions it materialised go. */
export const removeProvider = (nodeId: string, name: string) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    yield* sql`DELETE FROM actions WHERE handler_node_id = ${nodeId} AND handler_provider = ${name}`
    yield* sql`DELETE FROM node_providers WHERE node_id = ${nodeId} AND name = ${name}`
  })

/**
 * Recomputes the node row from its providers: union of capabilities (first provider wins a name),
 * summed capacity (and, from heartbeats, active agents), highest load, any online provider's handlers, online while one
 * provider is. A node without provider rows (enrolled, never registered) is left alone.
 */
export const recomputeNode = (nodeId: string, options: { readonly activeAgents?: boolean } = {}) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const providers = yield* listProviders(nodeId)
    if (providers.length === 0) return
    const online = providers.filter((provider) => provider.status === "online")
    const byName = new Map<string, Capability>()
    for (const provider of providers) {
      for (const capability of parseCapabilities(provider.capabilities)) {
        if (!byName.has(capability.name)) byName.set(capability.name, capability)
      }
    }
    const maxAgents = providers.reduce((sum, provider) => sum + provider.max_agents, 0)
    const activeAgents = providers.reduce((sum, provider) => sum + provider.active_agents, 0)
    const load = providers.reduce((max, provider) => Math.max(max, provider.load), 0)
    const handlersLive = online.some((provider) => provider.handlers_live === 1) ? 1 : 0
    const lastBeat = online.reduce<number | null>((latest, provider) =>
      provider.last_heartbeat_at !== null && (latest === null || provider.last_heartbeat_at > latest) ? provider.last_heartbeat_at : latest, null)
    const status = online.length > 0 ? "online" : "offline"
    yield* sql`UPDATE nodes SET capabilities = ${capabilitiesText([...byName.values()])}, max_agents = ${maxAgents},
      ${options.activeAgents === true ? sql`active_agents = ${activeAgents},` : sql``} load = ${load}, handlers_live = ${handlersLive}, status = ${status},
      last_heartbeat_at = COALESCE(${lastBeat}, ${yield* now}) WHERE id = ${nodeId} AND role != 'direct'`
  })

/** The provider of this node that advertises `capability` (a spawn's `spawn:<cli>`, `release`, an action name). */
export const providerWith = (nodeId: string, capability: string) =>
  Effect.map(listProviders(nodeId), (providers) =>
    providers.find((provider) => parseCapabilities(provider.capabilities).some((c) => c.name === capability))?.name)

/** One verdict per advertised capability; `refused` names the ones that could not be taken, with why. */
export const acceptance = (
  capabilities: ReadonlyArray<FleetCapability>,
  refused: ReadonlyMap<string, string>
): ReadonlyArray<CapabilityAcceptance> =>
  capabilities.map((capability) => {
    const reason = refused.get(capability.name)
    return {
      name: capability.name,
      kind: capabilityKind(capability),
      accepted: reason === undefined,
      ...(reason === undefined ? {} : { reason })
    }
  })

/** A synthetic instance id for a socket that named no provider. */
export const defaultInstance = (): string => `conn_${snowflake()}`

export { defaultProvider }
