import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { BrokerConfig } from "../broker/BrokerConfig.js"
import { presentedKey } from "../broker/http/auth.js"
import { failure, json } from "../broker/http/responses.js"
import { AgentTools } from "./AgentTools.js"
import { deliveryReport, DeliveryUnknown } from "./delivery.js"
import { makeRelayHttp, RelayCallError } from "./relayHttp.js"

// The daemon's routes for its agents' tool servers, authenticated by the agent's own token (never the
// broker API key, which an agent does not get). They answer what needs the workspace key, which only
// the daemon holds, within what an agent may do: list agents and nodes, spawn (as itself), release
// itself or agents it spawned, read a message's delivery state. Answers are `{ok, data}` envelopes.
//   POST /api/agent/list-agents {status?}            POST /api/agent/query-nodes {capability?, name?}
//   POST /api/agent/spawn {name, cli, …}             POST /api/agent/add-agent {name, cli, task, …}
//   POST /api/agent/remove-agent {name, reason?, delete_agent?}
//   GET  /api/agent/messages/:id/delivery?wait_ms=  POST /api/agent/ready {transport}

const ok = (data: unknown) => json({ ok: true, data })
const error = (status: number, code: string, message: string) => json({ ok: false, error: { code, message } }, status)

/** The calling agent's name, or the 401 to answer. */
export const callingAgent = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const token = presentedKey(request.headers)
  const tools = yield* AgentTools
  const name = token === undefined ? Option.none<string>() : yield* tools.agentOf(token)
  if (Option.isNone(name)) return yield* Effect.fail(error(401, "unauthorized", "an agent token of this daemon's agents is required"))
  return { name: name.value, token: token! }
})

const bodyOf = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const text = yield* Effect.orElseSucceed(request.text, () => "")
  try {
    const parsed: unknown = text.trim() === "" ? {} : JSON.parse(text)
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) return parsed as Record<string, unknown>
  } catch {
    // answered below
  }
  return yield* Effect.fail(error(400, "invalid_request", "the body must be a JSON object"))
})

const workspaceEngine = Effect.map(BrokerConfig, (config) =>
  makeRelayHttp({ baseUrl: config.baseUrl, token: Redacted.value(config.workspaceKey) }))

const engineCall = (run: () => Promise<unknown>) =>
  Effect.tryPromise({
    try: run,
    catch: (cause) =>
      cause instanceof RelayCallError
        ? error(cause.status !== undefined && cause.status < 500 ? cause.status : 502, cause.code, cause.message)
        : error(502, "relay_error", String(cause))
  })

const str = (body: Record<string, unknown>, key: string) => typeof body[key] === "string" ? body[key] as string : undefined

const listAgents = Effect.gen(function*() {
  yield* callingAgent
  const body = yield* bodyOf
  const engine = yield* workspaceEngine
  const agents = yield* engineCall(() => engine.call("GET", "/v1/agents", { query: { status: str(body, "status") } }))
  return ok({ agents })
})

const readString = (node: Record<string, unknown>, ...keys: ReadonlyArray<string>) =>
  keys.map((key) => node[key]).find((value): value is string => typeof value === "string")
const readNumber = (node: Record<string, unknown>, ...keys: ReadonlyArray<string>) =>
  keys.map((key) => node[key]).find((value): value is number => typeof value === "number")
const readBoolean = (node: Record<string, unknown>, ...keys: ReadonlyArray<string>) =>
  keys.map((key) => node[key]).find((value): value is boolean => typeof value === "boolean")

/** Upstream's `toRelayNode` (@agent-relay/sdk), so query_nodes answers in its shape. */
const relayNode = (raw: Record<string, unknown>) => {
  const status = readString(raw, "status")
  return {
    id: readString(raw, "id", "nodeId"),
    nodeId: readString(raw, "nodeId"),
    name: readString(raw, "name") ?? "",
    status: status === "online" || status === "offline" ? status : "unknown",
    live: readBoolean(raw, "live"),
    capabilities: Array.isArray(raw["capabilities"])
      ? (raw["capabilities"] as Array<Record<string, unknown>>).map((capability) => ({
        name: readString(capability, "name") ?? "",
        kind: readString(capability, "kind"),
        metadata: capability["metadata"]
      }))
      : [],
    maxAgents: readNumber(raw, "maxAgents"),
    activeAgents: readNumber(raw, "activeAgents"),
    handlersLive: readBoolean(raw, "handlersLive"),
    load: readNumber(raw, "load"),
    lastHeartbeatAt: readString(raw, "lastHeartbeatAt"),
    createdAt: readString(raw, "createdAt"),
    tags: Array.isArray(raw["tags"]) ? raw["tags"] : undefined,
    version: readString(raw, "version")
  }
}

const queryNodes = Effect.gen(function*() {
  yield* callingAgent
  const body = yield* bodyOf
  const engine = yield* workspaceEngine
  const nodes = yield* engineCall(() =>
    engine.call("GET", "/v1/nodes", { query: { capability: str(body, "capability"), name: str(body, "name") } }))
  return ok({ nodes: (nodes as Array<Record<string, unknown>>).map(relayNode) })
})

const exitAfterTask = "## Post-task exit\n" +
  "When the requested task is fully complete and you have reported the final outcome, output `/exit` on its own line so the Agent Relay harness exits cleanly. Do not output `/exit` before the task is complete."

/** `spawn`: the engine's spawn action, invoked with the agent's own token (the agent is the caller). */
const spawn = Effect.gen(function*() {
  const caller = yield* callingAgent
  const body = yield* bodyOf
  const config = yield* BrokerConfig
  const engine = makeRelayHttp({ baseUrl: config.baseUrl, token: caller.token })
  const channels = Array.isArray(body["channels"]) ? body["channels"] : str(body, "channel") !== undefined ? [body["channel"]] : undefined
  const input = {
    name: body["name"],
    cli: body["cli"],
    ...Object.fromEntries(["task", "model", "session_ref", "target_node"].flatMap((key) => body[key] ? [[key, body[key]]] : [])),
    ...(channels === undefined ? {} : { channels })
  }
  const invocation = yield* engineCall(() => engine.call("POST", "/v1/actions/spawn/invoke", { body: { input } }))
  if (typeof body["name"] === "string") yield* Effect.flatMap(AgentTools, (tools) => tools.recordSpawn(caller.name, body["name"] as string))
  return ok({ invocation })
})

/** `add_agent`: `POST /v1/agents/spawn` with the workspace key, which the agent does not hold. */
const addAgent = Effect.gen(function*() {
  const caller = yield* callingAgent
  const body = yield* bodyOf
  const engine = yield* workspaceEngine
  const mode = str(body, "spawn_mode")
  const exits = body["exit_after_task"] === true || (mode !== undefined && mode !== "interactive")
  const task = str(body, "task") ?? ""
  const spawned = yield* engineCall(() =>
    engine.call("POST", "/v1/agents/spawn", {
      body: {
        name: body["name"],
        cli: body["cli"],
        task: exits ? `${task}\n\n${exitAfterTask}` : task,
        ...(str(body, "channel") === undefined ? {} : { channel: body["channel"] }),
        ...(str(body, "persona") === undefined ? {} : { persona: body["persona"] }),
        ...(str(body, "model") === undefined ? {} : { metadata: { model: body["model"] } })
      }
    }))
  if (typeof body["name"] === "string") yield* Effect.flatMap(AgentTools, (tools) => tools.recordSpawn(caller.name, body["name"] as string))
  return ok(spawned)
})

/** `remove_agent`: only the caller itself or an agent it spawned through these tools. */
const removeAgent = Effect.gen(function*() {
  const caller = yield* callingAgent
  const body = yield* bodyOf
  const name = str(body, "name")
  if (name === undefined) return error(400, "invalid_request", "name is required")
  const allowed = yield* Effect.flatMap(AgentTools, (tools) => tools.mayRemove(caller.name, name))
  if (!allowed) {
    return error(403, "forbidden", `${caller.name} may release only itself and the agents it spawned; not ${name}`)
  }
  const engine = yield* workspaceEngine
  const invocation = yield* engineCall(() =>
    engine.call("POST", "/v1/agents/release", {
      body: { name, ...(str(body, "reason") === undefined ? {} : { reason: body["reason"] }), ...(body["delete_agent"] === true ? { deleteAgent: true } : {}) }
    }))
  return ok({ invocation })
})

const delivery = Effect.gen(function*() {
  yield* callingAgent
  const id = yield* Effect.map(HttpRouter.params, (params) => params["id"] ?? "")
  const request = yield* HttpServerRequest.HttpServerRequest
  const raw = Number(new URL(request.url, "http://localhost").searchParams.get("wait_ms") ?? "0")
  const waitMs = Number.isFinite(raw) ? Math.min(Math.max(raw, 0), 10_000) : 0
  const report = yield* deliveryReport(id, { waitMs, detail: waitMs === 0 }).pipe(
    Effect.mapError((cause) => error(cause.status, cause.status === 404 ? "message_not_found" : "delivery_unknown", cause.message))
  )
  return ok(report)
})

const ready = Effect.gen(function*() {
  const caller = yield* callingAgent
  yield* Effect.flatMap(AgentTools, (tools) => tools.toolServerReady(caller.name, "stdio"))
  return ok({ name: caller.name })
})

/** `GET /api/messages/:id` (broker API key): the delivery state per recipient, for `relay-broker message`. */
export const messageRoute = Effect.gen(function*() {
  const id = yield* Effect.map(HttpRouter.params, (params) => params["id"] ?? "")
  return yield* deliveryReport(id, { waitMs: 0, detail: true }).pipe(
    Effect.map((report) => json({ success: true, ...report })),
    Effect.catchAll((cause: DeliveryUnknown) =>
      Effect.succeed(failure(cause.status, cause.status === 404 ? "message_not_found" : "delivery_unknown", cause.message)))
  )
})

const merged = <R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, HttpServerResponse.HttpServerResponse, R>) =>
  Effect.merge(handler)

export const agentRoutes = HttpRouter.empty.pipe(
  HttpRouter.post("/api/agent/list-agents", merged(listAgents)),
  HttpRouter.post("/api/agent/query-nodes", merged(queryNodes)),
  HttpRouter.post("/api/agent/spawn", merged(spawn)),
  HttpRouter.post("/api/agent/add-agent", merged(addAgent)),
  HttpRouter.post("/api/agent/remove-agent", merged(removeAgent)),
  HttpRouter.get("/api/agent/messages/:id/delivery", merged(delivery)),
  HttpRouter.post("/api/agent/ready", merged(ready)),
  HttpRouter.get("/api/messages/:id", messageRoute)
)
