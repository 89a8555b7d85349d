import type * as Redacted from "effect/Redacted"
import type { Readiness } from "./AgentReadiness.js"
import type { RestartPolicy } from "./AgentSupervisor.js"
import type { InjectMode, Pty } from "./PtyHost.js"

// What AgentRegistry takes (SpawnSpec) and hands out (AgentInfo, LiveAgent) about an agent.

export interface SpawnSpec {
  readonly name: string
  readonly cli: string
  readonly args?: ReadonlyArray<string>
  readonly cwd?: string
  /** Delivered as the agent's first message once the process has started. */
  readonly task?: string
  readonly channels?: ReadonlyArray<string>
  readonly model?: string
  /** Upstream's `team`: a label kept with the agent and shown in `/api/spawned`. */
  readonly team?: string
  readonly env?: Readonly<Record<string, string>>
  /** Set when the spawn comes from an engine `action.invoke`. */
  readonly invocationId?: string
  readonly sessionRef?: string
  /** `agentResultSchema`: the agent gets `submit_result` and AGENT_RELAY_RESULT_*. */
  readonly resultSchema?: unknown
  /** Restart the agent when its process ends by itself (AgentSupervisor, when composed in). */
  readonly restartPolicy?: RestartPolicy
}

export interface AgentInfo {
  readonly name: string
  readonly agentId: string
  readonly cli: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly pid: number
  readonly status: "running" | "exited"
  /** Epoch ms. */
  readonly startedAt: number
  /** Epoch ms of the last output or injection. */
  readonly lastActivityAt: number
  /** How messages are typed into this agent's terminal (from its harness). */
  readonly injectMode: InjectMode["input"]
  /** As given at spawn. */
  readonly model?: string
  readonly team?: string
  /** Set when the bind went through the HTTP fallback and left something to say. */
  readonly warning?: string
  /** False while the spawn's task waits to be typed (AgentIdleness: task_exit ends an agent after its task). */
  readonly taskTyped?: boolean
  /** Whether it can take keys yet, and how that was decided (AgentReadiness; always set by the live registry). */
  readonly readiness?: Readiness
}

export interface LiveAgent extends AgentInfo {
  readonly pty: Pty
  readonly token: Redacted.Redacted<string>
}
