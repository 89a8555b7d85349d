import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import { agentByName, joinGeneral, newAgentRow, workspaceById } from "../directory.js"
import { EngineStore, now } from "../EngineStore.js"
import { badRequest, fail, unauthorized } from "../EngineError.js"
import { sha256Hex } from "../ids.js"
import type { AgentRow, NodeRow, WorkspaceRow } from "../rows.js"
import { parseObject } from "../rows.js"

// Node-attributed channel posts (provider-protocol.md §2, `ctx.sendMessage`): a node token may post
// to a channel as `from`. `from` must be an agent this node hosts, or a name the node already
// posted as; a new name becomes a `system` agent of this node (no token, never routed to). A node
// cannot speak as an agent hosted elsewhere or created over HTTP.

export const isNodeBearer = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
  const header = request.headers["authorization"]
  return typeof header === "string" && header.startsWith("Bearer nt_live_")
})

export const authenticateNode = Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const request = yield* HttpServerRequest.HttpServerRequest
  const token = String(request.headers["authorization"] ?? "").slice(7).trim()
  const [node] = yield* sql<NodeRow>`SELECT * FROM nodes WHERE token_hash = ${sha256Hex(token)}`
  const workspace = node === undefined ? undefined : yield* workspaceById(node.workspace_id)
  if (node === undefined || workspace === undefined) return yield* Effect.fail(unauthorized("Invalid node token"))
  return { node, workspace } satisfies { readonly node: NodeRow; readonly workspace: WorkspaceRow }
})

const attributedTo = (agent: AgentRow, node: NodeRow) =>
  (agent.location_type === "via_node" && agent.location_node_id === node.id) ||
  parseObject(agent.metadata)["attributed_node_id"] === node.id

/** The agent a node's post is attributed to (created as a `system` agent on first use). */
export const nodeSender = (node: NodeRow, from: string | null | undefined) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const name = from?.replace(/^@/, "").trim() ?? ""
    if (name === "") return yield* Effect.fail(badRequest("from is required with a node token"))
    const existing = yield* agentByName(node.workspace_id, name)
    if (existing !== undefined) {
      if (!attributedTo(existing, node)) {
        return yield* Effect.fail(fail(403, "node_attribution_forbidden", `Node "${node.name}" cannot post as "${name}"`))
      }
      return existing
    }
    const at = yield* now
    const agent = newAgentRow(at, {
      workspace_id: node.workspace_id,
      name,
      type: "system",
      status: "offline",
      token_hash: null,
      persona: null,
      metadata: JSON.stringify({ attributed_node_id: node.id }),
      capabilities: null,
      origin_node_id: node.id
    })
    yield* sql`INSERT INTO agents ${sql.insert(agent)}`
    yield* joinGeneral(node.workspace_id, agent.id)
    return agent
  })
