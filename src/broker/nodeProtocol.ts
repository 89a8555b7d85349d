import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import {
  AgentRegisterReplyData,
  capabilityKind,
  deliveryCursorCapability,
  type FleetCapability,
  NodeRegisterReplyData,
  type NodeToServer,
  type ProviderIdentity
} from "../wire/frames.js"
import type { Json } from "../wire/Json.js"

// The two generations of the node protocol this broker speaks (provider-protocol.md):
// - "provider" (relaycast 6+): `provider: {name: "broker", instance_id}` on node frames, capability
//   kinds, and `relay:delivery-cursor-v1` so the engine answers `agent.register` with the agent's
//   `delivery_ack_seq`;
// - "v5": none of that. A strict v5 engine refuses the provider fields with `invalid_message`; the
//   broker then falls back to v5 for the rest of the process.

export type Dialect = "provider" | "v5"

export const providerName = "broker"

/** A fresh connection epoch: a reconnect replaces the previous attachment of the `broker` provider. */
export const newInstanceId = (): string => `broker_${randomBytes(16).toString("hex")}`

export interface Manifest {
  readonly dialect: Dialect
  readonly provider: ProviderIdentity
  /** The `spawn:<harness>` capabilities (names only; kinds are added for the provider dialect). */
  readonly spawn: ReadonlyArray<FleetCapability>
  /** The handlers of connected fleet sidecars (SidecarHandlers), with their own kinds. */
  readonly handlers?: ReadonlyArray<FleetCapability>
}

/** Sidecar handlers not already advertised as one of the node's own `spawn:*` capacities. */
const extraHandlers = (manifest: Manifest): ReadonlyArray<FleetCapability> =>
  (manifest.handlers ?? []).filter((handler) =>
    handler.name !== "release" && !manifest.spawn.some((own) => own.name === handler.name)
  )

/**
 * What the node advertises: in the provider dialect `spawn:*` and `release` as `capacity`, plus the
 * cursor capability; in v5 only `spawn:*` by name (a v5 engine would make `release` or any other
 * name a workspace action pinned to this node).
 */
export const advertised = (manifest: Manifest): ReadonlyArray<FleetCapability> =>
  manifest.dialect === "v5"
    ? [...manifest.spawn, ...extraHandlers(manifest)].map(({ name }) => ({ name }))
    : [
      ...manifest.spawn.map(({ name, metadata }) => ({ name, kind: "capacity", ...(metadata === undefined ? {} : { metadata }) })),
      ...extraHandlers(manifest).map((handler) => ({ ...handler, kind: capabilityKind(handler) })),
      { name: "release", kind: "capacity" },
      { name: deliveryCursorCapability, kind: "capacity" }
    ]

const providerField = (manifest: Manifest) => (manifest.dialect === "provider" ? { provider: manifest.provider } : {})

export const registerFrame = (
  manifest: Manifest,
  node: { readonly id: string; readonly name: string; readonly version: string; readonly requestId: string }
): NodeToServer => ({
  v: 1,
  type: "node.register",
  id: node.requestId,
  name: node.name,
  node_id: node.id,
  capabilities: advertised(manifest),
  max_agents: 0,
  tags: [],
  version: node.version,
  ...providerField(manifest),
  resume_cursor: null
})

export const heartbeatFrame = (
  manifest: Manifest,
  node: { readonly id: string; readonly name: string; readonly version: string; readonly activeAgents: number }
): NodeToServer => ({
  v: 1,
  type: "node.heartbeat",
  ...providerField(manifest),
  name: node.name,
  node_id: node.id,
  capabilities: advertised(manifest),
  max_agents: 0,
  version: node.version,
  load: 0,
  active_agents: node.activeAgents,
  handlers_live: manifest.spawn.length > 0 || extraHandlers(manifest).length > 0
})

export const deregisterFrame = (manifest: Manifest): NodeToServer => ({ v: 1, type: "node.deregister", ...providerField(manifest) })

/** An `error` answer to our `node.register` that means "this engine does not know providers". */
export const refusesProviders = (manifest: Manifest, error: { readonly code: string; readonly message: string }): boolean =>
  manifest.dialect === "provider" && error.code === "invalid_message" && /provider|kind|unexpected|is not allowed/i.test(error.message)

/** The `accepted_capabilities` entries the engine refused, as log lines (none from a v5 engine). */
export const refusedCapabilities = (data: Json): ReadonlyArray<string> =>
  Schema.decodeUnknownOption(NodeRegisterReplyData)(data).pipe(
    Option.map((reply) =>
      (reply.accepted_capabilities ?? [])
        .filter((entry) => !entry.accepted)
        .map((entry) => `${entry.name} (${entry.kind}${entry.reason === undefined ? "" : `: ${entry.reason}`})`)
    ),
    Option.getOrElse((): ReadonlyArray<string> => [])
  )

/** The engine's cursor for a registered agent, when it sent one (relay:delivery-cursor-v1). */
export const serverCursor = (data: Json): Option.Option<{ readonly agentId: string; readonly name: string | undefined; readonly ackSeq: number }> =>
  Schema.decodeUnknownOption(AgentRegisterReplyData)(data).pipe(
    Option.flatMap((reply) =>
      reply.delivery_ack_seq === undefined
        ? Option.none()
        : Option.some({ agentId: reply.agent_id, name: reply.name, ackSeq: reply.delivery_ack_seq })
    )
  )

export { capabilityKind }
