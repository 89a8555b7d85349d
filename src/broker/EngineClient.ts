import { Context, type Effect, type Redacted } from "effect"
import type { Json } from "../wire/Json.js"
import type { EngineHttpFailed } from "./errors.js"

// CONTRACT. The live layer (HttpClient against BrokerConfig.baseUrl, `{ok,data}` envelopes, errors
// mapped to EngineHttpFailed with secrets redacted) is to be written in this file.

/** An engine credential: a workspace key (`rk_live_…`) or an agent token (`at_live_…`). */
export type Credential = Redacted.Redacted<string>

export interface CreatedWorkspace {
  readonly workspaceId: string
  readonly apiKey: Redacted.Redacted<string>
}

export interface CreatedAgent {
  readonly id: string
  readonly name: string
  readonly token: Redacted.Redacted<string>
}

export interface SentMessage {
  /** The engine's message id. */
  readonly id: string
  /** The engine's `data` as it answered, for callers that report it. */
  readonly data: Json
}

export class EngineClient extends Context.Tag("relay-broker/EngineClient")<EngineClient, {
  /** `POST /v1/workspaces` (no auth): a new workspace and its key. */
  readonly createWorkspace: (name: string) => Effect.Effect<CreatedWorkspace, EngineHttpFailed>
  /** `GET /v1/workspace` with the key: `{id, name}`. */
  readonly getWorkspace: (key: Credential) => Effect.Effect<{ readonly id: string; readonly name: string }, EngineHttpFailed>
  /** `POST /v1/agents` with the workspace key (`type` "agent" or "human"); 409 is `code: agent_already_exists`. */
  readonly createAgent: (
    key: Credential,
    agent: { readonly name: string; readonly type: "agent" | "human" }
  ) => Effect.Effect<CreatedAgent, EngineHttpFailed>
  /** `POST /v1/agents/:name/rotate-token` with the workspace key. */
  readonly rotateAgentToken: (key: Credential, name: string) => Effect.Effect<CreatedAgent, EngineHttpFailed>
  /** `POST /v1/nodes/:nodeName/agents {agent_name}` with the workspace key: the agent becomes `via_node`. */
  readonly bindAgentToNode: (key: Credential, nodeName: string, agentName: string) => Effect.Effect<void, EngineHttpFailed>
  /** `POST /v1/dm {to, text, mode?}` with an agent token. */
  readonly sendDm: (
    token: Credential,
    message: { readonly to: string; readonly text: string; readonly mode?: "wait" | "steer" }
  ) => Effect.Effect<SentMessage, EngineHttpFailed>
  /** `POST /v1/channels/:channel/messages {text, mode?}` with an agent token (`channel` without `#`). */
  readonly postToChannel: (
    token: Credential,
    message: { readonly channel: string; readonly text: string; readonly mode?: "wait" | "steer" }
  ) => Effect.Effect<SentMessage, EngineHttpFailed>
  /** `POST /v1/messages/:id/replies {text}` with an agent token. */
  readonly replyInThread: (
    token: Credential,
    message: { readonly threadId: string; readonly text: string }
  ) => Effect.Effect<SentMessage, EngineHttpFailed>
}>() {}
