import type * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { accessSync, constants } from "node:fs"
import { delimiter, join } from "node:path"
import type { EngineStartError } from "../engine/EngineError.js"
import * as Actions from "./Actions.js"
import * as AgentReadiness from "./AgentReadiness.js"
import * as AgentIdleness from "./AgentIdleness.js"
import * as AgentRegistry from "./AgentRegistry.js"
import * as AgentRoster from "./AgentRoster.js"
import * as AgentSupervisor from "./AgentSupervisor.js"
import * as BrokerConfig from "./BrokerConfig.js"
import * as BrokerIdentity from "./BrokerIdentity.js"
import * as BrokerSession from "./BrokerSession.js"
import * as ChannelMembership from "./ChannelMembership.js"
import * as ControlApi from "./ControlApi.js"
import * as DeadLetters from "./DeadLetters.js"
import * as Deliveries from "./Deliveries.js"
import * as DeliveryBook from "./DeliveryBook.js"
import * as DeliveryHolds from "./DeliveryHolds.js"
import type { PersistFailed } from "./errors.js"
import * as EngineClient from "./EngineClient.js"
import * as EventLog from "./EventLog.js"
import * as ConnectionFile from "./http/connectionFile.js"
import * as Shutdown from "./http/Shutdown.js"
import * as SidecarHandlers from "./SidecarHandlers.js"
import * as LocalEngine from "./LocalEngine.js"
import * as NodeControl from "./NodeControl.js"
import * as ProcessTree from "./ProcessTree.js"
import * as PtyHost from "./PtyHost.js"
import * as TokenStore from "./TokenStore.js"
import * as AgentTools from "../mcp/AgentTools.js"
import * as MessageRecords from "../mcp/MessageRecords.js"

// The whole broker as layers. Dependencies are built before their dependents and closed after
// them, which gives the shutdown order for free: connection.json is removed, the API stops, the
// consumers stop, agents are killed and deregistered, the node deregisters, files are closed, and
// last the embedded engine (when this process runs one) stops.

export interface DaemonOptions {
  /** `relay-broker up` flags (state dir, API bind/port, node name, …); the environment fills the rest. */
  readonly flags?: BrokerConfig.BrokerFlags
  /** How to run an engine when RELAY_BASE_URL is unset; default: the embedded engine, in process. */
  readonly startEmbedded?: LocalEngine.StartEmbeddedEngine<EngineStartError, never>
  /** `persist` (default) or an ephemeral lease, and the channels agents join (`relay-broker init`). */
  readonly session?: BrokerSession.SessionOptions
}

/**
 * BrokerConfig from flags + environment, completed with the engine connection. Without a base URL
 * the embedded engine starts here and lives as long as this layer.
 */
export const configLayer = <E, R>(
  flags: BrokerConfig.BrokerFlags,
  startEmbedded: LocalEngine.StartEmbeddedEngine<E, R>
) =>
  Layer.scoped(
    BrokerConfig.BrokerConfig,
    Effect.gen(function*() {
      const settings = yield* BrokerConfig.settings(flags)
      const engine = yield* LocalEngine.connect(settings, startEmbedded)
      return BrokerConfig.complete(settings, engine)
    })
  )

/** The harnesses the engine's spawn API knows (`cli` of `POST /v1/agents/spawn`). */
export const engineHarnesses = ["claude", "codex", "gemini", "aider", "goose", "opencode", "grok"] as const

const onPath = (command: string, path: string): boolean =>
  path.split(delimiter).some((dir) => {
    if (dir === "") return false
    try {
      accessSync(join(dir, command), constants.X_OK)
      return true
    } catch {
      return false
    }
  })

/**
 * The `spawn:<harness>` capabilities this node advertises, so the engine places spawns here:
 * `AGENT_RELAY_NODE_HARNESSES` (comma-separated; empty = none) when set, else every known harness
 * found on PATH. Never a bare `spawn` (the engine would turn it into an action pinned to this node).
 */
export const spawnCapabilities = (env: NodeJS.ProcessEnv = process.env): ReadonlyArray<{ readonly name: string }> => {
  const explicit = env["AGENT_RELAY_NODE_HARNESSES"]
  const harnesses = explicit !== undefined
    ? explicit.split(",").map((name) => name.trim()).filter((name) => /^[A-Za-z0-9._-]+$/.test(name))
    : engineHarnesses.filter((name) => onPath(name, env["PATH"] ?? ""))
  return [...new Set(harnesses)].map((name) => ({ name: `spawn:${name}` }))
}

/**
 * Every broker service, given a BrokerConfig, a FileSystem and an HttpClient. The services stay
 * in the output, so another Effect program can build this layer and use the registry, the event
 * log, the node session or the API address directly.
 */
export const servicesLayer = ControlApi.layer.pipe(
  // The API is built on top of the consumers, so its routes see Deliveries, DeadLetters and the
  // broker identity (siblings in a mergeAll would not see each other).
  Layer.provideMerge(Layer.mergeAll(Actions.layer, Deliveries.layer, BrokerIdentity.layer, AgentIdleness.layer)),
  Layer.provideMerge(AgentRegistry.layer),
  Layer.provideMerge(Layer.suspend(() => NodeControl.layerWith({ capabilities: spawnCapabilities() }))),
  Layer.provideMerge(
    Layer.mergeAll(
      TokenStore.layer,
      EngineClient.layer,
      DeliveryBook.layer,
      DeadLetters.layer,
      AgentReadiness.layerConfig,
      DeliveryHolds.layer,
      AgentSupervisor.layer,
      AgentTools.layer,
      MessageRecords.layer
    )
  ),
  Layer.provideMerge(
    Layer.mergeAll(
      EventLog.layer,
      AgentRoster.layer,
      Shutdown.layer,
      PtyHost.layer,
      ProcessTree.layer,
      Deliveries.layerConfig,
      SidecarHandlers.layer
    )
  )
)

/** connection.json, then the stdout listening line: in that order, so a client that saw the line finds the file. */
export const announceLayer: Layer.Layer<
  never,
  PersistFailed,
  BrokerConfig.BrokerConfig | ControlApi.ControlApi | FileSystem.FileSystem
> = ConnectionFile.announce.pipe(Layer.provide(ConnectionFile.layer))

// node:http, not the global fetch: Node's fetch loads its own HTTP stack (undici, with a WebAssembly
// parser) on first use, which costs a start about 150 ms of CPU and the daemon about 40 MB of RSS.
const platformLayer: Layer.Layer<NodeContext.NodeContext | HttpClient.HttpClient> = Layer.merge(
  NodeContext.layer,
  NodeHttpClient.layer
)

/**
 * The embedded engine, loaded only when it is started: with RELAY_BASE_URL set, the daemon never
 * loads its modules (SQLite, the engine's HTTP and node-protocol code), which is most of a start.
 */
export const startEmbeddedEngine: LocalEngine.StartEmbeddedEngine<EngineStartError, never> = (options) =>
  Effect.flatMap(
    Effect.promise(() => import("../engine/index.js")),
    (engine) => engine.EmbeddedEngine.start(options)
  )

/** The session (mode, lease, default channels) and channel membership, read by the API when present. */
export const sessionLayer = (options: DaemonOptions) =>
  Layer.mergeAll(BrokerSession.layer(options.session ?? BrokerSession.persistent), ChannelMembership.layer)

/** The broker as `relay-broker up` runs it, announcing itself (connection.json + the stdout line). */
export const layer = (options: DaemonOptions = {}) =>
  announceLayer.pipe(
    Layer.provideMerge(servicesLayer),
    Layer.provideMerge(sessionLayer(options)),
    Layer.provideMerge(configLayer(options.flags ?? {}, options.startEmbedded ?? startEmbeddedEngine)),
    Layer.provideMerge(platformLayer)
  )

/** The same broker without connection.json or the stdout line: for embedding in another program or a test. */
export const layerQuiet = (options: DaemonOptions = {}) =>
  servicesLayer.pipe(
    Layer.provideMerge(sessionLayer(options)),
    Layer.provideMerge(configLayer(options.flags ?? {}, options.startEmbedded ?? startEmbeddedEngine)),
    Layer.provideMerge(platformLayer)
  )

/**
 * Runs until a shutdown is requested through the API or an ephemeral session's lease runs out;
 * SIGINT/SIGTERM interrupt it the same way.
 */
export const untilShutdown = Effect.gen(function*() {
  const shutdown = yield* Shutdown.Shutdown
  const session = yield* Effect.serviceOption(BrokerSession.BrokerSession)
  yield* session._tag === "None" ? shutdown.requested : Effect.raceFirst(shutdown.requested, session.value.expired)
})
