import { Context, type Effect, type Redacted } from "effect"
import type {
  BindFailed,
  InvalidAgentName,
  NameTaken,
  SpawnFailed,
  UnknownWorker
} from "./errors.js"
import type { InjectMode, Pty } from "./PtyHost.js"

// CONTRACT. The live layer is to be written in this file (issue: agents and the daemon).

export interface SpawnSpec {
  readonly name: string
  readonly cli: string
  readonly args?: ReadonlyArray<string>
  readonly cwd?: string
  /** Delivered as the agent's first message once the process has started. */
  readonly task?: string
  readonly channels?: ReadonlyArray<string>
  readonly model?: string
  readonly env?: Readonly<Record<string, string>>
  /** Set when the spawn comes from an engine `action.invoke`. */
  readonly invocationId?: string
  readonly sessionRef?: string
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
  /** Set when the bind went through the HTTP fallback and left something to say. */
  readonly warning?: string
}

export interface LiveAgent extends AgentInfo {
  readonly pty: Pty
  readonly token: Redacted.Redacted<string>
}

export class AgentRegistry extends Context.Tag("relay-broker/AgentRegistry")<AgentRegistry, {
  readonly spawn: (
    spec: SpawnSpec
  ) => Effect.Effect<AgentInfo, InvalidAgentName | NameTaken | BindFailed | SpawnFailed>
  /** Kill, `agent.deregister`, prune delivery state, announce. Releasing an agent that already exited succeeds. */
  readonly release: (name: string) => Effect.Effect<void, UnknownWorker>
  readonly list: Effect.Effect<ReadonlyArray<AgentInfo>>
  readonly lookup: (name: string) => Effect.Effect<LiveAgent, UnknownWorker>
}>() {}
