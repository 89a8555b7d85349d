import * as Schema from "effect/Schema"
import { Json, JsonObject } from "./Json.js"

// Every frame is a plain struct `{v: 1, type, ...fields}`; `type` tags the unions.
const frame = <T extends string, F extends Schema.Struct.Fields>(type: T, fields: F) =>
  Schema.Struct({ v: Schema.Literal(1), type: Schema.tag(type), ...fields })

/** Outbound frames (node → server) reject unknown properties in both directions. */
const strict = { parseOptions: { onExcessProperty: "error" } } as const

/** Absent is allowed; an explicit `null` (or `undefined`) is rejected. */
const optional = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

const RequestId = { id: optional(Schema.String) }

export const DeliveryMode = Schema.Literal("wait", "steer")
export type DeliveryMode = typeof DeliveryMode.Type

export const FleetCapability = Schema.Struct({
  name: Schema.String,
  /** `action` or `capacity` (relaycast 6); absent or anything else is classified by name. */
  kind: optional(Schema.String),
  /** An `action` that claims the workspace-global name (relaycast 6). */
  global: optional(Schema.Boolean),
  /** An `action` whose invocations queue while its provider is down (relaycast 6). */
  queue: optional(Schema.Boolean),
  metadata: optional(JsonObject)
}).annotations({ identifier: "FleetCapability", ...strict })
export type FleetCapability = typeof FleetCapability.Type

/**
 * Which provider of a node a frame speaks for (relaycast 6): `name` is its stable identity,
 * `instance_id` its connection epoch. Absent means the synthetic provider `default` (a v5 broker).
 */
export const ProviderIdentity = Schema.Struct({
  name: Schema.String,
  instance_id: Schema.String
}).annotations({ identifier: "ProviderIdentity", ...strict })
export type ProviderIdentity = typeof ProviderIdentity.Type

/** `spawn`, `spawn:*` and `release` are capacity (placement, never actions); an explicit kind wins. */
export const capabilityKind = (capability: { readonly name: string; readonly kind?: string | undefined }): "action" | "capacity" => {
  if (capability.kind === "action" || capability.kind === "capacity") return capability.kind
  const name = capability.name
  return name === "spawn" || name === "release" || name.startsWith("spawn:") ? "capacity" : "action"
}

/** The `node.register` reply's verdict on one advertised capability (relaycast 6). */
export const CapabilityAcceptance = Schema.Struct({
  name: Schema.String,
  kind: Schema.Literal("action", "capacity"),
  accepted: Schema.Boolean,
  reason: optional(Schema.String)
}).annotations({ identifier: "CapabilityAcceptance" })
export type CapabilityAcceptance = typeof CapabilityAcceptance.Type

/**
 * The parts of a `node.register` reply's data a provider-era client reads; the node's public fields
 * ride along (tolerated). A v5 engine sends neither field.
 */
export const NodeRegisterReplyData = Schema.Struct({
  provider: optional(ProviderIdentity),
  accepted_capabilities: optional(Schema.Array(CapabilityAcceptance))
}).annotations({ identifier: "NodeRegisterReplyData" })
export type NodeRegisterReplyData = typeof NodeRegisterReplyData.Type

/** Advertised by a broker that takes `delivery_ack_seq` in `agent.register` replies. */
export const deliveryCursorCapability = "relay:delivery-cursor-v1"
/** Carries the node's live agent names in `metadata.names` (12.4.1 heartbeats). */
export const liveAgentsCapability = "relay:live-agents:v1"

export const InventoryAgent = Schema.Struct({
  agent_id: Schema.String,
  name: Schema.String,
  invocation_id: optional(Schema.String),
  session_ref: optional(Schema.String)
}).annotations({ identifier: "InventoryAgent", ...strict })
export type InventoryAgent = typeof InventoryAgent.Type

const Load = Schema.Finite.pipe(Schema.nonNegative()).annotations({ identifier: "Load" })

// ---------------------------------------------------------------------------------------------
// node → server

export const NodeRegister = frame("node.register", {
  ...RequestId,
  name: Schema.String,
  node_id: Schema.String,
  capabilities: Schema.Array(FleetCapability),
  max_agents: Schema.NonNegativeInt,
  tags: Schema.Array(Schema.String),
  version: Schema.String,
  provider: optional(ProviderIdentity),
  machine_id: optional(Schema.String),
  // Always encoded (as null when unset); may be absent on input.
  resume_cursor: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null })
}).annotations({ identifier: "NodeRegister", ...strict })
export type NodeRegister = typeof NodeRegister.Type

export const NodeHeartbeat = frame("node.heartbeat", {
  ...RequestId,
  provider: optional(ProviderIdentity),
  // The roster snapshot is optional for the engine; this broker always sends it.
  name: optional(Schema.String),
  node_id: optional(Schema.String),
  capabilities: optional(Schema.Array(FleetCapability)),
  max_agents: optional(Schema.NonNegativeInt),
  version: optional(Schema.String),
  load: Load,
  active_agents: Schema.NonNegativeInt,
  handlers_live: Schema.Boolean
}).annotations({ identifier: "NodeHeartbeat", ...strict })
export type NodeHeartbeat = typeof NodeHeartbeat.Type

export const NodeDeregister = frame("node.deregister", { ...RequestId, provider: optional(ProviderIdentity) })
  .annotations({ identifier: "NodeDeregister", ...strict })
export type NodeDeregister = typeof NodeDeregister.Type

export const AgentRegister = frame("agent.register", {
  ...RequestId,
  name: Schema.String,
  invocation_id: optional(Schema.String),
  session_ref: optional(Schema.String),
  resumable: optional(Schema.Boolean)
}).annotations({ identifier: "AgentRegister", ...strict })
export type AgentRegister = typeof AgentRegister.Type

export const AgentDeregister = frame("agent.deregister", {
  ...RequestId,
  agent_id: Schema.String,
  name: optional(Schema.String)
}).annotations({ identifier: "AgentDeregister", ...strict })
export type AgentDeregister = typeof AgentDeregister.Type

export const DeliveryAck = frame("delivery.ack", {
  ...RequestId,
  agent: Schema.String,
  up_to_seq: Schema.NonNegativeInt
}).annotations({ identifier: "DeliveryAck", ...strict })
export type DeliveryAck = typeof DeliveryAck.Type

const hasExactlyOneResult = (result: { readonly output?: Json; readonly error?: string }) =>
  ("output" in result) !== ("error" in result) ||
  "action.result needs exactly one of `output` / `error`"

export const ActionResult = frame("action.result", {
  ...RequestId,
  invocation_id: Schema.String,
  // `output` is any JSON, so `"output": null` is a present value.
  output: optional(Json),
  error: optional(Schema.String)
}).pipe(Schema.filter(hasExactlyOneResult))
  .annotations({ identifier: "ActionResult", ...strict })
export type ActionResult = typeof ActionResult.Type

export const InventorySync = frame("inventory.sync", {
  ...RequestId,
  agents: Schema.Array(InventoryAgent)
}).annotations({ identifier: "InventorySync", ...strict })
export type InventorySync = typeof InventorySync.Type

/** A provider asks its own node's capacity (the broker provider) to spawn; answered with a reply (relaycast 6). */
export const NodeSpawn = frame("node.spawn", {
  ...RequestId,
  input: JsonObject
}).annotations({ identifier: "NodeSpawn", ...strict })
export type NodeSpawn = typeof NodeSpawn.Type

export const NodeToServer = Schema.Union(
  NodeRegister,
  NodeHeartbeat,
  NodeDeregister,
  NodeSpawn,
  AgentRegister,
  AgentDeregister,
  DeliveryAck,
  ActionResult,
  InventorySync
).annotations({ identifier: "NodeToServer", ...strict })
export type NodeToServer = typeof NodeToServer.Type

// ---------------------------------------------------------------------------------------------
// server → node: decoding tolerates (and strips) unknown properties, so a newer engine's extra
// field never drops a frame.

export const Deliver = frame("deliver", {
  agent: Schema.String,
  agent_id: Schema.String,
  delivery_id: Schema.String,
  msg_id: Schema.String,
  seq: Schema.NonNegativeInt,
  mode: DeliveryMode,
  payload: Json
}).annotations({ identifier: "Deliver" })
export type Deliver = typeof Deliver.Type

export const ActionInvoke = frame("action.invoke", {
  invocation_id: Schema.String,
  action: Schema.String,
  input: Json,
  agent_id: optional(Schema.String),
  agent_name: optional(Schema.String)
}).annotations({ identifier: "ActionInvoke" })
export type ActionInvoke = typeof ActionInvoke.Type

export const ContextTopic = Schema.Literal("presence", "channel", "thread", "agent")

export const ContextUpdate = frame("context.update", {
  topic: ContextTopic,
  event: Schema.String,
  channel_id: optional(Schema.NullOr(Schema.String)),
  agent_ids: optional(Schema.Array(Schema.String)),
  data: Json
}).annotations({ identifier: "ContextUpdate" })
export type ContextUpdate = typeof ContextUpdate.Type

export const Ping = frame("ping", {}).annotations({ identifier: "Ping" })
export type Ping = typeof Ping.Type

export const Reply = frame("reply", {
  id: Schema.String,
  ok: Schema.Literal(true),
  data: Json
}).annotations({ identifier: "Reply" })
export type Reply = typeof Reply.Type

export const ErrorFrame = frame("error", {
  id: Schema.String,
  ok: Schema.Literal(false),
  code: Schema.String,
  message: Schema.String
}).annotations({ identifier: "ErrorFrame" })
export type ErrorFrame = typeof ErrorFrame.Type

export const ServerToNode = Schema.Union(Deliver, ActionInvoke, ContextUpdate, Ping, Reply, ErrorFrame)
  .annotations({ identifier: "ServerToNode" })
export type ServerToNode = typeof ServerToNode.Type

/**
 * The data of a successful `agent.register` reply. `delivery_ack_seq` comes only from an engine that
 * saw `relay:delivery-cursor-v1` in the node's capabilities; other extra fields are tolerated.
 */
export const AgentRegisterReplyData = Schema.Struct({
  agent_id: Schema.String,
  token: Schema.String,
  name: optional(Schema.String),
  delivery_ack_seq: optional(Schema.NonNegativeInt)
}).annotations({ identifier: "AgentRegisterReplyData" })
export type AgentRegisterReplyData = typeof AgentRegisterReplyData.Type

export const nodeFrameTypes = [
  "node.register",
  "node.heartbeat",
  "node.deregister",
  "node.spawn",
  "agent.register",
  "agent.deregister",
  "delivery.ack",
  "action.result",
  "inventory.sync"
] as const satisfies ReadonlyArray<NodeToServer["type"]>

export const serverFrameTypes = [
  "deliver",
  "action.invoke",
  "context.update",
  "ping",
  "reply",
  "error"
] as const satisfies ReadonlyArray<ServerToNode["type"]>
