import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"

// Cumulative `delivery.ack`s (spec §4.6) of any number of agents on one node, in a fixed number of
// statements: the ack path of a busy node costs the same per flush whether 1 or 50 agents moved.
// The caller runs it in one transaction, under the engine lock.

/** (agent name, up_to_seq) pairs; a name given twice keeps its highest seq. */
export type AckList = ReadonlyArray<readonly [string, number]>

interface Move {
  readonly agentId: string
  readonly from: number
  readonly to: number
}

// SQLite allows 32,766 bound parameters per statement; rows of 3 parameters stay well under it.
const rowsPerStatement = 5_000

const chunks = <A>(items: ReadonlyArray<A>): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let index = 0; index < items.length; index += rowsPerStatement) out.push(items.slice(index, index + rowsPerStatement))
  return out
}

const messageIdGreater = (a: string, b: string | undefined): boolean => b === undefined || BigInt(a) > BigInt(b)

/** The agents of this node whose cursor moves, with the range each one acks. */
const movesOf = (sql: SqlClient.SqlClient, nodeId: string, acks: AckList) =>
  Effect.gen(function*() {
    const wanted = new Map<string, number>()
    for (const [name, upToSeq] of acks) wanted.set(name, Math.max(wanted.get(name) ?? 0, upToSeq))
    const agents = yield* sql<{ id: string; name: string; delivery_ack_seq: number }>`SELECT id, name, delivery_ack_seq
      FROM agents WHERE location_node_id = ${nodeId} AND location_type = 'via_node' AND ${sql.in("name", [...wanted.keys()])}`
    const moves: Array<Move> = []
    for (const agent of agents) {
      const upToSeq = wanted.get(agent.name)
      if (upToSeq !== undefined && upToSeq > agent.delivery_ack_seq) moves.push({ agentId: agent.id, from: agent.delivery_ack_seq, to: upToSeq })
    }
    return moves
  })

/** Read receipts for the acked rows, and each (channel, agent)'s `last_read_id` moved to its newest one. */
const markRead = (sql: SqlClient.SqlClient, acked: ReadonlyArray<{ agent_id: string; message_id: string }>, at: number) =>
  Effect.gen(function*() {
    for (const rows of chunks(acked)) {
      yield* sql`INSERT INTO read_receipts ${sql.insert(rows.map((row) => ({ message_id: row.message_id, agent_id: row.agent_id, read_at: at })))}
        ON CONFLICT DO NOTHING`
    }
    const channelOf = new Map<string, string>()
    for (const ids of chunks([...new Set(acked.map((row) => row.message_id))])) {
      const rows = yield* sql<{ id: string; channel_id: string }>`SELECT id, channel_id FROM messages WHERE ${sql.in("id", ids)}`
      for (const row of rows) channelOf.set(row.id, row.channel_id)
    }
    const newest = new Map<string, { channelId: string; agentId: string; messageId: string }>()
    for (const row of acked) {
      const channelId = channelOf.get(row.message_id)
      if (channelId === undefined) continue
      const key = `${channelId}\u0000${row.agent_id}`
      if (messageIdGreater(row.message_id, newest.get(key)?.messageId)) newest.set(key, { channelId, agentId: row.agent_id, messageId: row.message_id })
    }
    for (const rows of chunks([...newest.values()])) {
      yield* sql`UPDATE members SET last_read_id = v.column3
        FROM (VALUES ${sql.csv(rows.map((row) => sql`(${row.channelId}, ${row.agentId}, ${row.messageId})`))}) AS v
        WHERE members.channel_id = v.column1 AND members.agent_id = v.column2
          AND (members.last_read_id IS NULL OR CAST(members.last_read_id AS INTEGER) < CAST(v.column3 AS INTEGER))`
    }
  })

/**
 * Moves each agent's cursor to its `up_to_seq`: the open rows in (cursor, up_to_seq] become `acked`
 * and read, the cursor and `last_seen` move. Agents not on this node, and acks at or below the
 * cursor, change nothing. Six statements for any number of agents (more only past 5,000 rows).
 */
export const ackAgents = (sql: SqlClient.SqlClient, nodeId: string, acks: AckList, at: number): Effect.Effect<void, SqlError> =>
  Effect.gen(function*() {
    if (acks.length === 0) return
    const moves = yield* movesOf(sql, nodeId, acks)
    if (moves.length === 0) return
    // Rows at or below a cursor are all acked or dead-lettered already: only the ranges above them move.
    const ranges = moves.map((move) => sql`(agent_id = ${move.agentId} AND seq > ${move.from} AND seq <= ${move.to})`)
    const acked = yield* sql<{ agent_id: string; message_id: string }>`UPDATE deliveries SET status = 'acked', acked_at = ${at}
      WHERE status IN ('queued', 'delivered') AND ${sql.or(ranges)}
      RETURNING agent_id, message_id`
    if (acked.length > 0) yield* markRead(sql, acked, at)
    yield* sql`UPDATE agents SET delivery_ack_seq = MAX(agents.delivery_ack_seq, v.column2), last_seen = ${at}
      FROM (VALUES ${sql.csv(moves.map((move) => sql`(${move.agentId}, ${move.to})`))}) AS v
      WHERE agents.id = v.column1`
  })
