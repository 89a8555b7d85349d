import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { AgentRegistry } from "../AgentRegistry.js"
import { DeliveryHolds } from "../DeliveryHolds.js"
import { agentNotFound, badRequest, decodeBody, failure, json } from "./responses.js"

// Delivery modes over the control API: `GET|PUT /api/spawned/{name}/delivery-mode`,
// `GET /api/spawned/{name}/pending`, `POST /api/spawned/{name}/flush`. 503 when the broker runs
// without DeliveryHolds.

const Mode = Schema.Literal("auto_inject", "manual_flush")

export const DeliveryModeBody = Schema.Struct({
  mode: Mode,
  expected_mode: Schema.optional(Schema.NullOr(Mode)),
  expectedMode: Schema.optional(Schema.NullOr(Mode))
}).annotations({ identifier: "DeliveryModeBody" })

const nameParam = Effect.map(HttpRouter.params, (params) => params["name"] ?? "")

/** The agent must be live; the handler gets its name and the holds. */
const forAgent = <E, R>(
  handler: (name: string, holds: DeliveryHolds["Type"]) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) =>
  Effect.gen(function*() {
    const name = yield* nameParam
    const holds = yield* Effect.serviceOption(DeliveryHolds)
    if (Option.isNone(holds)) return failure(503, "service_unavailable", "delivery modes are not running in this broker", { retryable: false })
    const registry = yield* AgentRegistry
    const live = yield* Effect.option(registry.lookup(name))
    if (Option.isNone(live)) return agentNotFound(name)
    return yield* handler(name, holds.value)
  })

const getMode = forAgent((name, holds) => Effect.map(holds.mode(name), (mode) => json({ name, mode })))

const putMode = forAgent((name, holds) =>
  Effect.gen(function*() {
    const body = yield* decodeBody(DeliveryModeBody)
    const expected = body.expected_mode ?? body.expectedMode ?? undefined
    const change = yield* holds.setMode(name, body.mode, expected)
    return json({ name, ...change })
  }).pipe(Effect.catchTag("BadRequest", (error) => Effect.succeed(badRequest(error))))
)

const pending = forAgent((name, holds) => Effect.map(holds.pending(name), (list) => json({ name, pending: list })))

const flush = forAgent((name, holds) => Effect.map(holds.flush(name), (flushed) => json({ name, flushed })))

export const holdRoutes = HttpRouter.empty.pipe(
  HttpRouter.get("/api/spawned/:name/delivery-mode", getMode),
  HttpRouter.put("/api/spawned/:name/delivery-mode", putMode),
  HttpRouter.get("/api/spawned/:name/pending", pending),
  HttpRouter.post("/api/spawned/:name/flush", flush)
)
