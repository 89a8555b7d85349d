import * as Effect from "effect/Effect"
import { capabilityKind, type FleetCapability } from "../wire/frames.js"
import { EngineStore, now } from "./EngineStore.js"
import { snowflake } from "./ids.js"
import { defaultProvider } from "./NodeSockets.js"
import type { NodeRow } from "./rows.js"

// `ensureCapabilityActions` of the provider era (spec §5.1, provider-protocol.md §1): a provider's
// `action` capabilities become workspace actions handled by its node and provider; `capacity` ones
// (`spawn:*`, `release`, `relay:*` with kind capacity) only feed placement. Action names stay unique
// per workspace: a name another node, provider or agent already handles is refused (the reply says
// so), except for a v5 broker (`default`), which keeps v5's silent "first node wins".

export interface ActionRowFields {
  readonly id: string
  readonly name: string
  readonly handler_agent_id: string | null
  readonly handler_node_id: string | null
  readonly handler_provider: string | null
}

/** Materialises the actions; returns the capability names refused, with the reason. */
export const materializeActions = (node: NodeRow, provider: string, capabilities: ReadonlyArray<FleetCapability>) =>
  Effect.gen(function*() {
    const { sql } = yield* EngineStore
    const at = yield* now
    const refused = new Map<string, string>()
    const wanted = capabilities.filter((capability) => capabilityKind(capability) === "action")
    const keep = wanted.map((capability) => capability.name)
    const mine = sql`handler_node_id = ${node.id} AND (handler_provider = ${provider}
      ${provider === defaultProvider ? sql`OR handler_provider IS NULL` : sql``})`
    yield* sql`DELETE FROM actions WHERE workspace_id = ${node.workspace_id} AND ${mine}
      ${keep.length === 0 ? sql`` : sql`AND name NOT IN ${sql.in(keep)}`}`
    for (const capability of wanted) {
      const [existing] = yield* sql<ActionRowFields>`SELECT id, name, handler_agent_id, handler_node_id, handler_provider FROM actions
        WHERE workspace_id = ${node.workspace_id} AND name = ${capability.name}`
      const queue = capability.queue === true ? 1 : 0
      if (existing === undefined) {
        yield* sql`INSERT INTO actions ${sql.insert({
          id: `act_${snowflake()}`,
          workspace_id: node.workspace_id,
          name: capability.name,
          description: `Node handler ${capability.name}`,
          handler_agent_id: null,
          handler_node_id: node.id,
          handler_provider: provider,
          queue,
          input_schema: "{}",
          output_schema: "{}",
          available_to: null,
          is_active: 1,
          created_at: at
        })}`
        continue
      }
      const free = existing.handler_agent_id === null &&
        (existing.handler_node_id === null || existing.handler_node_id === node.id) &&
        (existing.handler_provider === null || existing.handler_provider === provider || existing.handler_node_id === null)
      if (free) {
        yield* sql`UPDATE actions SET handler_node_id = ${node.id}, handler_provider = ${provider}, queue = ${queue}, is_active = 1
          WHERE id = ${existing.id}`
      } else if (provider !== defaultProvider) {
        refused.set(capability.name, existing.handler_agent_id !== null
          ? `action "${capability.name}" is handled by an agent`
          : existing.handler_node_id === node.id
          ? `action "${capability.name}" is handled by provider "${existing.handler_provider}" of this node`
          : `action "${capability.name}" is handled by another node`)
      }
    }
    return refused
  })
