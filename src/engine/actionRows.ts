import type { SqlError } from "@effect/sql/SqlError"
import type * as Effect from "effect/Effect"
import type { JsonObject } from "../wire/Json.js"
import type { WireEncodeError } from "../wire/index.js"
import { type AgentRow, iso, isoOrNull, parseJson, parseStrings } from "./rows.js"

// Action and invocation rows, their public JSON forms, and the dispatch bounds (spec §5).

export type ActionRow = {
  readonly id: string
  readonly workspace_id: string
  readonly name: string
  readonly description: string | null
  readonly handler_agent_id: string | null
  readonly handler_node_id: string | null
  readonly input_schema: string
  readonly output_schema: string
  readonly available_to: string | null
  readonly is_active: number
  readonly created_at: number
  /** The provider of `handler_node_id` that advertised it (relaycast 6); null for v5-era rows. */
  readonly handler_provider?: string | null
  /** 1: invocations queue while the provider is down; 0: refused with 503 (non-default providers). */
  readonly queue?: number
}

export type InvocationKind = "spawn" | "release" | "node" | "agent"

export type InvocationRow = {
  readonly id: string
  readonly workspace_id: string
  readonly action_name: string
  /** The `action` of the frame: the capability for spawns (`spawn:claude`), else the action name. */
  readonly frame_action: string
  readonly kind: InvocationKind
  readonly caller_id: string
  readonly caller_name: string
  readonly caller_agent_id: string | null
  readonly input: string
  readonly status: "pending" | "dispatched" | "completed" | "failed"
  readonly handler_agent_id: string | null
  readonly handler_node_id: string | null
  /** Spawns with `target_node` / `node` / `target`: never re-placed elsewhere. */
  readonly target_node_id: string | null
  readonly dispatched_node_id: string | null
  /** The provider of that node whose socket got the frame. */
  readonly dispatched_provider?: string | null
  /** Pending and waiting in this node's queue for its next attach / register / heartbeat. */
  readonly queued_node_id: string | null
  readonly attempted_node_ids: string
  readonly dispatch_attempts: number
  readonly dispatched_at: number | null
  readonly retry_after_at: number | null
  readonly reserved_node_id: string | null
  readonly output: string | null
  readonly error: string | null
  readonly created_at: number
  readonly completed_at: number | null
}

export type Caller =
  | { readonly _tag: "agent"; readonly agent: AgentRow }
  | { readonly _tag: "workspace"; readonly workspaceId: string; readonly workspaceName: string }


export const dispatchTimeoutMs = 30_000
export const queueCap = 100
export const retryBaseMs = 5_000
export const retryMaxMs = 60_000

export type Effects<A> = Effect.Effect<A, SqlError | WireEncodeError>

export const invocationJson = (invocation: InvocationRow) => ({
  invocation_id: invocation.id,
  action_name: invocation.action_name,
  handler_agent_id: invocation.handler_agent_id,
  handler_node_id: invocation.handler_node_id,
  dispatched_node_id: invocation.dispatched_node_id,
  input: parseJson(invocation.input),
  status: invocation.status,
  created_at: iso(invocation.created_at)
})

export const invocationDetailJson = (invocation: InvocationRow) => ({
  invocation_id: invocation.id,
  action_name: invocation.action_name,
  caller_id: invocation.caller_id,
  caller_name: invocation.caller_name,
  input: parseJson(invocation.input),
  output: parseJson(invocation.output),
  status: invocation.status,
  error: invocation.error,
  duration_ms: invocation.completed_at === null ? null : invocation.completed_at - invocation.created_at,
  dispatched_node_id: invocation.dispatched_node_id,
  dispatched_at: isoOrNull(invocation.dispatched_at),
  created_at: iso(invocation.created_at),
  completed_at: isoOrNull(invocation.completed_at)
})

export const actionJson = (action: ActionRow) => ({
  id: action.id,
  name: action.name,
  description: action.description,
  handler_agent_id: action.handler_agent_id,
  handler_node_id: action.handler_node_id,
  input_schema: parseJson(action.input_schema),
  output_schema: parseJson(action.output_schema),
  available_to: action.available_to === null ? null : parseStrings(action.available_to),
  is_active: action.is_active === 1,
  created_at: iso(action.created_at)
})

export const stringField = (input: JsonObject, key: string): string | undefined => {
  const value = input[key]
  return typeof value === "string" && value !== "" ? value : undefined
}
