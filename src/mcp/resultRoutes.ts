import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { randomBytes } from "node:crypto"
import { BrokerConfig } from "../broker/BrokerConfig.js"
import { EventLog } from "../broker/EventLog.js"
import { isAuthorized, presentedKey } from "../broker/http/auth.js"
import { failure, json, queryParam, unauthorized } from "../broker/http/responses.js"
import type { Json } from "../wire/Json.js"
import { AgentTools } from "./AgentTools.js"

// Result contracts (upstream's `agentResultSchema`):
//   POST /api/agent-result  {data|result, name?|agent?, final?=true, metadata?}, token in
//                           `x-agent-result-token` or `Authorization: Bearer` (the agent's
//                           AGENT_RELAY_RESULT_TOKEN): validated against the spawn's schema, then
//                           `agent_result {name, result_id, data, final, metadata?}` on /ws.
//   GET  /api/agent-result?name=   (broker API key): the agent's last result.

const validate = (schema: unknown, data: unknown) =>
  Effect.promise(async () => {
    if (typeof schema !== "object" || schema === null) return undefined
    const { AjvJsonSchemaValidator } = await import("@modelcontextprotocol/sdk/validation/ajv")
    try {
      const check = new AjvJsonSchemaValidator().getValidator(schema as never)(data)
      return check.valid ? undefined : check.errorMessage
    } catch (error) {
      return `the result schema cannot be used: ${(error as Error).message}`
    }
  })

const submit = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const tools = yield* AgentTools
  const headerToken = request.headers["x-agent-result-token"]
  const token = typeof headerToken === "string" && headerToken.trim() !== "" ? headerToken.trim() : presentedKey(request.headers)
  const contract = token === undefined ? Option.none() : yield* tools.resultContractOf(token)
  if (Option.isNone(contract)) return failure(401, "unauthorized", "a valid agent result token is required")
  const text = yield* Effect.orElseSucceed(request.text, () => "")
  let body: Record<string, unknown>
  try {
    body = JSON.parse(text === "" ? "{}" : text)
  } catch {
    return failure(400, "invalid_request", "the body is not valid JSON")
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return failure(400, "invalid_request", "the body must be an object")
  const named = [body["name"], body["agent"]].find((value) => typeof value === "string")
  if (named !== undefined && named !== contract.value.name) {
    return failure(403, "forbidden", `this result token belongs to ${contract.value.name}, not ${String(named)}`)
  }
  const data = body["data"] !== undefined ? body["data"] : body["result"]
  if (data === undefined) return failure(400, "invalid_request", "data is required")
  const invalid = yield* validate(contract.value.schema, data)
  if (invalid !== undefined) return failure(422, "invalid_result", `the result does not match the schema: ${invalid}`)
  const result = {
    name: contract.value.name,
    result_id: `res_${randomBytes(8).toString("hex")}`,
    data: data as Json,
    final: body["final"] !== false,
    ...(body["metadata"] === undefined ? {} : { metadata: body["metadata"] as Json }),
    submitted_at: new Date().toISOString()
  }
  yield* tools.recordResult(result)
  const { submitted_at: _at, ...event } = result
  yield* Effect.flatMap(EventLog, (events) => events.publish("agent_result", event))
  return json({ success: true, name: result.name, result_id: result.result_id })
})

const last = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const config = yield* BrokerConfig
  if (!isAuthorized(request.headers, config.brokerApiKey)) return unauthorized
  const name = queryParam(request.url, "name") ?? queryParam(request.url, "agent")
  if (name === undefined) return failure(400, "invalid_request", "name is required (?name=<agent>)")
  const result = yield* Effect.flatMap(AgentTools, (tools) => tools.lastResult(name))
  return Option.match(result, {
    onNone: () => failure(404, "result_not_found", `no result from ${name}`),
    onSome: (found) => json({ success: true, ...found })
  })
})

export const resultRoutes = HttpRouter.empty.pipe(
  HttpRouter.post("/api/agent-result", submit),
  HttpRouter.get("/api/agent-result", last)
)
