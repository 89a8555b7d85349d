import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import { agentByName, channelByName } from "../directory.js"
import { EngineStore } from "../EngineStore.js"
import { badRequest, notFound } from "../EngineError.js"
import { messageById } from "../messages.js"
import { iso } from "../rows.js"
import { authenticate, handle, intQuery, ok, param, query } from "./support.js"

// Reading what was said: `GET /v1/search` and `GET /v1/messages/:id/readers`, with relaycast's shapes
// (routes/search.ts, engine/search.ts, engine/receipt.ts).

/**
 * The query's terms as relaycast normalises them (lower case; anything but letters, digits, spaces
 * and quotes dropped); a quoted run is one phrase. Every term must occur in the text.
 */
export const searchTerms = (q: string): ReadonlyArray<string> => {
  const cleaned = q.toLowerCase().trim().replace(/[^\p{L}\p{N}\s"]/gu, " ")
  const terms: Array<string> = []
  for (const match of cleaned.matchAll(/"([^"]*)"|(\S+)/g)) {
    const term = (match[1] ?? match[2] ?? "").replace(/"/g, "").replace(/\s+/g, " ").trim()
    if (term !== "") terms.push(term)
  }
  return terms
}

const occurrences = (text: string, term: string): number => {
  let count = 0
  for (let at = text.indexOf(term); at >= 0; at = text.indexOf(term, at + term.length)) count++
  return count
}

/** Negative like FTS5's bm25 (more negative = more relevant): the term hits, weighted by text length. */
export const relevance = (text: string, terms: ReadonlyArray<string>): number | undefined => {
  const lower = text.toLowerCase()
  let hits = 0
  for (const term of terms) {
    const found = occurrences(lower, term)
    if (found === 0) return undefined
    hits += found
  }
  return -hits / Math.log2(2 + lower.length / 64)
}

const likePattern = (term: string) => `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

type SearchRow = {
  readonly id: string
  readonly channel_id: string
  readonly channel_name: string
  readonly conversation_id: string | null
  readonly agent_id: string
  readonly agent_name: string | null
  readonly text: string
  readonly created_at: number
}

const scanLimit = 2000

/**
 * `GET /v1/search?q=&channel=&from=&limit=&before=&after=` (workspace key or agent token). An agent
 * sees public channels and the DMs it takes part in; a channel or sender that does not exist yields
 * no results.
 */
const search = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const caller = yield* authenticate("any")
  const params = yield* query
  const terms = searchTerms(params.get("q") ?? "")
  if ((params.get("q") ?? "").trim() === "") return yield* Effect.fail(badRequest("q (search query) is required"))
  if (terms.length === 0) return ok([])
  const limit = intQuery(params, "limit", 20, 100)
  const channelName = params.get("channel")?.replace(/^#/, "")
  const channel = channelName === undefined || channelName === "" ? undefined : yield* channelByName(caller.workspace.id, channelName)
  if (channelName !== undefined && channelName !== "" && channel === undefined) return ok([])
  const fromName = params.get("from")?.replace(/^@/, "")
  const sender = fromName === undefined || fromName === "" ? undefined : yield* agentByName(caller.workspace.id, fromName)
  if (fromName !== undefined && fromName !== "" && sender === undefined) return ok([])
  const before = params.get("before")
  const after = params.get("after")
  const viewer = caller.agent
  const rows = yield* sql<SearchRow>`SELECT m.id, m.channel_id, c.name AS channel_name, cv.id AS conversation_id, m.agent_id,
      a.name AS agent_name, m.text, m.created_at
    FROM messages m JOIN channels c ON c.id = m.channel_id
    LEFT JOIN conversations cv ON cv.channel_id = c.id LEFT JOIN agents a ON a.id = m.agent_id
    WHERE m.workspace_id = ${caller.workspace.id}
      AND ${sql.and(terms.map((term) => sql`m.text LIKE ${likePattern(term)} ESCAPE '\\'`))}
      ${channel === undefined ? sql`` : sql`AND m.channel_id = ${channel.id}`}
      ${sender === undefined ? sql`` : sql`AND m.agent_id = ${sender.id}`}
      ${before === null ? sql`` : sql`AND CAST(m.id AS INTEGER) < CAST(${before} AS INTEGER)`}
      ${after === null ? sql`` : sql`AND CAST(m.id AS INTEGER) > CAST(${after} AS INTEGER)`}
      ${viewer === undefined ? sql`` : sql`AND (c.channel_type = 0
        OR EXISTS (SELECT 1 FROM members mb WHERE mb.channel_id = c.id AND mb.agent_id = ${viewer.id}))`}
    ORDER BY CAST(m.id AS INTEGER) DESC LIMIT ${scanLimit}`
  const scored = rows.flatMap((row) => {
    const score = relevance(row.text, terms)
    return score === undefined ? [] : [{ row, score }]
  })
  scored.sort((a, b) => a.score - b.score || (BigInt(b.row.id) > BigInt(a.row.id) ? 1 : -1))
  return ok(scored.slice(0, limit).map(({ row, score }) => ({
    id: row.id,
    channel_id: row.channel_id,
    channel_name: row.channel_name,
    conversation_id: row.conversation_id,
    agent_id: row.agent_id,
    agent_name: row.agent_name ?? "unknown",
    text: row.text,
    created_at: iso(row.created_at),
    relevance_score: score
  })))
}))

/** `GET /v1/messages/:id/readers` → `[{agent_id, agent_name, read_at}]`, oldest read first. */
const readers = handle(Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const caller = yield* authenticate("any")
  const message = yield* messageById(caller.workspace.id, yield* param("id"))
  if (message === undefined) return yield* Effect.fail(notFound("message_not_found", "Message not found"))
  const rows = yield* sql<{ agent_id: string; agent_name: string; read_at: number }>`SELECT r.agent_id, a.name AS agent_name, r.read_at
    FROM read_receipts r JOIN agents a ON a.id = r.agent_id WHERE r.message_id = ${message.id} ORDER BY r.read_at, a.name`
  return ok(rows.map((row) => ({ agent_id: row.agent_id, agent_name: row.agent_name, read_at: iso(row.read_at) })))
}))

export const routes = HttpRouter.empty.pipe(
  HttpRouter.get("/v1/search", search),
  HttpRouter.get("/v1/messages/:id/readers", readers)
)
