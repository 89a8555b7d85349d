import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { BrokerConfig } from "../BrokerConfig.js"
import { BrokerSession } from "../BrokerSession.js"
import { TokenStore } from "../TokenStore.js"
import { json } from "./responses.js"

// The session routes harness-driver 9.1.6 calls besides `GET /api/session`: the lease renewal of
// an ephemeral broker and the workspace configuration.

/** `POST /api/session/renew` → `{renewed:true, expires_in_secs, persist}`. */
const renew = Effect.gen(function*() {
  const session = yield* Effect.serviceOption(BrokerSession)
  if (Option.isNone(session)) return json({ renewed: true, expires_in_secs: 0, persist: true })
  return json(yield* session.value.renew)
})

/** `GET /api/config` → `{workspaceKey, defaultWorkspaceId, memberships}`. */
const config = Effect.gen(function*() {
  const broker = yield* BrokerConfig
  const workspaceId = yield* TokenStore.pipe(
    Effect.flatMap((tokens) => tokens.identity),
    Effect.map((identity) => identity.workspaceId),
    Effect.timeout("2 seconds"),
    Effect.option,
    Effect.map(Option.getOrNull)
  )
  return json({
    workspaceKey: Redacted.value(broker.workspaceKey),
    defaultWorkspaceId: workspaceId,
    memberships: workspaceId === null ? [] : [{ workspaceId, workspaceKey: Redacted.value(broker.workspaceKey), alias: "default" }]
  })
})

export const sessionRoutes = HttpRouter.empty.pipe(
  HttpRouter.post("/api/session/renew", renew),
  HttpRouter.get("/api/config", config)
)
