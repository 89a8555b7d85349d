import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { agentByName, joinChannel, requireChannel } from "../directory.js"
import { EngineStore } from "../EngineStore.js"
import { badRequest, fail, notFound } from "../EngineError.js"
import { type ChannelRow, iso, parseObject } from "../rows.js"
import { authenticate, body, handle, noContent, ok, param, Required } from "./support.js"

// Channel administration as relaycast serves it: invite, topic, archive, members, mute (routes/channel.ts,
// engine/channel.ts). Any channel member may invite; anyone in the workspace may set a topic or
// archive, except #general, which cannot be archived. Muting is recorded per member (`is_muted`) and
// reported; deliveries are unchanged by it (relaycast mutes its realtime stream, which the embedded
// engine does not have).

const Invite = Schema.Struct({ agent_name: Required })

const Topic = Schema.Struct({
  topic: Schema.String.annotations({ message: () => "must be a string" })
})

const isMember = (channelId: string, agentId: string) =>
  Effect.flatMap(EngineStore, ({ sql }) =>
    Effect.map(sql<{ agent_id: string }>`SELECT agent_id FROM members WHERE channel_id = ${channelId} AND agent_id = ${agentId}`, (rows) =>
      rows.length > 0))

const updatedChannelJson = (channel: ChannelRow) => ({
  id: channel.id,
  name: channel.name,
  topic: channel.topic,
  metadata: parseObject(channel.metadata),
  created_at: iso(channel.created_at),
  is_archived: channel.archived === 1
})

/** `POST /v1/channels/:name/invite {agent_name}` (agent token; the inviter must be a member) → `{channel, agent}`. */
const invite = handle(Effect.gen(function*() {
  const caller = yield* authenticate("any")
  const input = yield* body(Invite)
  if (caller.agent === undefined) {
    return yield* Effect.fail(fail(403, "agent_token_required", "Agent token required to invite others"))
  }
  const channel = yield* requireChannel(caller.workspace.id, yield* param("name"))
  if (channel.archived === 1) return yield* Effect.fail(badRequest("Cannot invite to an archived channel", "channel_archived"))
  if (!(yield* isMember(channel.id, caller.agent.id))) {
    return yield* Effect.fail(fail(403, "not_a_member", "You must be a member of the channel to invite others"))
  }
  const invitee = yield* agentByName(caller.workspace.id, input.agent_name.replace(/^@/, ""))
  if (invitee === undefined) return yield* Effect.fail(notFound("agent_not_found", `Agent "${input.agent_name}" not found`))
  yield* joinChannel(channel.id, invitee.id)
  return ok({ channel: channel.name, agent: invitee.name })
}))

/** `PATCH /v1/channels/:name/topic {topic}` → the updated channel. */
const setTopic = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const caller = yield* authenticate("any")
  const input = yield* body(Topic)
  const channel = yield* requireChannel(caller.workspace.id, yield* param("name"))
  if (channel.archived === 1) return yield* Effect.fail(badRequest("Cannot update an archived channel", "channel_archived"))
  yield* sql`UPDATE channels SET topic = ${input.topic} WHERE id = ${channel.id}`
  return ok(updatedChannelJson({ ...channel, topic: input.topic }))
}))

/** `DELETE /v1/channels/:name`: a soft archive (204); #general is refused. */
const archive = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const caller = yield* authenticate("any")
  const name = (yield* param("name")).replace(/^#/, "")
  if (name === "general") {
    return yield* Effect.fail(badRequest("The #general channel cannot be archived", "cannot_archive_general"))
  }
  const channel = yield* requireChannel(caller.workspace.id, name)
  yield* sql`UPDATE channels SET archived = 1 WHERE id = ${channel.id}`
  return noContent()
}))

/** `GET /v1/channels/:name/members` → `[{agent_id, agent_name, role, joined_at, is_muted}]`. */
const members = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const caller = yield* authenticate("any")
  const channel = yield* requireChannel(caller.workspace.id, yield* param("name"))
  const rows = yield* sql<{ agent_id: string; agent_name: string; role: string; joined_at: number; is_muted: number }>`
    SELECT m.agent_id, a.name AS agent_name, m.role, m.joined_at, m.is_muted FROM members m JOIN agents a ON a.id = m.agent_id
    WHERE m.channel_id = ${channel.id} ORDER BY a.name`
  return ok(rows.map((row) => ({ ...row, joined_at: iso(row.joined_at), is_muted: row.is_muted === 1 })))
}))

/** `POST /v1/channels/:name/mute|unmute` (agent token; members only) → `{channel, agent_id, muted}`. */
const setMuted = (muted: boolean) =>
  handle(Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const { workspace, agent } = yield* authenticate("agent")
    const channel = yield* requireChannel(workspace.id, yield* param("name"))
    const updated = yield* sql<{ agent_id: string }>`UPDATE members SET is_muted = ${muted ? 1 : 0}
      WHERE channel_id = ${channel.id} AND agent_id = ${agent!.id} RETURNING agent_id`
    if (updated.length === 0) {
      return yield* Effect.fail(fail(403, "not_a_member", `You must be a member of the channel to ${muted ? "mute" : "unmute"} it`))
    }
    return ok({ channel: channel.name, agent_id: agent!.id, muted })
  }))

export const routes = HttpRouter.empty.pipe(
  HttpRouter.get("/v1/channels/:name/members", members),
  HttpRouter.post("/v1/channels/:name/mute", setMuted(true)),
  HttpRouter.post("/v1/channels/:name/unmute", setMuted(false)),
  HttpRouter.post("/v1/channels/:name/invite", invite),
  HttpRouter.patch("/v1/channels/:name/topic", setTopic),
  HttpRouter.del("/v1/channels/:name", archive)
)
