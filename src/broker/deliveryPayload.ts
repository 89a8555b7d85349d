import type { Json } from "../wire/Json.js"

// What a `deliver` frame's payload means for the agent (broker-spec §4.5, §4.6). Pure.

/** Payload types typed into the agent's terminal (the SDK's message-class aliases plus action results). */
export const injectTypes: ReadonlySet<string> = new Set([
  "action.completed",
  "action.failed",
  "action.denied",
  "message.created",
  "message.received",
  "message.new",
  "message.sent",
  "message.delivered",
  "thread.reply",
  "thread.message.created",
  "thread.message.sent",
  "dm.received",
  "dm.created",
  "dm.new",
  "dm.sent",
  "dm.message.created",
  "direct_message.received",
  "direct_message.created",
  "direct_message.new",
  "direct_message.sent",
  "group_dm.received",
  "group_dm.created",
  "group_dm.new",
  "group_dm.sent",
  "group_dm.message.created",
  // A legacy or flat payload without a `type`.
  ""
])

/** Receipts: committed and acked, never typed into the terminal. */
export const ackOnlyTypes: ReadonlySet<string> = new Set(["message.reacted", "message.read"])

export type Classification =
  | { readonly _tag: "Inject"; readonly type: string }
  | { readonly _tag: "AckOnly"; readonly type: string }
  | { readonly _tag: "Unsupported"; readonly type: string }
  /** Not a payload this broker can read at all: not a JSON object, or a `type` that is not a string. */
  | { readonly _tag: "Undecodable"; readonly reason: string }

const isObject = (value: Json | undefined): value is { readonly [key: string]: Json } =>
  typeof value === "object" && value !== null && !Array.isArray(value)

export const classify = (payload: Json): Classification => {
  if (!isObject(payload)) {
    return { _tag: "Undecodable", reason: `the payload is ${describe(payload)}, not a JSON object` }
  }
  const type = payload["type"]
  if (type === undefined) return { _tag: "Inject", type: "" }
  if (typeof type !== "string") {
    return { _tag: "Undecodable", reason: `payload.type is ${describe(type)}, not a string` }
  }
  if (injectTypes.has(type)) return { _tag: "Inject", type }
  if (ackOnlyTypes.has(type)) return { _tag: "AckOnly", type }
  return { _tag: "Unsupported", type }
}

const describe = (value: Json): string =>
  value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`

/** Reads a JSON pointer of plain keys (`/data/text`); array indices are not needed here. */
export const pointer = (value: Json, path: string): Json | undefined => {
  let current: Json | undefined = value
  for (const key of path.split("/").slice(1)) {
    if (!isObject(current)) return undefined
    current = current[key]
  }
  return current
}

/** A hit is a non-empty trimmed string (returned trimmed) or a number (as its decimal text). */
const asText = (value: Json | undefined): string | undefined => {
  if (typeof value === "string") {
    const trimmed = value.trim()
    return trimmed.length > 0 ? trimmed : undefined
  }
  if (typeof value === "number" && Number.isFinite(value)) return String(value)
  return undefined
}

/** The first pointer that hits, in order. */
export const firstText = (payload: Json, paths: ReadonlyArray<string>): string | undefined => {
  for (const path of paths) {
    const hit = asText(pointer(payload, path))
    if (hit !== undefined) return hit
  }
  return undefined
}

export const bodyPointers = [
  "/data/text",
  "/text",
  "/body",
  "/content",
  "/message/text",
  "/payload/text",
  "/data/output",
  "/data/error"
] as const
export const fromPointers = [
  "/data/agent_name",
  "/data/from_name",
  "/from",
  "/sender",
  "/author",
  "/message/agent_name",
  "/message/from",
  "/payload/from"
] as const
export const targetPointers = ["/target", "/to", "/recipient", "/message/target"] as const
export const channelPointers = ["/data/channel_name", "/channel", "/message/channel"] as const
export const threadPointers = ["/data/thread_id", "/thread_id", "/threadId", "/data/parent_id"] as const
export const priorityPointers = ["/data/priority", "/priority"] as const
export const priorityLabelPointers = ["/data/metadata/priority", "/metadata/priority"] as const

const priorityLabels: Readonly<Record<string, number>> = { low: 1, normal: 2, high: 3, urgent: 4 }

export interface DeliveryFields {
  readonly body: string
  readonly from: string
  /** `#channel`, or an agent name (a direct message). */
  readonly target: string
  readonly threadId?: string
  readonly priority?: number
}

const readPriority = (payload: Json): number | undefined => {
  for (const path of priorityPointers) {
    const value = pointer(payload, path)
    if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 255) return value
  }
  for (const path of priorityLabelPointers) {
    const value = pointer(payload, path)
    if (typeof value === "string") {
      const level = priorityLabels[value.trim().toLowerCase()]
      if (level !== undefined) return level
    }
  }
  return undefined
}

/** The fields the agent sees; `fallbackTarget` is the recipient (`Deliver.agent`), meaning a direct message. */
export const extractFields = (payload: Json, fallbackTarget: string): DeliveryFields => {
  const channel = firstText(payload, channelPointers)
  const target = firstText(payload, targetPointers) ??
    (channel === undefined ? fallbackTarget : channel.startsWith("#") ? channel : `#${channel}`)
  const threadId = firstText(payload, threadPointers)
  const priority = readPriority(payload)
  return {
    body: firstText(payload, bodyPointers) ?? JSON.stringify(payload),
    from: firstText(payload, fromPointers) ?? "relaycast",
    target,
    ...(threadId === undefined ? {} : { threadId }),
    ...(priority === undefined ? {} : { priority })
  }
}
