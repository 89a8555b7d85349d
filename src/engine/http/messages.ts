import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Json } from "../../wire/Json.js"
import { channelById, requireAgent } from "../directory.js"
import { Dispatcher } from "../Dispatcher.js"
import { EngineStore, now } from "../EngineStore.js"
import { badRequest, notFound } from "../EngineError.js"
import { snowflake } from "../ids.js"
import {
  type ConversationRow,
  createGroupConversation,
  messageById,
  messageJson,
  type MessageWithNames,
  postDm,
  postGroupDm,
  postReply
} from "../messages.js"
import { type AgentRow, type DeliveryRow, iso, isoOrNull, type MessageRow } from "../rows.js"
import { PostMessage } from "./channels.js"
import { authenticate, body, created, handle, intQuery, noContent, ok, param, query, requireCallerAgent, Required } from "./support.js"

const requireMessage = (workspaceId: string, id: string) =>
  Effect.flatMap(messageById(workspaceId, id), (message) =>
    message === undefined ? Effect.fail(notFound("message_not_found", `Message "${id}" not found`)) : Effect.succeed(message))

const SendDm = Schema.Struct({
  to: Required,
  text: Required,
  attachments: Schema.optional(Schema.NullOr(Schema.Array(Json))),
  mode: Schema.optional(Schema.NullOr(Schema.Literal("wait", "steer")))
})

/** `POST /v1/dm` (agent token). */
const sendDm = handle(Effect.gen(function*() {
  const { workspace, agent } = yield* authenticate("agent")
  const input = yield* body(SendDm)
  const name = input.to.replace(/^@/, "")
  const target = name === "self" ? agent! : yield* requireAgent(workspace.id, name)
  return created(yield* postDm(agent!, target, input.text, input.mode ?? "wait"))
}))

const CreateGroup = Schema.Struct({
  participants: Schema.Array(Schema.String).pipe(Schema.minItems(1, { message: () => "must name at least one agent" })),
  name: Schema.optional(Schema.NullOr(Schema.String)),
  text: Schema.optional(Schema.NullOr(Schema.String))
})

const conversationJson = (conversation: ConversationRow, participants: ReadonlyArray<AgentRow>) => ({
  id: conversation.id,
  conversation_id: conversation.id,
  channel_id: conversation.channel_id,
  dm_type: conversation.type === "group" ? "group" : "direct",
  name: conversation.name,
  participants: participants.map((agent) => agent.name),
  created_at: iso(conversation.created_at)
})

const participantsOf = (conversation: ConversationRow) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    sql<AgentRow>`SELECT a.* FROM agents a JOIN members m ON m.agent_id = a.id WHERE m.channel_id = ${conversation.channel_id} ORDER BY a.name`)

const createGroup = handle(Effect.gen(function*() {
  const { workspace, agent } = yield* authenticate("agent")
  const input = yield* body(CreateGroup)
  const participants: Array<AgentRow> = []
  for (const name of input.participants) participants.push(yield* requireAgent(workspace.id, name.replace(/^@/, "")))
  const conversation = yield* createGroupConversation(agent!, participants, input.name ?? null)
  if (input.text != null && input.text !== "") yield* postGroupDm(agent!, conversation, input.text, "wait")
  return created(conversationJson(conversation, yield* participantsOf(conversation)))
}))

const requireConversation = (workspaceId: string, agentId: string, id: string) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const [conversation] = yield* sql<ConversationRow>`SELECT c.* FROM conversations c JOIN members m ON m.channel_id = c.channel_id
      WHERE c.id = ${id} AND c.workspace_id = ${workspaceId} AND m.agent_id = ${agentId}`
    if (conversation === undefined) return yield* Effect.fail(notFound("conversation_not_found", `Conversation "${id}" not found`))
    return conversation
  })

const postToConversation = handle(Effect.gen(function*() {
  const { workspace, agent } = yield* authenticate("agent")
  const input = yield* body(PostMessage)
  const conversation = yield* requireConversation(workspace.id, agent!.id, yield* param("conversation"))
  if (conversation.type === "group") return created(yield* postGroupDm(agent!, conversation, input.text, input.mode ?? "wait"))
  const participants = yield* participantsOf(conversation)
  const peer = participants.find((participant) => participant.id !== agent!.id) ?? agent!
  return created(yield* postDm(agent!, peer, input.text, input.mode ?? "wait"))
}))

const listConversations = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace, agent } = yield* authenticate("agent")
  const rows = yield* sql<ConversationRow>`SELECT c.* FROM conversations c JOIN members m ON m.channel_id = c.channel_id
    WHERE c.workspace_id = ${workspace.id} AND m.agent_id = ${agent!.id} ORDER BY c.created_at`
  const out = []
  for (const row of rows) out.push(conversationJson(row, yield* participantsOf(row)))
  return ok(out)
}))

const conversationMessages = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace, agent } = yield* authenticate("agent")
  const conversation = yield* requireConversation(workspace.id, agent!.id, yield* param("conversation"))
  const limit = intQuery(yield* query, "limit", 50, 100)
  const rows = yield* sql<MessageWithNames>`SELECT m.*, a.name AS agent_name, c.name AS channel_name FROM messages m
    LEFT JOIN agents a ON a.id = m.agent_id JOIN channels c ON c.id = m.channel_id
    WHERE m.channel_id = ${conversation.channel_id} ORDER BY CAST(m.id AS INTEGER) DESC LIMIT ${limit}`
  return ok(rows.map(messageJson))
}))

const Reply = Schema.Struct({
  text: Required,
  blocks: Schema.optional(Schema.NullOr(Json)),
  data: Schema.optional(Schema.NullOr(Json)),
  attachments: Schema.optional(Schema.NullOr(Schema.Array(Json)))
})

/** `POST /v1/messages/:id/replies` (agent token). */
const reply = handle(Effect.gen(function*() {
  const caller = yield* authenticate("any")
  const sender = yield* requireCallerAgent(caller)
  const input = yield* body(Reply)
  const parent = yield* requireMessage(caller.workspace.id, yield* param("id"))
  const channel = yield* channelById(parent.channel_id)
  if (channel === undefined) return yield* Effect.fail(notFound("channel_not_found", "Channel not found"))
  return created(yield* postReply(sender, parent, channel, input.text, input.blocks ?? null, input.data ?? null))
}))

const listReplies = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace } = yield* authenticate("any")
  const parent = yield* requireMessage(workspace.id, yield* param("id"))
  const root = parent.thread_id ?? parent.id
  const rows = yield* sql<MessageWithNames>`SELECT m.*, a.name AS agent_name, c.name AS channel_name FROM messages m
    LEFT JOIN agents a ON a.id = m.agent_id JOIN channels c ON c.id = m.channel_id
    WHERE m.thread_id = ${root} ORDER BY CAST(m.id AS INTEGER) ASC LIMIT 200`
  return ok(rows.map(messageJson))
}))

const getMessage = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace } = yield* authenticate("any")
  const message = yield* requireMessage(workspace.id, yield* param("id"))
  const [count] = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM messages WHERE thread_id = ${message.id}`
  return ok({ ...messageJson(message), reply_count: count?.n ?? 0 })
}))

/** Node-hosted audience of a message's channel (DM participants for DM channels). */
const channelAudience = (message: MessageRow) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<{ agent_id: string }>`SELECT agent_id FROM members WHERE channel_id = ${message.channel_id}`, (rows) =>
      rows.map((row) => row.agent_id)))

/** `POST /v1/messages/:id/read`: receipt, `last_read_id`, a single row ack, and the seq-0 `message.read`. */
const markRead = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const dispatcher = yield* Dispatcher
  const { workspace, agent } = yield* authenticate("agent")
  const message = yield* requireMessage(workspace.id, yield* param("id"))
  const at = yield* now
  yield* sql`INSERT INTO read_receipts (message_id, agent_id, read_at) VALUES (${message.id}, ${agent!.id}, ${at})
    ON CONFLICT (message_id, agent_id) DO UPDATE SET read_at = excluded.read_at`
  yield* sql`UPDATE members SET last_read_id = ${message.id}
    WHERE channel_id = ${message.channel_id} AND agent_id = ${agent!.id}
      AND (last_read_id IS NULL OR CAST(last_read_id AS INTEGER) < CAST(${message.id} AS INTEGER))`
  const [row] = yield* sql<{ id: string }>`SELECT id FROM deliveries WHERE message_id = ${message.id} AND agent_id = ${agent!.id}`
  if (row !== undefined) yield* dispatcher.ackOne(row.id)
  const readAt = iso(at)
  yield* dispatcher.fanOut({
    type: "message.read",
    key: `${message.id}:${agent!.id}:${readAt}`,
    msgId: message.id,
    data: { message_id: message.id, agent_id: agent!.id, read_at: readAt, agent_name: agent!.name }
  }, yield* channelAudience(message))
  return ok({ message_id: message.id, agent_id: agent!.id, read_at: readAt })
}))

const React = Schema.Struct({ emoji: Required })

const addReaction = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const dispatcher = yield* Dispatcher
  const { workspace, agent } = yield* authenticate("agent")
  const input = yield* body(React)
  const message = yield* requireMessage(workspace.id, yield* param("id"))
  const at = yield* now
  const id = snowflake()
  const inserted = yield* sql<{ id: string }>`INSERT INTO reactions (id, message_id, agent_id, emoji, created_at)
    VALUES (${id}, ${message.id}, ${agent!.id}, ${input.emoji}, ${at}) ON CONFLICT DO NOTHING RETURNING id`
  const reaction = { id, message_id: message.id, emoji: input.emoji, agent_id: agent!.id, agent_name: agent!.name, created_at: iso(at) }
  if (inserted.length > 0) {
    yield* dispatcher.fanOut({
      type: "message.reacted",
      key: id,
      msgId: message.id,
      data: { ...reaction, channel_name: message.channel_name, action: "added" }
    }, yield* channelAudience(message))
  }
  return created(reaction)
}))

const removeReaction = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const dispatcher = yield* Dispatcher
  const { workspace, agent } = yield* authenticate("agent")
  const message = yield* requireMessage(workspace.id, yield* param("id"))
  const emoji = yield* param("emoji")
  const removed = yield* sql<{ id: string }>`DELETE FROM reactions WHERE message_id = ${message.id} AND agent_id = ${agent!.id}
    AND emoji = ${emoji} RETURNING id`
  if (removed.length > 0) {
    const at = yield* now
    yield* dispatcher.fanOut({
      type: "message.reacted",
      key: `removed:${message.id}:${agent!.id}:${at}`,
      msgId: message.id,
      data: { message_id: message.id, emoji, agent_name: agent!.name, channel_name: message.channel_name, action: "removed" }
    }, yield* channelAudience(message))
  }
  return noContent()
}))

/** `GET /v1/inbox` (agent token): unread counts past each `last_read_id` (spec §2.7). */
const inbox = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const dispatcher = yield* Dispatcher
  const { agent } = yield* authenticate("agent")
  yield* dispatcher.expire
  const unread = sql`CAST(m.id AS INTEGER) > COALESCE(CAST(mb.last_read_id AS INTEGER), 0) AND m.agent_id != ${agent!.id}`
  const channels = yield* sql<{ channel_name: string; unread_count: number }>`
    SELECT c.name AS channel_name, COUNT(m.id) AS unread_count FROM members mb
    JOIN channels c ON c.id = mb.channel_id JOIN messages m ON m.channel_id = c.id
    WHERE mb.agent_id = ${agent!.id} AND c.channel_type = 0 AND ${unread}
    GROUP BY c.id HAVING COUNT(m.id) > 0 ORDER BY c.name`
  const mentions = yield* sql<{ id: string; channel_name: string; agent_name: string; text: string; created_at: number }>`
    SELECT m.id, c.name AS channel_name, a.name AS agent_name, m.text, m.created_at FROM members mb
    JOIN channels c ON c.id = mb.channel_id JOIN messages m ON m.channel_id = c.id JOIN agents a ON a.id = m.agent_id
    JOIN deliveries d ON d.message_id = m.id AND d.agent_id = ${agent!.id} AND d.reason = 'mention'
    WHERE mb.agent_id = ${agent!.id} AND c.channel_type = 0 AND ${unread} ORDER BY CAST(m.id AS INTEGER) LIMIT 50`
  const dms = yield* sql<{ conversation_id: string; channel_id: string; unread_count: number }>`
    SELECT cv.id AS conversation_id, cv.channel_id, COUNT(m.id) AS unread_count FROM members mb
    JOIN conversations cv ON cv.channel_id = mb.channel_id JOIN messages m ON m.channel_id = cv.channel_id
    WHERE mb.agent_id = ${agent!.id} AND ${unread} GROUP BY cv.id HAVING COUNT(m.id) > 0`
  const unreadDms = []
  for (const dm of dms) {
    const [last] = yield* sql<{ id: string; text: string; created_at: number; agent_name: string }>`
      SELECT m.id, m.text, m.created_at, a.name AS agent_name FROM messages m JOIN agents a ON a.id = m.agent_id
      WHERE m.channel_id = ${dm.channel_id} AND m.agent_id != ${agent!.id} ORDER BY CAST(m.id AS INTEGER) DESC LIMIT 1`
    unreadDms.push({
      conversation_id: dm.conversation_id,
      from: last?.agent_name ?? null,
      unread_count: dm.unread_count,
      last_message: last === undefined ? null : { id: last.id, text: last.text, created_at: iso(last.created_at) }
    })
  }
  return ok({
    unread_channels: channels,
    mentions: mentions.map((mention) => ({ ...mention, created_at: iso(mention.created_at) })),
    unread_dms: unreadDms,
    recent_reactions: []
  })
}))

const deliveryStatuses = new Set(["queued", "delivered", "acked", "failed", "dead_lettered"])

interface DeliveryListRow extends Omit<DeliveryRow, "workspace_id" | "location_type" | "location_node_id"> {
  readonly m_channel_id: string
  readonly m_agent_id: string
  readonly m_agent_name: string | null
  readonly m_text: string
  readonly m_thread_id: string | null
  readonly m_created_at: number
}

/** `GET /v1/deliveries` (agent token): the caller's rows, oldest first (spec §2.7). */
const listDeliveries = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const dispatcher = yield* Dispatcher
  const { agent } = yield* authenticate("agent")
  const params = yield* query
  const requested = (params.get("status") ?? "queued,delivered").split(",").map((s) => s.trim()).filter((s) => s !== "")
  for (const status of requested) {
    if (!deliveryStatuses.has(status)) return yield* Effect.fail(badRequest(`status must be one of: ${[...deliveryStatuses].join(", ")}`))
  }
  const limit = intQuery(params, "limit", 50, 200)
  yield* dispatcher.expire
  const rows = yield* sql<DeliveryListRow>`SELECT d.id, d.message_id, d.agent_id, d.seq, d.status, d.mode, d.reason, d.expires_at,
      d.created_at, d.delivered_at, d.acked_at, d.error, m.channel_id AS m_channel_id, m.agent_id AS m_agent_id,
      a.name AS m_agent_name, m.text AS m_text, m.thread_id AS m_thread_id, m.created_at AS m_created_at
    FROM deliveries d JOIN messages m ON m.id = d.message_id LEFT JOIN agents a ON a.id = m.agent_id
    WHERE d.agent_id = ${agent!.id} AND ${sql.in("d.status", requested)} ORDER BY d.seq LIMIT ${limit}`
  return ok(rows.map((row) => ({
    id: row.id,
    message_id: row.message_id,
    agent_id: row.agent_id,
    seq: row.seq,
    status: row.status,
    mode: row.mode,
    reason: row.reason,
    expires_at: iso(row.expires_at),
    created_at: iso(row.created_at),
    delivered_at: isoOrNull(row.delivered_at),
    acked_at: isoOrNull(row.acked_at),
    error: row.error,
    message: {
      id: row.message_id,
      channel_id: row.m_channel_id,
      agent_id: row.m_agent_id,
      agent_name: row.m_agent_name,
      text: row.m_text,
      thread_id: row.m_thread_id,
      created_at: iso(row.m_created_at)
    }
  })))
}))

const deliveryAction = (action: "ack" | "fail" | "defer") =>
  handle(Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const dispatcher = yield* Dispatcher
    const { agent } = yield* authenticate("agent")
    const id = yield* param("id")
    const [row] = yield* sql<{ id: string; status: string }>`SELECT id, status FROM deliveries WHERE id = ${id} AND agent_id = ${agent!.id}`
    if (row === undefined) return yield* Effect.fail(notFound("delivery_not_found", `Delivery "${id}" not found`))
    if (action === "ack") yield* dispatcher.ackOne(id)
    if (action === "fail") yield* sql`UPDATE deliveries SET status = 'failed', error = 'failed by recipient' WHERE id = ${id} AND status IN ('queued', 'delivered')`
    const [after] = yield* sql<{ status: string }>`SELECT status FROM deliveries WHERE id = ${id}`
    return ok({ id, status: after?.status ?? row.status })
  }))

export const routes = HttpRouter.empty.pipe(
  HttpRouter.post("/v1/dm", sendDm),
  HttpRouter.post("/v1/dm/group", createGroup),
  HttpRouter.get("/v1/dm/conversations", listConversations),
  HttpRouter.post("/v1/dm/:conversation/messages", postToConversation),
  HttpRouter.get("/v1/dm/:conversation/messages", conversationMessages),
  HttpRouter.get("/v1/messages/:id", getMessage),
  HttpRouter.post("/v1/messages/:id/replies", reply),
  HttpRouter.get("/v1/messages/:id/replies", listReplies),
  HttpRouter.post("/v1/messages/:id/read", markRead),
  HttpRouter.post("/v1/messages/:id/reactions", addReaction),
  HttpRouter.del("/v1/messages/:id/reactions/:emoji", removeReaction),
  HttpRouter.get("/v1/inbox", inbox),
  HttpRouter.get("/v1/deliveries", listDeliveries),
  HttpRouter.post("/v1/deliveries/:id/ack", deliveryAction("ack")),
  HttpRouter.post("/v1/deliveries/:id/fail", deliveryAction("fail")),
  HttpRouter.post("/v1/deliveries/:id/defer", deliveryAction("defer"))
)

