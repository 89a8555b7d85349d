import type * as Deferred from "effect/Deferred"
import type * as Fiber from "effect/Fiber"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Binding } from "./agentBinding.js"
import type { AgentInfo, SpawnSpec } from "./agentShapes.js"
import type { ReadinessHandle } from "./AgentReadiness.js"
import type { Pty } from "./PtyHost.js"

// What AgentRegistry keeps per agent: the live entry, the registry's state, a map helper, and the
// shapes it hands out about restarts (RestartingAgent) and takes on release (ReleaseOptions).

export interface Entry {
  readonly info: Omit<AgentInfo, "lastActivityAt" | "status" | "readiness" | "taskTyped">
  /** What a restart launches again, with the same binding. */
  readonly spec: SpawnSpec
  readonly binding: Binding
  readonly readiness: ReadinessHandle
  readonly pty: Pty
  readonly token: Redacted.Redacted<string>
  readonly scope: Scope.CloseableScope
  readonly invocationId?: string
  readonly sessionRef?: string
  /** The last output or input (epoch ms), and whether the spawn's task (if any) has been typed. */
  readonly activity: { at: number; taskTyped: boolean }
  pump?: Fiber.RuntimeFiber<void>
}

export interface State {
  readonly live: ReadonlyMap<string, Entry>
  /** Names between validation and the end of `spawn`: taken, too. */
  readonly starting: ReadonlySet<string>
  /** Agents whose process ended by itself, oldest first (bounded). */
  readonly exited: ReadonlyMap<string, AgentInfo>
  /** Agents waiting for a restart: still bound, cursor kept; `back` says whether they came back. */
  readonly restarting: ReadonlyMap<string, Restarting>
}

export interface Restarting {
  readonly spec: SpawnSpec
  readonly binding: Binding
  readonly info: AgentInfo
  readonly back: Deferred.Deferred<boolean>
  /** The restart under way (1 for the first) and when its cooldown ends (epoch ms). */
  readonly restartCount: number
  readonly restartAt: number
}

export const without = <K, V>(map: ReadonlyMap<K, V>, key: K): ReadonlyMap<K, V> => {
  const next = new Map(map)
  next.delete(key)
  return next
}

/** An agent whose process ended by itself and that supervision brings back after a cooldown. */
export interface RestartingAgent {
  /** The agent as its last run left it (`status: "exited"`). */
  readonly info: AgentInfo
  /** The restart under way: 1 for the first. */
  readonly restartCount: number
  /** Epoch ms at which the cooldown ends and the agent is started again. */
  readonly restartAt: number
}

export interface ReleaseOptions {
  /**
   * The agent's work is done (`spawnMode: "task_exit"`): its end is reported like an exit,
   * `agent_exited {name, code, signal, reason}` and `agent_exit {name, reason}`, before `agent_released`.
   */
  readonly exitReason?: string
}
