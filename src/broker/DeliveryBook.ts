import { Context, type Effect } from "effect"

// CONTRACT. The pure core, the persistence and the live layer are to be written in this file
// (issue: deliveries). Other members may be added; `forget` must stay.

export class DeliveryBook extends Context.Tag("relay-broker/DeliveryBook")<DeliveryBook, {
  /** Drops an agent's cursor and seen set (release, exit). */
  readonly forget: (agent: { readonly name: string; readonly agentId: string }) => Effect.Effect<void>
}>() {}
