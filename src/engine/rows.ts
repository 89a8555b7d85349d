import type { Json, JsonObject } from "../wire/Json.js"

// Row shapes as SQLite returns them, and their public JSON forms (spec §2).

export type WorkspaceRow = {
  readonly id: string
  readonly name: string
  readonly key_hash: string
  readonly plan: string
  readonly system_prompt: string | null
  readonly metadata: string
  readonly created_at: number
}

export type AgentRow = {
  readonly id: string
  readonly workspace_id: string
  readonly name: string
  readonly type: string
  readonly status: string
  readonly token_hash: string | null
  readonly persona: string | null
  readonly metadata: string
  readonly capabilities: string | null
  readonly location_type: string
  readonly location_node_id: string | null
  readonly origin_node_id: string | null
  readonly session_ref: string | null
  readonly resumable: number
  readonly delivery_ack_seq: number
  readonly last_seq: number
  readonly last_seen: number | null
  readonly created_at: number
}

export type NodeRow = {
  readonly id: string
  readonly workspace_id: string
  readonly name: string
  readonly token_hash: string | null
  readonly kind: string
  readonly role: string
  readonly capabilities: string
  readonly max_agents: number
  readonly active_agents: number
  readonly reserved_agents: number
  readonly tags: string
  readonly version: string | null
  readonly status: string
  readonly handlers_live: number
  readonly load: number
  readonly last_heartbeat_at: number | null
  readonly delivery: string | null
  readonly created_at: number
}

export type BindingRow = {
  readonly id: string
  readonly agent_id: string
  readonly node_id: string
  readonly status: string
  readonly priority: number
  readonly session_ref: string | null
  readonly created_at: number
  readonly updated_at: number
}

export type ChannelRow = {
  readonly id: string
  readonly workspace_id: string
  readonly name: string
  readonly topic: string | null
  readonly metadata: string
  readonly channel_type: number
  readonly created_by: string | null
  readonly archived: number
  readonly created_at: number
}

export type MessageRow = {
  readonly id: string
  readonly workspace_id: string
  readonly channel_id: string
  readonly agent_id: string
  readonly thread_id: string | null
  readonly text: string
  readonly blocks: string | null
  readonly data: string | null
  readonly metadata: string
  readonly mode: string
  readonly event_type: string
  readonly payload: string
  readonly created_at: number
}

export type DeliveryRow = {
  readonly id: string
  readonly workspace_id: string
  readonly message_id: string
  readonly agent_id: string
  readonly seq: number
  readonly status: string
  readonly mode: string
  readonly reason: string
  readonly location_type: string | null
  readonly location_node_id: string | null
  readonly expires_at: number
  readonly created_at: number
  readonly delivered_at: number | null
  readonly acked_at: number | null
  readonly error: string | null
}

export const iso = (ms: number): string => new Date(ms).toISOString()
export const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms))

export const parseJson = (text: string | null): Json => {
  if (text === null) return null
  try {
    return JSON.parse(text) as Json
  } catch {
    return null
  }
}

export const parseObject = (text: string | null): JsonObject => {
  const value = parseJson(text)
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as JsonObject) : {}
}

export const parseStrings = (text: string | null): ReadonlyArray<string> => {
  const value = parseJson(text)
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : []
}

export type Capability = {
  readonly name: string
  readonly kind?: string
  readonly metadata?: JsonObject
}

export const parseCapabilities = (text: string): ReadonlyArray<Capability> => {
  const value = parseJson(text)
  if (!Array.isArray(value)) return []
  return value.flatMap((item): ReadonlyArray<Capability> =>
    item !== null && typeof item === "object" && !Array.isArray(item) && typeof (item as JsonObject)["name"] === "string"
      ? [item as unknown as Capability]
      : []
  )
}

export const agentJson = (agent: AgentRow) => ({
  id: agent.id,
  name: agent.name,
  handle: `@${agent.name}`,
  type: agent.type,
  status: agent.status,
  persona: agent.persona,
  capabilities: parseJson(agent.capabilities),
  created_at: iso(agent.created_at),
  last_seen: isoOrNull(agent.last_seen),
  metadata: parseObject(agent.metadata),
  location_type: agent.location_type,
  location_node_id: agent.location_node_id
})

/** `live` = stored online and a heartbeat within the TTL (spec §2.3, §3.5). */
export const isLive = (node: NodeRow, now: number, ttlMs: number): boolean =>
  node.status === "online" && node.last_heartbeat_at !== null && now - node.last_heartbeat_at <= ttlMs

export const deliveryAdapter = (kind: string): string | null =>
  kind === "ws" || kind === "fleet_ws" || kind === "direct_ws" ? "ws.node.v1" : kind === "http_push" ? "http.push.v1" : null

export const nodeJson = (node: NodeRow, now: number, ttlMs: number) => {
  const live = isLive(node, now, ttlMs)
  return {
    id: node.id,
    name: node.name,
    kind: node.kind,
    role: node.role,
    delivery_adapter: deliveryAdapter(node.kind),
    delivery: parseJson(node.delivery),
    capabilities: parseCapabilities(node.capabilities),
    tags: parseStrings(node.tags),
    version: node.version,
    status: live ? "online" : "offline",
    live,
    handlers_live: live && node.handlers_live === 1,
    load: node.load,
    active_agents: node.active_agents,
    max_agents: node.max_agents,
    last_heartbeat_at: isoOrNull(node.last_heartbeat_at),
    created_at: iso(node.created_at)
  }
}

export const channelJson = (channel: ChannelRow, memberCount: number) => ({
  id: channel.id,
  name: channel.name,
  topic: channel.topic,
  metadata: parseObject(channel.metadata),
  created_by: channel.created_by,
  created_at: iso(channel.created_at),
  member_count: memberCount,
  is_archived: channel.archived === 1
})
