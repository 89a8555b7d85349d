import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Json, JsonObject } from "../wire/Json.js"
import type { WireEncodeError } from "../wire/index.js"
import { type AckList, ackAgents } from "./acks.js"
import { EngineConfig } from "./EngineConfig.js"
import { EngineStore, now } from "./EngineStore.js"
import { normKey } from "./ids.js"
import { NodeSockets } from "./NodeSockets.js"
import type { AgentRow, MessageRow } from "./rows.js"

export type WireMode = "wait" | "steer"

export interface Recipient {
  readonly agent: AgentRow
  readonly reason: "message" | "mention" | "thread-reply" | "dm"
}

/** A message to store, with its `deliver` payload data already built (spec §4.3). */
export interface NewMessage {
  readonly id: string
  readonly workspaceId: string
  readonly channelId: string
  readonly senderId: string
  readonly threadId: string | null
  readonly text: string
  readonly blocks: Json
  readonly data: Json
  readonly metadata: JsonObject
  readonly mode: WireMode
  readonly eventType: "message.created" | "thread.reply" | "dm.received" | "group_dm.received"
  readonly payloadData: JsonObject
  readonly createdAt: number
  readonly recipients: ReadonlyArray<Recipient>
}

export interface PostOutcome {
  readonly message: MessageRow
  /** Recipients refused by the depth cap. */
  readonly refused: ReadonlyArray<string>
}

export interface FanOutEvent {
  readonly type: "message.reacted" | "message.read" | "action.completed" | "action.failed" | "action.denied"
  /** The key in `evt_<type>_<key>_<agentId>`. */
  readonly key: string
  readonly msgId: string
  readonly data: JsonObject
}

type Effects<A> = Effect.Effect<A, SqlError | WireEncodeError>

/**
 * Turns new messages into durable per-recipient delivery rows and `deliver` frames; replays,
 * acknowledges and expires them; sends the seq-0 fan-out. Callers hold the engine lock.
 */
export class Dispatcher extends Context.Tag("relay-broker/engine/Dispatcher")<Dispatcher, {
  /** Stores the message and its delivery rows in one transaction, then pushes live frames. */
  readonly post: (message: NewMessage) => Effects<PostOutcome>
  /** Resends every unacked, unexpired row of the agents located on this node (agent name, then seq). */
  readonly replayNode: (nodeId: string) => Effects<number>
  /** Same, for one agent (after `agent.register`). */
  readonly replayAgent: (agentId: string) => Effects<number>
  /** Cumulative `delivery.ack` from a node (spec §4.6). */
  readonly ack: (nodeId: string, agentName: string, upToSeq: number) => Effects<void>
  /** Several cumulative acks (agent name, up_to_seq) in one transaction of a few statements (acks.ts). */
  readonly ackMany: (nodeId: string, acks: AckList) => Effects<void>
  /** Acks one row without moving the cursor (`POST /v1/messages/:id/read`, `/v1/deliveries/:id/ack`). */
  readonly ackOne: (deliveryId: string) => Effects<void>
  /** Dead-letters every expired open row. */
  readonly expire: Effects<number>
  /** Seq-0 `deliver` frames to those of `agentIds` that are hosted on a connected ws node. */
  readonly fanOut: (event: FanOutEvent, agentIds: ReadonlyArray<string>) => Effects<number>
}>() {}

interface PendingRow {
  readonly id: string
  readonly agent_id: string
  readonly agent_name: string
  readonly message_id: string
  readonly seq: number
  readonly mode: string
  readonly payload: string
  readonly location_node_id: string | null
}

const wsKinds = new Set(["ws", "fleet_ws", "direct_ws"])

export const make = Effect.gen(function*() {
  const { sql, transaction } = yield* EngineStore
  const sockets = yield* NodeSockets
  const config = yield* EngineConfig

  /** Writes each row to its node's socket, in order; marks the written ones `delivered`. */
  const push = (rows: ReadonlyArray<PendingRow>) =>
    Effect.gen(function*() {
      if (rows.length === 0) return 0
      const sent: Array<string> = []
      for (const row of rows) {
        if (row.location_node_id === null) continue
        const written = sockets.sendDeliver(row.location_node_id, {
          v: 1,
          type: "deliver",
          agent: row.agent_name,
          agent_id: row.agent_id,
          delivery_id: row.id,
          msg_id: row.message_id,
          seq: row.seq,
          mode: row.mode === "steer" ? "steer" : "wait"
        }, row.payload)
        if (written) sent.push(row.id)
      }
      if (sent.length > 0) {
        const at = yield* now
        yield* sql`UPDATE deliveries SET status = 'delivered', delivered_at = ${at}
          WHERE status = 'queued' AND ${sql.in("id", sent)}`
      }
      return sent.length
    })

  const expire = Effect.gen(function*() {
    const at = yield* now
    const expired = yield* sql<{ id: string }>`UPDATE deliveries SET status = 'dead_lettered', error = 'delivery TTL expired'
      WHERE status IN ('queued', 'delivered') AND expires_at <= ${at} RETURNING id`
    return expired.length
  })

  const post = Effect.fn("Dispatcher.post")(function*(message: NewMessage) {
      const refused: Array<string> = []
      const payload = JSON.stringify({ type: message.eventType, data: message.payloadData })
      const { row, pending } = yield* transaction(Effect.gen(function*() {
        const row: MessageRow = {
          id: message.id,
          workspace_id: message.workspaceId,
          channel_id: message.channelId,
          agent_id: message.senderId,
          thread_id: message.threadId,
          text: message.text,
          blocks: message.blocks === null ? null : JSON.stringify(message.blocks),
          data: message.data === null ? null : JSON.stringify(message.data),
          metadata: JSON.stringify(message.metadata),
          mode: message.mode,
          event_type: message.eventType,
          payload,
          created_at: message.createdAt
        }
        yield* sql`INSERT INTO messages ${sql.insert(row)}`
        const pending: Array<PendingRow> = []
        if (message.recipients.length === 0) return { row, pending }
        // Three statements for any number of recipients: depth, seq allocation, rows.
        const depths = yield* sql<{ agent_id: string; n: number }>`SELECT agent_id, COUNT(*) AS n FROM deliveries INDEXED BY deliveries_open
          WHERE ${sql.in("agent_id", message.recipients.map((r) => r.agent.id))}
            AND status IN ('queued', 'delivered') AND expires_at > ${message.createdAt}
          GROUP BY agent_id`
        const depthOf = new Map(depths.map((d) => [d.agent_id, d.n]))
        const allowed = message.recipients.filter((r) => {
          if ((depthOf.get(r.agent.id) ?? 0) < config.depthCap) return true
          refused.push(r.agent.id)
          return false
        })
        if (allowed.length === 0) return { row, pending }
        const allocated = yield* sql<{ id: string; name: string; last_seq: number; location_type: string; location_node_id: string | null }>`
          UPDATE agents SET last_seq = last_seq + 1 WHERE ${sql.in("id", allowed.map((r) => r.agent.id))}
          RETURNING id, name, last_seq, location_type, location_node_id`
        const byId = new Map(allocated.map((a) => [a.id, a]))
        const expiresAt = message.createdAt + config.deliveryTtlMs
        const rows: Array<Record<string, string | number | null>> = []
        for (const { agent, reason } of allowed) {
          const next = byId.get(agent.id)
          if (next === undefined) continue
          const id = `del_${message.id}_${agent.id}`
          rows.push({
            id,
            workspace_id: message.workspaceId,
            message_id: message.id,
            agent_id: agent.id,
            seq: next.last_seq,
            status: "queued",
            mode: message.mode,
            reason,
            location_type: next.location_type,
            location_node_id: next.location_node_id,
            expires_at: expiresAt,
            created_at: message.createdAt
          })
          if (next.location_type === "via_node" && next.location_node_id !== null) {
            pending.push({
              id,
              agent_id: agent.id,
              agent_name: next.name,
              message_id: message.id,
              seq: next.last_seq,
              mode: message.mode,
              payload,
              location_node_id: next.location_node_id
            })
          }
        }
        if (rows.length > 0) yield* sql`INSERT INTO deliveries ${sql.insert(rows)}`
        return { row, pending }
      }))
      yield* push(pending)
      return { message: row, refused }
    })

  const pendingFor = (where: "node" | "agent", id: string) =>
    Effect.gen(function*() {
      yield* expire
      const at = yield* now
      const filter = where === "node"
        ? sql`a.location_type = 'via_node' AND a.location_node_id = ${id}`
        : sql`a.location_type = 'via_node' AND a.id = ${id}`
      return yield* sql<PendingRow>`SELECT d.id, d.agent_id, a.name AS agent_name, d.message_id, d.seq, d.mode,
          m.payload, a.location_node_id
        FROM deliveries d JOIN agents a ON a.id = d.agent_id JOIN messages m ON m.id = d.message_id
        WHERE ${filter} AND d.status IN ('queued', 'delivered') AND d.seq > a.delivery_ack_seq AND d.expires_at > ${at}
        ORDER BY a.name, d.seq`
    })

  const replayNode = (nodeId: string) => Effect.flatMap(pendingFor("node", nodeId), push)
  const replayAgent = (agentId: string) => Effect.flatMap(pendingFor("agent", agentId), push)

  const ack = (nodeId: string, agentName: string, upToSeq: number) => ackMany(nodeId, [[agentName, upToSeq]])

  const ackMany = (nodeId: string, acks: AckList) =>
    acks.length === 0 ? Effect.void : transaction(Effect.flatMap(now, (at) => ackAgents(sql, nodeId, acks, at)))

  const ackOne = Effect.fn("Dispatcher.ackOne")(function*(deliveryId: string) {
      const at = yield* now
      yield* sql`UPDATE deliveries SET status = 'acked', acked_at = ${at}
        WHERE id = ${deliveryId} AND status NOT IN ('acked', 'dead_lettered')`
    })

  const fanOut = Effect.fn("Dispatcher.fanOut")(function*(event: FanOutEvent, agentIds: ReadonlyArray<string>) {
      if (agentIds.length === 0) return 0
      // Hosted = located on a ws node through an active binding to that same node (spec §4.4).
      const hosted = yield* sql<{ id: string; name: string; node_id: string; kind: string }>`
        SELECT a.id, a.name, n.id AS node_id, n.kind FROM agents a
        JOIN nodes n ON n.id = a.location_node_id
        JOIN bindings b ON b.agent_id = a.id AND b.node_id = n.id AND b.status = 'active'
        WHERE a.location_type = 'via_node' AND ${sql.in("a.id", agentIds)}`
      const payloadText = JSON.stringify({ type: event.type, data: event.data })
      let sent = 0
      for (const agent of hosted) {
        if (!wsKinds.has(agent.kind)) continue
        const written = sockets.sendDeliver(agent.node_id, {
          v: 1,
          type: "deliver",
          agent: agent.name,
          agent_id: agent.id,
          delivery_id: `evt_${normKey(event.type)}_${normKey(event.key)}_${agent.id}`,
          msg_id: event.msgId,
          seq: 0,
          mode: "wait"
        }, payloadText)
        if (written) sent++
      }
      return sent
    })

  return Dispatcher.of({ post, replayNode, replayAgent, ack, ackMany, ackOne, expire, fanOut })
})

export const layer: Layer.Layer<Dispatcher, never, EngineStore | NodeSockets | EngineConfig> = Layer.effect(Dispatcher, make)
