import { Context, type Effect, type Redacted } from "effect"
import type { MintFailed } from "./errors.js"

// CONTRACT. The live layer is to be written in this file (issue: node session).

export interface NodeIdentity {
  readonly nodeId: string
  readonly nodeName: string
  /** The workspace id the node belongs to (as the engine reports it for the workspace key). */
  readonly workspaceId: string
}

export class TokenStore extends Context.Tag("relay-broker/TokenStore")<TokenStore, {
  readonly identity: Effect.Effect<NodeIdentity, MintFailed>
  /** The node token: `RELAY_NODE_TOKEN`, else the scoped cache, else minted (and cached, 0600, atomically). */
  readonly token: Effect.Effect<Redacted.Redacted<string>, MintFailed>
  /** Drops the cache, mints again and persists. Called after an `Unauthorized`. */
  readonly remint: Effect.Effect<Redacted.Redacted<string>, MintFailed>
}>() {}
