import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import type { InventoryAgent } from "../wire/frames.js"

/**
 * The agents bound to this node, as the engine sees them (`inventory.sync` entries).
 * AgentRegistry writes it; NodeControl reads it for `inventory.sync` and `active_agents`.
 * It exists so that neither of those two services has to depend on the other.
 */
export class AgentRoster extends Context.Tag("relay-broker/AgentRoster")<AgentRoster, {
  readonly put: (agent: InventoryAgent) => Effect.Effect<void>
  readonly remove: (name: string) => Effect.Effect<void>
  readonly list: Effect.Effect<ReadonlyArray<InventoryAgent>>
}>() {}

export const make = Effect.gen(function*() {
  const agents = yield* Ref.make<ReadonlyMap<string, InventoryAgent>>(new Map())
  return AgentRoster.of({
    put: (agent) => Ref.update(agents, (current) => new Map(current).set(agent.name, agent)),
    remove: (name) =>
      Ref.update(agents, (current) => {
        const next = new Map(current)
        next.delete(name)
        return next
      }),
    list: Effect.map(Ref.get(agents), (current) => [...current.values()])
  })
})

export const layer: Layer.Layer<AgentRoster> = Layer.effect(AgentRoster, make)
