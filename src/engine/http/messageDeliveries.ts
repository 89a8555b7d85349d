import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import { EngineStore } from "../EngineStore.js"
import { notFound } from "../EngineError.js"
import { isoOrNull } from "../rows.js"
import { authenticate, handle, ok, param } from "./support.js"

// `GET /v1/messages/:id/deliveries` (workspace key or agent token of the workspace): one row per
// recipient of a message, with where the engine routed it, its delivery status and the read receipt.
// Not a relaycast route: relay-broker's `message` command and the truthful send result read it
// (a hosted engine answers 404 and the broker says so).

interface DeliveryRow {
  readonly id: string
  readonly agent_id: string
  readonly agent_name: string | null
  readonly agent_status: string | null
  readonly seq: number
  readonly status: string
  readonly mode: string
  readonly reason: string
  readonly location_type: string | null
  readonly location_node_id: string | null
  readonly node_name: string | null
  readonly created_at: number
  readonly delivered_at: number | null
  readonly acked_at: number | null
  readonly read_at: number | null
  readonly error: string | null
}

const deliveries = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const { workspace } = yield* authenticate("any")
  const id = yield* param("id")
  const [message] = yield* sql<{ id: string }>`SELECT id FROM messages WHERE id = ${id} AND workspace_id = ${workspace.id}`
  if (message === undefined) return yield* Effect.fail(notFound("message_not_found", `Message "${id}" not found`))
  const rows = yield* sql<DeliveryRow>`SELECT d.id, d.agent_id, a.name AS agent_name, a.status AS agent_status, d.seq,
      d.status, d.mode, d.reason, d.location_type, d.location_node_id, n.name AS node_name, d.created_at,
      d.delivered_at, d.acked_at, r.read_at, d.error
    FROM deliveries d
    LEFT JOIN agents a ON a.id = d.agent_id
    LEFT JOIN nodes n ON n.id = d.location_node_id
    LEFT JOIN read_receipts r ON r.message_id = d.message_id AND r.agent_id = d.agent_id
    WHERE d.message_id = ${id} ORDER BY a.name`
  return ok(rows.map((row) => ({
    delivery_id: row.id,
    agent_id: row.agent_id,
    agent_name: row.agent_name,
    agent_status: row.agent_status,
    seq: row.seq,
    status: row.status,
    mode: row.mode,
    reason: row.reason,
    location_type: row.location_type,
    node_id: row.location_node_id,
    node_name: row.node_name,
    created_at: isoOrNull(row.created_at),
    delivered_at: isoOrNull(row.delivered_at),
    acked_at: isoOrNull(row.acked_at),
    read_at: isoOrNull(row.read_at),
    error: row.error
  })))
}))

export const routes = HttpRouter.empty.pipe(HttpRouter.get("/v1/messages/:id/deliveries", deliveries))
