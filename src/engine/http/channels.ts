import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Json, JsonObject } from "../../wire/Json.js"
import { channelByName, createChannel, joinChannel, requireChannel } from "../directory.js"
import { EngineStore, now } from "../EngineStore.js"
import { badRequest, conflict } from "../EngineError.js"
import { messageJson, type MessageWithNames, postChannelMessage } from "../messages.js"
import { channelJson, type ChannelRow, iso } from "../rows.js"
import { authenticateNode, isNodeBearer, nodeSender } from "./nodePosts.js"
import { authenticate, body, created, handle, intQuery, noContent, ok, param, query, requireCallerAgent, Required } from "./support.js"

const channelName = /^[a-z0-9][a-z0-9-]*$/

const CreateChannel = Schema.Struct({
  name: Required,
  topic: Schema.optional(Schema.NullOr(Schema.String)),
  metadata: Schema.optional(Schema.NullOr(JsonObject))
})

const memberCount = (channelId: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<{ n: number }>`SELECT COUNT(*) AS n FROM members WHERE channel_id = ${channelId}`, (rows) => rows[0]?.n ?? 0))

const createChannelRoute = handle(Effect.gen(function*() {
  const caller = yield* authenticate("any")
  const input = yield* body(CreateChannel)
  const name = input.name.replace(/^#/, "")
  if (!channelName.test(name)) {
    return yield* Effect.fail(badRequest("Channel name must match ^[a-z0-9][a-z0-9-]*$", "invalid_channel_name"))
  }
  if ((yield* channelByName(caller.workspace.id, name)) !== undefined) {
    return yield* Effect.fail(conflict("channel_already_exists", `Channel "${name}" already exists`))
  }
  const channel = yield* createChannel(
    caller.workspace.id,
    name,
    input.topic ?? null,
    JSON.stringify(input.metadata ?? {}),
    caller.agent?.id ?? null
  )
  if (caller.agent !== undefined) yield* joinChannel(channel.id, caller.agent.id, "owner")
  return created(channelJson(channel, yield* memberCount(channel.id)))
}))

const listChannels = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace } = yield* authenticate("any")
  const includeArchived = (yield* query).get("include_archived") === "true"
  const rows = yield* sql<ChannelRow & { member_count: number }>`SELECT c.*, (SELECT COUNT(*) FROM members m WHERE m.channel_id = c.id) AS member_count
    FROM channels c WHERE c.workspace_id = ${workspace.id} AND c.channel_type = 0
      ${includeArchived ? sql`` : sql`AND c.archived = 0`} ORDER BY c.name`
  return ok(rows.map((row) => channelJson(row, row.member_count)))
}))

const getChannel = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace } = yield* authenticate("any")
  const channel = yield* requireChannel(workspace.id, yield* param("name"))
  const members = yield* sql<{ agent_id: string; agent_name: string; role: string; joined_at: number }>`
    SELECT m.agent_id, a.name AS agent_name, m.role, m.joined_at FROM members m JOIN agents a ON a.id = m.agent_id
    WHERE m.channel_id = ${channel.id} ORDER BY a.name`
  return ok({
    ...channelJson(channel, members.length),
    members: members.map((member) => ({ ...member, joined_at: iso(member.joined_at) }))
  })
}))

const join = handle(Effect.gen(function*() {
  const { workspace, agent } = yield* authenticate("agent")
  const channel = yield* requireChannel(workspace.id, yield* param("name"))
  if (channel.archived === 1) return yield* Effect.fail(badRequest(`Channel "${channel.name}" is archived`, "channel_archived"))
  const added = yield* joinChannel(channel.id, agent!.id)
  return ok({ channel: channel.name, agent_id: agent!.id, already_member: !added })
}))

const leave = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace, agent } = yield* authenticate("agent")
  const channel = yield* requireChannel(workspace.id, yield* param("name"))
  yield* sql`DELETE FROM members WHERE channel_id = ${channel.id} AND agent_id = ${agent!.id}`
  return noContent()
}))

export const PostMessage = Schema.Struct({
  text: Required,
  /** With a node token: the agent the post is attributed to (`ctx.sendMessage`). Ignored otherwise. */
  from: Schema.optional(Schema.NullOr(Schema.String)),
  blocks: Schema.optional(Schema.NullOr(Json)),
  attachments: Schema.optional(Schema.NullOr(Schema.Array(Json))),
  data: Schema.optional(Schema.NullOr(Json)),
  mode: Schema.optional(Schema.NullOr(Schema.Literal("wait", "steer")))
})

/** The poster and the body: the caller's agent, or with a node token the `from` it attributes the post to. */
const poster = Effect.gen(function*() {
  if (yield* isNodeBearer) {
    const { node, workspace } = yield* authenticateNode
    const input = yield* body(PostMessage)
    return { workspace, input, sender: yield* nodeSender(node, input.from) }
  }
  const caller = yield* authenticate("any")
  const sender = yield* requireCallerAgent(caller)
  return { workspace: caller.workspace, input: yield* body(PostMessage), sender }
})

const postMessage = handle(Effect.gen(function*() {
  const { workspace, input, sender } = yield* poster
  const channel = yield* requireChannel(workspace.id, yield* param("name"))
  const response = yield* postChannelMessage({
    sender,
    channel,
    text: input.text,
    mode: input.mode ?? "wait",
    blocks: input.blocks ?? null,
    data: input.data ?? null
  })
  return created(response)
}))

export const historyPage = (channelId: string, params: URLSearchParams, order: "newest" | "oldest" = "newest") =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const limit = intQuery(params, "limit", 50, 100)
    const before = params.get("before")
    const after = params.get("after")
    const rows = yield* sql<MessageWithNames>`SELECT m.*, a.name AS agent_name, c.name AS channel_name FROM messages m
      LEFT JOIN agents a ON a.id = m.agent_id JOIN channels c ON c.id = m.channel_id
      WHERE m.channel_id = ${channelId} AND m.thread_id IS NULL
        ${before === null ? sql`` : sql`AND CAST(m.id AS INTEGER) < CAST(${before} AS INTEGER)`}
        ${after === null ? sql`` : sql`AND CAST(m.id AS INTEGER) > CAST(${after} AS INTEGER)`}
      ORDER BY CAST(m.id AS INTEGER) ${order === "newest" ? sql`DESC` : sql`ASC`} LIMIT ${limit + 1}`
    const page = rows.slice(0, limit)
    return {
      data: page.map(messageJson),
      cursor: { next: rows.length > limit ? page[page.length - 1]!.id : null, has_more: rows.length > limit }
    }
  })

const listMessages = handle(Effect.gen(function*() {
  const { workspace } = yield* authenticate("any")
  const channel = yield* requireChannel(workspace.id, yield* param("name"))
  const page = yield* historyPage(channel.id, yield* query)
  return ok(page.data)
}))

export const routes = HttpRouter.empty.pipe(
  HttpRouter.post("/v1/channels", createChannelRoute),
  HttpRouter.get("/v1/channels", listChannels),
  HttpRouter.get("/v1/channels/:name", getChannel),
  HttpRouter.post("/v1/channels/:name/join", join),
  HttpRouter.post("/v1/channels/:name/leave", leave),
  HttpRouter.post("/v1/channels/:name/messages", postMessage),
  HttpRouter.get("/v1/channels/:name/messages", listMessages)
)
