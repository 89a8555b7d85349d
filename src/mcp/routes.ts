import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { failure } from "../broker/http/responses.js"
import { agentRoutes } from "./agentRoutes.js"
import { AgentTools } from "./AgentTools.js"
import { mcpRoutes } from "./mcpRoute.js"
import { MessageRecords } from "./MessageRecords.js"
import { resultRoutes } from "./resultRoutes.js"

// Every route of the agent tools, for the control API. They check their own credentials (the agent's
// token, a result token, or the API key for the reads), so the API-key check lets them through
// (`agentToolPaths`). Each answers 503 in a composition without AgentTools and MessageRecords.

/** Paths that authenticate themselves: `/mcp`, `/api/agent/*`, `/api/agent-result`. */
export const isAgentToolPath = (path: string): boolean =>
  path === "/mcp" || path === "/api/agent-result" || path.startsWith("/api/agent/")

const withTools = <E, R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.gen(function*() {
    const tools = yield* Effect.serviceOption(AgentTools)
    const records = yield* Effect.serviceOption(MessageRecords)
    if (Option.isNone(tools) || Option.isNone(records)) {
      // This broker's composition does not change while it runs: the same request never succeeds here.
      return failure(503, "service_unavailable", "the agent tools are not running in this broker", { retryable: false })
    }
    return yield* handler.pipe(
      Effect.provideService(AgentTools, tools.value),
      Effect.provideService(MessageRecords, records.value)
    )
  })

export const agentToolRoutesIfPresent = HttpRouter.concatAll(mcpRoutes, agentRoutes, resultRoutes).pipe(HttpRouter.use(withTools))
