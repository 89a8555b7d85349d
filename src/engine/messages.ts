import * as Effect from "effect/Effect"
import type { Json } from "../wire/Json.js"
import { createChannel, joinChannel, memberAgents, mutedMemberIds } from "./directory.js"
import { Dispatcher, type Recipient, type WireMode } from "./Dispatcher.js"
import { EngineStore, now } from "./EngineStore.js"
import { sha256Hex, snowflake } from "./ids.js"
import { type AgentRow, type ChannelRow, iso, type MessageRow, parseJson, parseObject } from "./rows.js"

// Posting messages: the recipient sets and `deliver` payloads of spec §4.1 and §4.3. Callers hold the lock.

export const mentionsOf = (text: string): ReadonlyArray<string> => {
  const names = new Set<string>()
  for (const match of text.matchAll(/(?:^|[^A-Za-z0-9_@])@([A-Za-z0-9_][A-Za-z0-9_.-]*)/g)) {
    names.add(match[1]!.replace(/[.-]+$/, ""))
  }
  return [...names]
}

const others = (members: ReadonlyArray<AgentRow>, senderId: string) => members.filter((agent) => agent.id !== senderId)

export interface ChannelPost {
  readonly sender: AgentRow
  readonly channel: ChannelRow
  readonly text: string
  readonly mode: WireMode
  readonly blocks: Json
  readonly data: Json
}

/** A channel message: every member but the sender; `mention` when `@name` is in the text. */
export const postChannelMessage = (post: ChannelPost) =>
  Effect.gen(function*() {
    const dispatcher = yield* Dispatcher
    const id = snowflake()
    const createdAt = yield* now
    const mentions = mentionsOf(post.text)
    const response = {
      id,
      channel_id: post.channel.id,
      agent_id: post.sender.id,
      agent_name: post.sender.name,
      text: post.text,
      blocks: post.blocks,
      metadata: {},
      has_attachments: false,
      thread_id: null,
      created_at: iso(createdAt),
      mentions,
      attachments: [],
      injection_mode: post.mode
    }
    const muted = yield* mutedMemberIds(post.channel.id)
    const recipients: ReadonlyArray<Recipient> = others(yield* memberAgents(post.channel.id), post.sender.id)
      .filter((agent) => !muted.has(agent.id) || mentions.includes(agent.name))
      .map((agent) => ({ agent, reason: mentions.includes(agent.name) ? "mention" : "message" }))
    yield* dispatcher.post({
      id,
      workspaceId: post.channel.workspace_id,
      channelId: post.channel.id,
      senderId: post.sender.id,
      threadId: null,
      text: post.text,
      blocks: post.blocks,
      data: post.data,
      metadata: {},
      mode: post.mode,
      eventType: "message.created",
      payloadData: { ...response, channel_name: post.channel.name, from_name: post.sender.name },
      createdAt,
      recipients
    })
    return response
  })

/** A thread reply: every member of the parent's channel but the sender, always `wait`. */
export const postReply = (sender: AgentRow, parent: MessageRow, channel: ChannelRow, text: string, blocks: Json, data: Json) =>
  Effect.gen(function*() {
    const dispatcher = yield* Dispatcher
    const id = snowflake()
    const createdAt = yield* now
    const threadId = parent.thread_id ?? parent.id
    const muted = yield* mutedMemberIds(channel.id)
    const response = {
      id,
      channel_id: channel.id,
      channel_name: channel.name,
      agent_id: sender.id,
      agent_name: sender.name,
      thread_id: threadId,
      text,
      blocks,
      metadata: {},
      has_attachments: false,
      created_at: iso(createdAt)
    }
    yield* dispatcher.post({
      id,
      workspaceId: channel.workspace_id,
      channelId: channel.id,
      senderId: sender.id,
      threadId,
      text,
      blocks,
      data,
      metadata: {},
      mode: "wait",
      eventType: "thread.reply",
      payloadData: { ...response, from_name: sender.name },
      createdAt,
      recipients: others(yield* memberAgents(channel.id), sender.id)
        .filter((agent) => !muted.has(agent.id))
        .map((agent) => ({ agent, reason: "thread-reply" }))
    })
    return response
  })

export type ConversationRow = {
  readonly id: string
  readonly workspace_id: string
  readonly channel_id: string
  readonly type: string
  readonly name: string | null
  readonly participants: string
  readonly created_by: string | null
  readonly created_at: number
}

/** The 1:1 conversation of two agents (created on first use, with its hidden channel). */
export const directConversation = (a: AgentRow, b: AgentRow) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const pair = [a.id, b.id].sort()
    const id = `dm_${sha256Hex(`${a.workspace_id}:${pair[0]}:${pair[1]}`).slice(0, 24)}`
    const [existing] = yield* sql<ConversationRow>`SELECT * FROM conversations WHERE id = ${id}`
    if (existing !== undefined) return existing
    const channel = yield* createChannel(a.workspace_id, id, null, "{}", a.id, 1)
    for (const agentId of new Set(pair)) yield* joinChannel(channel.id, agentId)
    const row: ConversationRow = {
      id,
      workspace_id: a.workspace_id,
      channel_id: channel.id,
      type: "direct",
      name: null,
      participants: JSON.stringify([...new Set(pair)]),
      created_by: a.id,
      created_at: channel.created_at
    }
    yield* sql`INSERT INTO conversations ${sql.insert(row)}`
    return row
  })

export const createGroupConversation = (creator: AgentRow, participants: ReadonlyArray<AgentRow>, name: string | null) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const id = `dm_${snowflake()}`
    const channel = yield* createChannel(creator.workspace_id, id, null, "{}", creator.id, 2)
    const ids = [...new Set([creator.id, ...participants.map((agent) => agent.id)])]
    for (const agentId of ids) yield* joinChannel(channel.id, agentId)
    const row: ConversationRow = {
      id,
      workspace_id: creator.workspace_id,
      channel_id: channel.id,
      type: "group",
      name,
      participants: JSON.stringify(ids),
      created_by: creator.id,
      created_at: channel.created_at
    }
    yield* sql`INSERT INTO conversations ${sql.insert(row)}`
    return row
  })

/**
 * A message in a DM or group DM conversation. `addressing` is the part of the response that
 * differs between the two; `recipients` is read after the message gets its id and time.
 */
const postConversationMessage = <Addressing extends { readonly [key: string]: Json }, E, R>(
  sender: AgentRow,
  conversation: ConversationRow,
  text: string,
  mode: WireMode,
  eventType: "dm.received" | "group_dm.received",
  addressing: Addressing,
  recipients: Effect.Effect<ReadonlyArray<Recipient>, E, R>
) =>
  Effect.gen(function*() {
    const dispatcher = yield* Dispatcher
    const id = snowflake()
    const createdAt = yield* now
    const attachments: ReadonlyArray<Json> = []
    const response = {
      conversation_id: conversation.id,
      message: { id, agent_id: sender.id, agent_name: sender.name, text, injection_mode: mode, attachments },
      created_at: iso(createdAt),
      id,
      ...addressing,
      text,
      injection_mode: mode,
      attachments
    }
    yield* dispatcher.post({
      id,
      workspaceId: sender.workspace_id,
      channelId: conversation.channel_id,
      senderId: sender.id,
      threadId: null,
      text,
      blocks: null,
      data: null,
      metadata: {},
      mode,
      eventType,
      payloadData: { ...response, from_name: sender.name },
      createdAt,
      recipients: yield* recipients
    })
    return response
  })

/** A DM: the peer only (nobody for a DM to yourself). */
export const postDm = (sender: AgentRow, target: AgentRow, text: string, mode: WireMode) =>
  Effect.gen(function*() {
    const conversation = yield* directConversation(sender, target)
    return yield* postConversationMessage(
      sender,
      conversation,
      text,
      mode,
      "dm.received",
      { from_agent_id: sender.id, to: target.name },
      Effect.succeed(target.id === sender.id ? [] : [{ agent: target, reason: "dm" as const }])
    )
  })

/** A group DM message: the other participants. */
export const postGroupDm = (sender: AgentRow, conversation: ConversationRow, text: string, mode: WireMode) =>
  postConversationMessage(
    sender,
    conversation,
    text,
    mode,
    "group_dm.received",
    { agent_id: sender.id },
    Effect.map(memberAgents(conversation.channel_id), (members) =>
      others(members, sender.id).map((agent): Recipient => ({ agent, reason: "dm" })))
  )

/** The stored message as the history endpoints show it. */
export const messageJson = (message: MessageRow & { readonly agent_name: string | null; readonly channel_name?: string }) => ({
  id: message.id,
  channel_id: message.channel_id,
  ...(message.channel_name === undefined ? {} : { channel_name: message.channel_name }),
  agent_id: message.agent_id,
  agent_name: message.agent_name,
  text: message.text,
  blocks: parseJson(message.blocks),
  metadata: parseObject(message.metadata),
  has_attachments: false,
  thread_id: message.thread_id,
  created_at: iso(message.created_at),
  attachments: [],
  injection_mode: message.mode
})

export type MessageWithNames = MessageRow & { readonly agent_name: string | null; readonly channel_name: string }

export const messageById = (workspaceId: string, id: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(
      sql<MessageWithNames>`SELECT m.*, a.name AS agent_name, c.name AS channel_name FROM messages m
        LEFT JOIN agents a ON a.id = m.agent_id JOIN channels c ON c.id = m.channel_id
        WHERE m.id = ${id} AND m.workspace_id = ${workspaceId}`,
      (rows) => rows[0]
    ))

