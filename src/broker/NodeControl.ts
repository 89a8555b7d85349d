import { Context, type Effect, type Stream } from "effect"
import type { Json } from "../wire/Json.js"
import type {
  ActionInvoke,
  AgentRegisterReplyData,
  Deliver,
  NodeToServer,
  ServerToNode
} from "../wire/frames.js"
import type { NodeRequestFailed } from "./errors.js"

// CONTRACT. The live layer is to be written in this file (issue: node session).

export interface NodeStatus {
  readonly connected: boolean
  /** Epoch ms of the last change of `connected`, or null before the first attempt. */
  readonly since: number | null
  readonly lastError: string | null
  readonly reconnects: number
  readonly remints: number
  readonly tokenPresent: boolean
  readonly nodeId: string | null
  readonly nodeName: string
}

export interface AgentRegistration {
  readonly name: string
  readonly invocation_id?: string
  readonly session_ref?: string
}

export class NodeControl extends Context.Tag("relay-broker/NodeControl")<NodeControl, {
  /** A frame that gets a `reply` (`agent.register`, `inventory.sync`): assigns an `id`, resolves with `reply.data`. */
  readonly request: (frame: NodeToServer) => Effect.Effect<Json, NodeRequestFailed>
  /** `agent.register` with its reply data decoded; a late success after a timeout is compensated with `agent.deregister`. */
  readonly registerAgent: (agent: AgentRegistration) => Effect.Effect<AgentRegisterReplyData, NodeRequestFailed>
  /** Fire and forget; queued (bounded) while disconnected, flushed in order after the next register. */
  readonly send: (frame: NodeToServer) => Effect.Effect<void>
  /** `inventory.sync` of the roster plus an immediate heartbeat: call after a local change. */
  readonly announce: Effect.Effect<void>
  /** Every `deliver` frame, in arrival order. One consumer (Deliveries). */
  readonly deliveries: Stream.Stream<Deliver>
  /** Every `action.invoke` frame, in arrival order. One consumer (Actions). */
  readonly invocations: Stream.Stream<ActionInvoke>
  /** A broadcast of every decoded inbound frame, for observers; frames before subscription are not replayed. */
  readonly inbound: Stream.Stream<ServerToNode>
  readonly status: Effect.Effect<NodeStatus>
}>() {}
