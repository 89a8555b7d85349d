import type * as Deferred from "effect/Deferred"
import type * as Fiber from "effect/Fiber"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Binding } from "./agentBinding.js"
import type { AgentInfo, SpawnSpec } from "./AgentRegistry.js"
import type { ReadinessHandle } from "./AgentReadiness.js"
import type { Pty } from "./PtyHost.js"

// What AgentRegistry keeps per agent: the live entry, the registry's state, and a map helper.

export interface Entry {
  readonly info: Omit<AgentInfo, "lastActivityAt" | "status" | "readiness">
  /** What a restart launches again, with the same binding. */
  readonly spec: SpawnSpec
  readonly binding: Binding
  readonly readiness: ReadinessHandle
  readonly pty: Pty
  readonly token: Redacted.Redacted<string>
  readonly scope: Scope.CloseableScope
  readonly invocationId?: string
  readonly sessionRef?: string
  readonly activity: { at: number }
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
