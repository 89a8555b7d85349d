import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { JsonObject } from "../../wire/Json.js"
import { requireAgent } from "../directory.js"
import { EngineStore, now } from "../EngineStore.js"
import { badRequest, forbidden } from "../EngineError.js"
import { snowflake } from "../ids.js"
import { agentJson, type AgentRow, iso, parseObject } from "../rows.js"
import { authenticate, body, created, handle, ok, param, query } from "./support.js"

// What a broker of the provider era (12.4.1) writes about the agents it hosts:
// `PATCH /v1/agents/:name` (it marks its agents and itself offline on shutdown) and
// `POST /v1/agents/:name/events` (session, activity and turn events), with `GET` to read them back.

const UpdateAgent = Schema.Struct({
  status: Schema.optional(Schema.Literal("active", "online", "idle", "blocked", "waiting", "offline", "away")),
  persona: Schema.optional(Schema.NullOr(Schema.String)),
  metadata: Schema.optional(Schema.NullOr(JsonObject))
})

const AgentEvent = Schema.Struct({
  type: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(100)),
  payload: Schema.optional(Schema.NullOr(JsonObject))
})

/** The newest events kept per agent; older ones are dropped as new ones arrive. */
export const agentEventsKept = 500

const storedStatus = (status: string) => (status === "online" ? "active" : status === "away" ? "idle" : status)

/** The agent named in the path, which an agent token may only name for itself. */
const targetAgent = Effect.gen(function*() {
  const caller = yield* authenticate("any")
  const agent = yield* requireAgent(caller.workspace.id, yield* param("name"))
  if (caller.agent !== undefined && caller.agent.id !== agent.id) {
    return yield* Effect.fail(forbidden("forbidden", "An agent token may only change or report its own agent"))
  }
  return agent
})

/** `PATCH /v1/agents/:name`: status, persona, and metadata merged key by key. */
const updateAgent = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const agent = yield* targetAgent
  const input = yield* body(UpdateAgent)
  if (input.status === undefined && input.persona === undefined && input.metadata === undefined) {
    return yield* Effect.fail(badRequest("Nothing to update: give status, persona or metadata"))
  }
  const at = yield* now
  const status = input.status === undefined ? agent.status : storedStatus(input.status)
  const persona = input.persona === undefined ? agent.persona : input.persona
  const metadata = input.metadata === undefined ? agent.metadata
    : JSON.stringify(input.metadata === null ? {} : { ...parseObject(agent.metadata), ...input.metadata })
  yield* sql`UPDATE agents SET status = ${status}, persona = ${persona}, metadata = ${metadata}, last_seen = ${at}
    WHERE id = ${agent.id}`
  const [updated] = yield* sql<AgentRow>`SELECT * FROM agents WHERE id = ${agent.id}`
  return ok(agentJson(updated!))
}))

/** `POST /v1/agents/:name/events`: one event, kept with the agent's newest. */
const recordEvent = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const agent = yield* targetAgent
  const input = yield* body(AgentEvent)
  const at = yield* now
  const event = { id: snowflake(), agent_id: agent.id, type: input.type, payload: JSON.stringify(input.payload ?? {}), created_at: at }
  yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`INSERT INTO agent_events ${sql.insert(event)}`
    yield* sql`DELETE FROM agent_events WHERE agent_id = ${agent.id} AND id NOT IN
      (SELECT id FROM agent_events WHERE agent_id = ${agent.id} ORDER BY created_at DESC, id DESC LIMIT ${agentEventsKept})`
  }))
  return created({ id: event.id, agent_id: agent.id, agent_name: agent.name, type: event.type, created_at: iso(at) })
}))

/** `GET /v1/agents/:name/events?type=&limit=`: the newest events, oldest first. */
const listEvents = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const agent = yield* targetAgent
  const params = yield* query
  const limit = Number(params.get("limit") ?? 100)
  if (!Number.isInteger(limit) || limit < 1 || limit > agentEventsKept) {
    return yield* Effect.fail(badRequest(`limit must be an integer from 1 to ${agentEventsKept}`))
  }
  const type = params.get("type")
  const rows = yield* sql<{ id: string; type: string; payload: string; created_at: number }>`
    SELECT id, type, payload, created_at FROM agent_events WHERE agent_id = ${agent.id}
    ${type === null ? sql`` : sql`AND type = ${type}`} ORDER BY created_at DESC, id DESC LIMIT ${limit}`
  return ok([...rows].reverse().map((row) => ({
    id: row.id,
    agent_id: agent.id,
    agent_name: agent.name,
    type: row.type,
    payload: parseObject(row.payload),
    created_at: iso(row.created_at)
  })))
}))

export const routes = HttpRouter.empty.pipe(
  HttpRouter.patch("/v1/agents/:name", updateAgent),
  HttpRouter.post("/v1/agents/:name/events", recordEvent),
  HttpRouter.get("/v1/agents/:name/events", listEvents)
)
