import * as Effect from "effect/Effect"
import type { Json, JsonObject } from "../wire/Json.js"
import { type InvocationRow, stringField } from "./actionRows.js"
import { Dispatcher } from "./Dispatcher.js"
import { now } from "./EngineStore.js"
import type { InvocationDispatch } from "./invocationDispatch.js"
import { type AgentRow, iso, parseJson, parseStrings } from "./rows.js"

// How an invocation ends (terminal state, release side effects, the caller's frame) or is sent
// again after a timeout, a lost node or a refusal. Callers hold the lock.

export const make = (dispatch: InvocationDispatch) => Effect.gen(function*() {
  const dispatcher = yield* Dispatcher
  const { sql, agentById, reload, reserve, releaseReservation, backoff, dispatchTo, claim } = dispatch

  const applyRelease = (invocation: InvocationRow) =>
    Effect.gen(function*() {
      const input = parseJson(invocation.input) as JsonObject
      const name = stringField(input, "name")
      if (name === undefined || invocation.dispatched_node_id === null) return
      const [agent] = yield* sql<AgentRow>`SELECT * FROM agents WHERE workspace_id = ${invocation.workspace_id} AND name = ${name}`
      if (agent === undefined) return
      const deactivated = yield* sql<{ id: string }>`UPDATE bindings SET status = 'inactive', updated_at = ${yield* now}
        WHERE agent_id = ${agent.id} AND node_id = ${invocation.dispatched_node_id} AND status = 'active' RETURNING id`
      if (deactivated.length > 0) {
        yield* sql`UPDATE nodes SET active_agents = MAX(active_agents - 1, 0) WHERE id = ${invocation.dispatched_node_id}`
      }
      if (input["delete_agent"] === true) {
        yield* sql`DELETE FROM members WHERE agent_id = ${agent.id}`
        yield* sql`DELETE FROM bindings WHERE agent_id = ${agent.id}`
        yield* sql`DELETE FROM agent_events WHERE agent_id = ${agent.id}`
        yield* sql`DELETE FROM agents WHERE id = ${agent.id}`
        return
      }
      const metadata = { ...(parseJson(agent.metadata) as JsonObject) }
      delete metadata["spawn"]
      delete metadata["cli"]
      metadata["release"] = { reason: stringField(input, "reason") ?? null, released_at: iso(yield* now) }
      yield* sql`UPDATE agents SET status = 'offline', location_type = 'self_connected', location_node_id = NULL,
        metadata = ${JSON.stringify(metadata)} WHERE id = ${agent.id}`
    })

  /** Terminal state, capacity released, release side effects, then the caller's seq-0 frame (spec §5.3, §5.5). */
  const finish = (invocation: InvocationRow, result: { readonly output?: Json; readonly error?: string }) =>
    Effect.gen(function*() {
      const at = yield* now
      const status = result.error === undefined ? "completed" : "failed"
      const output = result.error === undefined ? (result.output ?? null) : null
      yield* sql`UPDATE invocations SET status = ${status}, output = ${JSON.stringify(output)}, error = ${result.error ?? null},
        completed_at = ${at}, retry_after_at = NULL, queued_node_id = NULL WHERE id = ${invocation.id}`
      yield* releaseReservation(invocation)
      if (invocation.kind === "release" && status === "completed") yield* applyRelease(invocation)
      if (invocation.caller_agent_id !== null) {
        yield* dispatcher.fanOut({
          type: status === "completed" ? "action.completed" : "action.failed",
          key: invocation.id,
          msgId: invocation.id,
          data: { invocation_id: invocation.id, action_name: invocation.action_name, status, output, error: result.error ?? null }
        }, [invocation.caller_agent_id])
      }
      return yield* reload(invocation)
    })

  /**
   * Sends the same invocation id again: agent-hosted to its handler's node, release and node actions
   * to their node, spawns re-placed (excluding attempted nodes when asked) unless they had a target.
   */
  const redispatch = (invocation: InvocationRow, excludeAttempted: boolean) =>
    Effect.gen(function*() {
      yield* releaseReservation(invocation)
      const current = yield* reload(invocation)
      switch (current.kind) {
        case "agent": {
          const handler = current.handler_agent_id === null ? undefined : yield* agentById(current.handler_agent_id)
          if (handler?.location_type !== "via_node" || handler.location_node_id === null) return yield* backoff(current)
          return yield* dispatchTo(current, handler.location_node_id)
        }
        case "release":
        case "node":
          return current.handler_node_id === null ? yield* backoff(current) : yield* dispatchTo(current, current.handler_node_id)
        case "spawn": {
          if (current.target_node_id !== null) {
            if (yield* reserve(current.target_node_id)) {
              yield* sql`UPDATE invocations SET reserved_node_id = ${current.target_node_id} WHERE id = ${current.id}`
            }
            return yield* dispatchTo(yield* reload(current), current.target_node_id)
          }
          const exclude = new Set(excludeAttempted ? parseStrings(current.attempted_node_ids) : [])
          const node = yield* claim(current.workspace_id, current.frame_action, exclude)
          if (node === undefined) return yield* backoff(current)
          yield* sql`UPDATE invocations SET reserved_node_id = ${node.id}, handler_node_id = ${node.id} WHERE id = ${current.id}`
          return yield* dispatchTo(yield* reload(current), node.id)
        }
      }
    })

  return { finish, redispatch }
})
