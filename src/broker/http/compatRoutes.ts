import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { AgentRegistry } from "../AgentRegistry.js"
import { BrokerConfig } from "../BrokerConfig.js"
import { resolveHarness } from "../harness.js"
import { resolveCommand } from "../PtyHost.js"
import { agentNotFound, badRequest, decodeBody, failure, json } from "./responses.js"

// Upstream routes harness-driver 9.1.6 calls that this broker answers in upstream's way even where
// it cannot do what upstream does: a preflight that checks each CLI can be started here, a model
// switch that is refused as unsupported (501) for a running terminal, the dashboard's history
// stats, and the interrupt upstream itself answers 501 for.

const PreflightBody = Schema.Struct({
  agents: Schema.Array(Schema.Struct({ name: Schema.String, cli: Schema.optional(Schema.NullOr(Schema.String)) }))
}).annotations({ identifier: "PreflightBody" })

/** `POST /api/preflight {agents:[{name, cli}]}`: whether each CLI resolves to a program on this machine. */
const preflight = Effect.gen(function*() {
  const body = yield* decodeBody(PreflightBody).pipe(Effect.mapError(badRequest))
  const config = yield* BrokerConfig
  const agents = yield* Effect.forEach(body.agents, (agent) => {
    const cli = agent.cli ?? "claude"
    return resolveCommand(resolveHarness({ cli }).command, { cwd: config.cwd, path: process.env["PATH"] }).pipe(
      Effect.match({
        onFailure: (error) => ({ name: agent.name, cli, ok: false, error: error.message }),
        onSuccess: (path) => ({ name: agent.name, cli, ok: true, path })
      })
    )
  })
  return json({ success: agents.every((agent) => agent.ok), agents })
}).pipe(Effect.merge)

const ModelBody = Schema.Struct({
  model: Schema.String,
  timeout_ms: Schema.optional(Schema.NullOr(Schema.Number))
}).annotations({ identifier: "ModelBody" })

/** `POST /api/spawned/{name}/model`: 404 for an unknown agent; otherwise 501 (a terminal's model is its own). */
const setModel = Effect.gen(function*() {
  const name = (yield* HttpRouter.params)["name"] ?? ""
  const body = yield* decodeBody(ModelBody).pipe(Effect.mapError(badRequest))
  yield* (yield* AgentRegistry).lookup(name).pipe(Effect.mapError(() => agentNotFound(name)))
  return failure(
    501,
    "unsupported_operation",
    `cannot switch '${name}' to model '${body.model}' while it runs: release it and spawn it again with "model"`,
    { name, retryable: false }
  )
}).pipe(Effect.merge)

/** `GET /api/history/stats`: upstream's placeholder (this broker keeps no message history; the engine does). */
const historyStats = Effect.succeed(json({ total_messages: 0, total_sessions: 0, active_sessions: 0, unique_agents: 0 }))

const interrupt = Effect.map(HttpRouter.params, (params) =>
  failure(501, "unsupported_operation", "interrupting an agent is not implemented (as upstream): send it input instead", {
    name: params["name"] ?? "",
    retryable: false
  }))

export const compatRoutes = HttpRouter.empty.pipe(
  HttpRouter.post("/api/preflight", preflight),
  HttpRouter.post("/api/spawned/:name/model", setModel),
  HttpRouter.get("/api/history/stats", historyStats),
  HttpRouter.post("/api/agents/by-name/:name/interrupt", interrupt)
)
