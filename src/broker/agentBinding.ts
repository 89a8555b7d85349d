import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { SpawnSpec } from "./AgentRegistry.js"
import type { BrokerConfig } from "./BrokerConfig.js"
import type { EngineClient } from "./EngineClient.js"
import { BindFailed, type EngineHttpFailed, type NodeRequestFailed } from "./errors.js"
import { engineStatusMayPass } from "./retryable.js"
import type { NodeControl } from "./NodeControl.js"

// Binding an agent to this node before it runs: `agent.register` over node control, else the
// engine's HTTP API (create or rotate, then bind); and the deregistration after it ends.

export interface Binding {
  readonly agentId: string
  readonly token: Redacted.Redacted<string>
  readonly warning?: string
}

export interface AgentBindingServices {
  readonly config: BrokerConfig["Type"]
  readonly nodeControl: NodeControl["Type"]
  readonly engine: EngineClient["Type"]
}

export const makeAgentBinding = ({ config, nodeControl, engine }: AgentBindingServices) => {
  const httpBind = (name: string) =>
    Effect.gen(function*() {
      const created = yield* engine.createAgent(config.workspaceKey, { name, type: "agent" }).pipe(
        Effect.catchIf(
          (error) => error.status === 409 || error.code === "agent_already_exists",
          () => engine.rotateAgentToken(config.workspaceKey, name)
        )
      )
      yield* engine.bindAgentToNode(config.workspaceKey, config.nodeName, name)
      return created
    })

  const bindFailed = (name: string, nodeError: NodeRequestFailed, httpError: EngineHttpFailed) =>
    new BindFailed({
      agent: name,
      // A refusal (4xx) stays one; the engine away, slow or failing (5xx, 429) may pass.
      reason: httpError.status !== undefined && !engineStatusMayPass(httpError.status)
        ? "Rejected"
        : nodeError.reason === "Timeout" ? "Timeout" : "Transport",
      detail: `agent.register: ${nodeError.message}; HTTP fallback: ${httpError.message}`
    })

  const bind = (spec: SpawnSpec): Effect.Effect<Binding, BindFailed> =>
    nodeControl.registerAgent({
      name: spec.name,
      ...(spec.invocationId === undefined ? {} : { invocation_id: spec.invocationId }),
      ...(spec.sessionRef === undefined ? {} : { session_ref: spec.sessionRef })
    }).pipe(
      Effect.map((data): Binding => ({ agentId: data.agent_id, token: Redacted.make(data.token) })),
      Effect.catchAll((nodeError) =>
        httpBind(spec.name).pipe(
          Effect.map((created): Binding => ({
            agentId: created.id,
            token: created.token,
            warning: `agent.register over node control failed (${nodeError.message}); ` +
              `the agent was bound to node '${config.nodeName}' through the engine's HTTP API`
          })),
          Effect.mapError((httpError) => bindFailed(spec.name, nodeError, httpError))
        )
      )
    )

  const deregister = (agentId: string, name: string) =>
    nodeControl.send({ v: 1, type: "agent.deregister", agent_id: agentId, name })

  return { bind, deregister }
}
