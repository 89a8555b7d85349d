import { Context, type Redacted } from "effect"

// CONTRACT. `config` (an Effect Config over env + CLI flags), `layer(options)` and `layerConfig` are
// to be written in this file (issue: node session).

export interface BrokerConfigShape {
  /** The engine's base URL (`RELAY_BASE_URL` / `RELAYCAST_BASE_URL`), e.g. `http://127.0.0.1:4000`. */
  readonly baseUrl: string
  /** The workspace key (`RELAY_WORKSPACE_KEY` / `AGENT_RELAY_WORKSPACE_KEY` / `RELAY_API_KEY`). */
  readonly workspaceKey: Redacted.Redacted<string>
  /** `RELAY_NODE_TOKEN`: a pinned node token. */
  readonly nodeToken: Redacted.Redacted<string> | undefined
  /** The node's name (`--name`; default the hostname). */
  readonly nodeName: string
  /** `--state-dir`; default `<cwd>/.agentworkforce/relay`. */
  readonly stateDir: string
  /** `$XDG_DATA_HOME` or `~/.local/share`, then `agent-relay/`. Holds `machine-id` and `node-tokens/`. */
  readonly dataDir: string
  /** The canonical working directory, part of the auto node id. */
  readonly cwd: string
  /** The local control API's key (`RELAY_BROKER_API_KEY`, else a generated `br_<32 hex>`). */
  readonly brokerApiKey: Redacted.Redacted<string>
  readonly apiBind: string
  /** 0 = any free port. */
  readonly apiPort: number
  /** Node-control timings; tests shorten them. */
  readonly heartbeatInterval: number
  readonly requestTimeout: number
  /** This package's version, sent as `relay-broker/<version>`. */
  readonly version: string
}

export class BrokerConfig extends Context.Tag("relay-broker/BrokerConfig")<BrokerConfig, BrokerConfigShape>() {}
