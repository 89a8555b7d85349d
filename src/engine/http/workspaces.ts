import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createChannel, workspaceByKey } from "../directory.js"
import { EngineStore, now } from "../EngineStore.js"
import { notFound } from "../EngineError.js"
import { newWorkspaceKey, sha256Hex, snowflake } from "../ids.js"
import { iso, parseObject, type WorkspaceRow } from "../rows.js"
import { authenticate, body, created, handle, ok, param, Required } from "./support.js"

const CreateWorkspace = Schema.Struct({ name: Required })

/** `POST /v1/workspaces` (no auth): a new workspace and `#general`; an existing name+key pair answers 200. */
const createWorkspace = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const input = yield* body(CreateWorkspace)
  const request = yield* HttpServerRequest.HttpServerRequest
  const header = request.headers["authorization"]
  const presented = typeof header === "string" && header.startsWith("Bearer rk_") ? header.slice(7).trim() : undefined
  if (presented !== undefined) {
    const existing = yield* workspaceByKey(presented)
    if (existing !== undefined && existing.name === input.name) {
      return ok({ workspace_id: existing.id, api_key: presented, created_at: iso(existing.created_at) })
    }
  }
  const apiKey = newWorkspaceKey()
  const workspace: WorkspaceRow = {
    id: snowflake(),
    name: input.name,
    key_hash: sha256Hex(apiKey),
    plan: "free",
    system_prompt: null,
    metadata: "{}",
    created_at: yield* now
  }
  yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`INSERT INTO workspaces ${sql.insert(workspace)}`
    yield* createChannel(workspace.id, "general", "General discussion", "{}", null)
  }))
  return created({ workspace_id: workspace.id, api_key: apiKey, created_at: iso(workspace.created_at) })
}))

const getWorkspace = handle(Effect.gen(function*() {
  const { workspace } = yield* authenticate("workspace")
  return ok({
    id: workspace.id,
    name: workspace.name,
    plan: workspace.plan,
    system_prompt: workspace.system_prompt,
    created_at: iso(workspace.created_at),
    metadata: parseObject(workspace.metadata)
  })
}))

const workspaceByName = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const name = yield* param("name")
  const [workspace] = yield* sql<WorkspaceRow>`SELECT * FROM workspaces WHERE name = ${name} ORDER BY created_at LIMIT 1`
  if (workspace === undefined) return yield* Effect.fail(notFound("workspace_not_found", `Workspace "${name}" not found`))
  return ok({ id: workspace.id, name: workspace.name, created_at: iso(workspace.created_at) })
}))

export const routes = HttpRouter.empty.pipe(
  HttpRouter.post("/v1/workspaces", createWorkspace),
  HttpRouter.get("/v1/workspace", getWorkspace),
  HttpRouter.get("/v1/workspaces/by-name/:name", workspaceByName)
)
