import {
  actingAs,
  idempotencyHeaders,
  jsonContent,
  optStr,
  segment,
  str,
  stripHash,
  type Tool,
  type ToolContext,
  textContent
} from "./context.js"
import { type EngineDelivery, sendStateOf } from "./deliveryStates.js"
import { asField, idempotentWrite, readOnly, writes } from "./toolSpec.js"

// The channel, message, thread, DM, reaction, search and inbox tools of upstream's `agent-relay mcp`
// 9.1.6 (`dist/cli/mcp/messaging-tools.js`): same names, arguments, engine calls and results. They act
// with the agent's own token. `send_dm` and `post_message` add what is known of each recipient's copy.

const emojiAliases: Readonly<Record<string, string>> = {
  "+1": "👍",
  thumbsup: "👍",
  thumbs_up: "👍",
  check: "✅",
  white_check_mark: "✅",
  rocket: "🚀",
  eyes: "👀",
  heart: "❤️",
  clap: "👏"
}

export const resolveEmoji = (input: string): string =>
  emojiAliases[input.trim().replace(/^:/, "").replace(/:$/, "").toLowerCase()] ?? input

const messageIdOf = (sent: unknown): string | undefined => {
  const record = sent as { id?: unknown; message?: { id?: unknown } } | undefined
  if (typeof record?.id === "string") return record.id
  return typeof record?.message?.id === "string" ? record.message.id : undefined
}

/** How long a send waits for this daemon to type the message into a local recipient's terminal. */
export const sendWaitMs = 2_000

/**
 * Per recipient: `injected`, `queued`, `offline` or `failed` (see deliveryStates.ts), from the daemon
 * when there is one (it knows what it typed), else from the engine's delivery rows.
 */
const deliveryOf = async (context: ToolContext, messageId: string): Promise<unknown> => {
  try {
    if (context.broker !== undefined) {
      return await context.broker.call("GET", `/api/agent/messages/${segment(messageId)}/delivery`, {
        query: { wait_ms: sendWaitMs }
      })
    }
    const rows = await context.engine.call("GET", `/v1/messages/${segment(messageId)}/deliveries`) as ReadonlyArray<EngineDelivery>
    return { recipients: rows.map((row) => ({ name: row.agentName, state: sendStateOf(row, undefined) })) }
  } catch (error) {
    return { recipients: null, error: `the delivery state is unknown: ${(error as Error).message}` }
  }
}

const sendWithDelivery = async (context: ToolContext, sent: unknown) => {
  const id = messageIdOf(sent)
  const delivery = id === undefined ? { recipients: null, error: "the engine returned no message id" } : await deliveryOf(context, id)
  return jsonContent({ ...(sent as object), delivery })
}

const messageId = { type: "string", description: "Message ID" } as const
const channel = { type: "string", description: "Channel name" } as const

export const messagingTools: ReadonlyArray<Tool> = [
  {
    name: "create_channel",
    title: "Create Channel",
    description: "Create a new workspace channel.",
    fields: {
      name: { type: "string", description: "Unique channel name" },
      topic: { type: "string", optional: true, description: "Optional channel topic" },
      as: asField
    },
    annotations: writes,
    run: async (context, args) => {
      actingAs(context, args["as"])
      return jsonContent(await context.engine.call("POST", "/v1/channels", { body: { name: str(args, "name"), topic: args["topic"] } }))
    }
  },
  {
    name: "list_channels",
    title: "List Channels",
    description: "List channels available in the workspace.",
    fields: { include_archived: { type: "boolean", optional: true, description: "Include archived channels" }, as: asField },
    annotations: readOnly,
    run: async (context, args) => {
      actingAs(context, args["as"])
      const query = args["include_archived"] === true ? { include_archived: "true" } : {}
      return jsonContent({ channels: await context.engine.call("GET", "/v1/channels", { query }) })
    }
  },
  {
    name: "join_channel",
    title: "Join Channel",
    description: "Join an existing channel.",
    fields: { channel, as: asField },
    annotations: idempotentWrite,
    run: async (context, args) => {
      actingAs(context, args["as"])
      await context.engine.call("POST", `/v1/channels/${segment(stripHash(str(args, "channel")))}/join`)
      return textContent(`Joined channel #${str(args, "channel")}`)
    }
  },
  {
    name: "leave_channel",
    title: "Leave Channel",
    description: "Leave a channel.",
    fields: { channel, as: asField },
    annotations: idempotentWrite,
    run: async (context, args) => {
      actingAs(context, args["as"])
      await context.engine.call("POST", `/v1/channels/${segment(stripHash(str(args, "channel")))}/leave`)
      return textContent(`Left channel #${str(args, "channel")}`)
    }
  },
  {
    name: "invite_to_channel",
    title: "Invite to Channel",
    description: "Invite another agent to a channel.",
    fields: { channel, agent: { type: "string", description: "Agent name to invite" }, as: asField },
    annotations: idempotentWrite,
    run: async (context, args) => {
      actingAs(context, args["as"])
      await context.engine.call("POST", `/v1/channels/${segment(stripHash(str(args, "channel")))}/invite`, {
        body: { agentName: str(args, "agent") }
      })
      return textContent(`Invited ${str(args, "agent")} to #${str(args, "channel")}`)
    }
  },
  {
    name: "set_channel_topic",
    title: "Set Channel Topic",
    description: "Update a channel topic.",
    fields: { channel, topic: { type: "string", description: "New topic" }, as: asField },
    annotations: idempotentWrite,
    run: async (context, args) => {
      actingAs(context, args["as"])
      return jsonContent(await context.engine.call("PATCH", `/v1/channels/${segment(stripHash(str(args, "channel")))}/topic`, {
        body: { topic: str(args, "topic") }
      }))
    }
  },
  {
    name: "archive_channel",
    title: "Archive Channel",
    description: "Archive a channel.",
    fields: { channel, as: asField },
    annotations: { ...idempotentWrite, destructiveHint: true },
    run: async (context, args) => {
      actingAs(context, args["as"])
      await context.engine.call("DELETE", `/v1/channels/${segment(stripHash(str(args, "channel")))}`)
      return textContent(`Archived channel #${str(args, "channel")}`)
    }
  },
  {
    name: "post_message",
    title: "Post Message",
    description: "Post a new message to a channel as the current agent.",
    fields: {
      channel,
      text: { type: "string", description: "Message text" },
      attachments: { type: "string[]", optional: true, description: "File attachment IDs" },
      mode: { type: "string", optional: true, enum: ["wait", "steer"], description: "Delivery mode" },
      as: asField
    },
    annotations: writes,
    run: async (context, args) => {
      actingAs(context, args["as"])
      const sent = await context.engine.call("POST", `/v1/channels/${segment(stripHash(str(args, "channel")))}/messages`, {
        body: {
          text: str(args, "text"),
          ...(args["attachments"] === undefined ? {} : { attachments: args["attachments"] }),
          mode: optStr(args, "mode") ?? "wait"
        },
        headers: idempotencyHeaders()
      })
      return sendWithDelivery(context, sent)
    }
  },
  {
    name: "list_messages",
    title: "Get Messages",
    description: "Retrieve message history from a channel.",
    fields: {
      channel,
      limit: { type: "number", optional: true, description: "Maximum messages to return" },
      before: { type: "string", optional: true, description: "Older-than cursor" },
      after: { type: "string", optional: true, description: "Newer-than cursor" },
      as: asField
    },
    annotations: readOnly,
    run: async (context, args) => {
      actingAs(context, args["as"])
      const messages = await context.engine.call("GET", `/v1/channels/${segment(stripHash(str(args, "channel")))}/messages`, {
        query: {
          limit: args["limit"] ? String(args["limit"]) : undefined,
          before: optStr(args, "before"),
          after: optStr(args, "after")
        }
      })
      return jsonContent({ messages })
    }
  },
  {
    name: "reply_to_thread",
    title: "Reply to Thread",
    description: "Reply to an existing message thread.",
    fields: { message_id: { type: "string", description: "Parent message ID" }, text: { type: "string", description: "Reply text" }, as: asField },
    annotations: writes,
    run: async (context, args) => {
      actingAs(context, args["as"])
      return jsonContent(await context.engine.call("POST", `/v1/messages/${segment(str(args, "message_id"))}/replies`, {
        body: { text: str(args, "text") },
        headers: idempotencyHeaders()
      }))
    }
  },
  {
    name: "get_message_thread",
    title: "Get Thread",
    description: "Retrieve a message thread.",
    fields: {
      message_id: { type: "string", description: "Parent message ID" },
      limit: { type: "number", optional: true, description: "Maximum replies to return" },
      as: asField
    },
    annotations: readOnly,
    run: async (context, args) => {
      actingAs(context, args["as"])
      return jsonContent(await context.engine.call("GET", `/v1/messages/${segment(str(args, "message_id"))}/replies`, {
        query: { limit: args["limit"] ? String(args["limit"]) : undefined }
      }))
    }
  },
  {
    name: "send_dm",
    title: "Send Direct Message",
    description: "Send a private direct message to another agent.",
    fields: {
      to: { type: "string", description: "Recipient agent name" },
      text: { type: "string", description: "DM text" },
      mode: { type: "string", optional: true, enum: ["wait", "steer"], description: "Delivery mode" },
      attachments: { type: "string[]", optional: true, description: "File attachment IDs" },
      as: asField
    },
    annotations: writes,
    run: async (context, args) => {
      actingAs(context, args["as"])
      const sent = await context.engine.call("POST", "/v1/dm", {
        body: {
          to: str(args, "to"),
          text: str(args, "text"),
          ...(args["attachments"] === undefined ? {} : { attachments: args["attachments"] }),
          mode: optStr(args, "mode") ?? "wait"
        },
        headers: idempotencyHeaders()
      })
      return sendWithDelivery(context, sent)
    }
  },
  {
    name: "list_dms",
    title: "List DM Conversations",
    description: "List direct message conversations for the current agent.",
    fields: { as: asField },
    annotations: readOnly,
    run: async (context, args) => {
      actingAs(context, args["as"])
      return jsonContent({ conversations: await context.engine.call("GET", "/v1/dm/conversations") })
    }
  },
  {
    name: "send_group_dm",
    title: "Send Group DM",
    description: "Create a group DM and send the first message.",
    fields: {
      participants: { type: "string[]", description: "Participant agent names" },
      name: { type: "string", optional: true, description: "Optional group name" },
      text: { type: "string", description: "Initial message" },
      as: asField
    },
    annotations: writes,
    run: async (context, args) => {
      actingAs(context, args["as"])
      const conversation = await context.engine.call("POST", "/v1/dm/group", {
        body: { participants: args["participants"], name: args["name"] },
        headers: idempotencyHeaders()
      }) as { id: string }
      const message = await context.engine.call("POST", `/v1/dm/${segment(conversation.id)}/messages`, {
        body: { text: str(args, "text"), mode: "wait" },
        headers: idempotencyHeaders()
      })
      return jsonContent({ conversation, message })
    }
  },
  {
    name: "add_reaction",
    title: "Add Reaction",
    description: "Add an emoji reaction to a message.",
    fields: { message_id: messageId, emoji: { type: "string", description: "Emoji character or shortcode" }, as: asField },
    annotations: idempotentWrite,
    run: async (context, args) => {
      actingAs(context, args["as"])
      const emoji = resolveEmoji(str(args, "emoji"))
      await context.engine.call("POST", `/v1/messages/${segment(str(args, "message_id"))}/reactions`, { body: { emoji } })
      return textContent(`Reacted with ${emoji}`)
    }
  },
  {
    name: "remove_reaction",
    title: "Remove Reaction",
    description: "Remove an emoji reaction from a message.",
    fields: { message_id: messageId, emoji: { type: "string", description: "Emoji character or shortcode" }, as: asField },
    annotations: idempotentWrite,
    run: async (context, args) => {
      actingAs(context, args["as"])
      const emoji = resolveEmoji(str(args, "emoji"))
      await context.engine.call("DELETE", `/v1/messages/${segment(str(args, "message_id"))}/reactions/${segment(emoji)}`)
      return textContent(`Removed reaction ${emoji}`)
    }
  },
  {
    name: "search_messages",
    title: "Search Messages",
    description: "Search messages across the workspace.",
    fields: {
      query: { type: "string", description: "Text search query" },
      channel: { type: "string", optional: true, description: "Optional channel filter" },
      from: { type: "string", optional: true, description: "Optional sender filter" },
      limit: { type: "number", optional: true, description: "Maximum results" },
      as: asField
    },
    annotations: readOnly,
    run: async (context, args) => {
      actingAs(context, args["as"])
      const results = await context.engine.call("GET", "/v1/search", {
        query: {
          q: str(args, "query"),
          channel: optStr(args, "channel"),
          from: optStr(args, "from"),
          limit: args["limit"] ? String(args["limit"]) : undefined
        }
      })
      return jsonContent({ results })
    }
  },
  {
    name: "check_inbox",
    title: "Check Inbox",
    description: "Check unread messages, mentions, DMs, and reactions for the current agent.",
    fields: { limit: { type: "number", optional: true, description: "Maximum inbox items" }, as: asField },
    annotations: readOnly,
    run: async (context, args) => {
      actingAs(context, args["as"])
      const limit = args["limit"]
      return jsonContent(await context.engine.call("GET", "/v1/inbox", { query: { limit: limit == null ? undefined : String(limit) } }))
    }
  },
  {
    name: "mark_message_read",
    title: "Mark as Read",
    description: "Mark a message as read for the current agent.",
    fields: { message_id: messageId, as: asField },
    annotations: idempotentWrite,
    run: async (context, args) => {
      actingAs(context, args["as"])
      await context.engine.call("POST", `/v1/messages/${segment(str(args, "message_id"))}/read`)
      return textContent(`Marked message ${str(args, "message_id")} as read`)
    }
  },
  {
    name: "get_message_readers",
    title: "Get Readers",
    description: "List agents who have read a message.",
    fields: { message_id: messageId, as: asField },
    annotations: readOnly,
    run: async (context, args) => {
      actingAs(context, args["as"])
      return jsonContent({ readers: await context.engine.call("GET", `/v1/messages/${segment(str(args, "message_id"))}/readers`) })
    }
  }
]
