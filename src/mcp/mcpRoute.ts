import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import { BrokerConfig, packageVersion } from "../broker/BrokerConfig.js"
import { json } from "../broker/http/responses.js"
import { callingAgent } from "./agentRoutes.js"
import { AgentTools } from "./AgentTools.js"
import { makeRelayHttp } from "./relayHttp.js"

// `/mcp`: the agent-relay tools over Streamable HTTP, for harnesses that take an HTTP MCP server
// (claude, codex, gemini, opencode). Authenticated by the agent's own token (`Authorization: Bearer`),
// which the harness reads from the agent's environment by reference. Stateless: each request gets a
// fresh server bound to the calling agent, so no session outlives its request and none is kept per
// agent. No process per agent, no cold start.

const mcp = Effect.gen(function*() {
  const caller = yield* callingAgent
  const config = yield* BrokerConfig
  const tools = yield* AgentTools
  const apiUrl = yield* tools.apiUrl
  const request = yield* HttpServerRequest.HttpServerRequest
  const runtime = yield* Effect.runtime<never>()
  const preflight = request.headers["x-relay-preflight"] === "1"
  const contract = yield* tools.resultContractFor(caller.name)
  const context = {
    agentName: caller.name,
    engine: makeRelayHttp({ baseUrl: config.baseUrl, token: caller.token }),
    broker: Option.isSome(apiUrl) ? makeRelayHttp({ baseUrl: apiUrl.value, token: caller.token, timeoutMs: 60_000 }) : undefined,
    result: Option.isSome(contract) && Option.isSome(apiUrl)
      ? { url: `${apiUrl.value}/api/agent-result`, token: contract.value.token, schema: contract.value.schema }
      : undefined
  }
  const body = request.method === "POST" ? yield* Effect.orElseSucceed(request.text, () => "") : undefined
  const headers = new Headers()
  for (const [key, value] of Object.entries(request.headers)) if (typeof value === "string") headers.set(key, value)
  const webRequest = new Request(`http://localhost${request.url}`, {
    method: request.method,
    headers,
    ...(body === undefined ? {} : { body })
  })
  const response = yield* Effect.promise(async () => {
    // The MCP SDK (with zod and ajv, ~450 KB of code) loads on the first /mcp request, not at startup.
    const [{ WebStandardStreamableHTTPServerTransport }, { createToolServer }] = await Promise.all([
      import("@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js"),
      import("./server.js")
    ])
    const server = createToolServer(context, {
      version: packageVersion,
      onInitialized: () => {
        if (!preflight) Runtime.runFork(runtime)(tools.toolServerReady(caller.name, "http"))
      }
    })
    const transport = new WebStandardStreamableHTTPServerTransport({ enableJsonResponse: true })
    await server.connect(transport)
    try {
      const answer = await transport.handleRequest(webRequest)
      const text = await answer.text()
      return { status: answer.status, headers: answer.headers, text }
    } finally {
      await server.close().catch(() => undefined)
    }
  })
  const contentType = response.headers.get("content-type") ?? "application/json"
  return HttpServerResponse.text(response.text, { status: response.status, contentType })
}).pipe(Effect.merge)

const notAllowed = Effect.succeed(
  json({ jsonrpc: "2.0", error: { code: -32000, message: "Method not allowed: this server is stateless (POST only)" }, id: null }, 405)
)

export const mcpRoutes = HttpRouter.empty.pipe(
  HttpRouter.post("/mcp", mcp),
  HttpRouter.get("/mcp", Effect.flatMap(callingAgent, () => notAllowed).pipe(Effect.merge)),
  HttpRouter.del("/mcp", Effect.flatMap(callingAgent, () => notAllowed).pipe(Effect.merge))
)
