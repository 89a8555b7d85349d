import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

export interface EngineOptions {
  /** Directory of the SQLite file (created if missing). */
  readonly dataDir: string
  /** 0 (default) picks a free port. */
  readonly port?: number
  /** Default 127.0.0.1. */
  readonly host?: string
  /** Delivery row TTL; default 1 h. */
  readonly deliveryTtlMs?: number
  /** Active rows per agent before new ones are refused; default 1000. */
  readonly depthCap?: number
  /**
   * "provider" (default): relaycast 6 node protocol (providers, node.spawn, the delivery cursor).
   * "v5": a strict v5 engine, which refuses every provider-era field with `invalid_message` (to
   * test clients against the older generation).
   */
  readonly nodeProtocol?: "provider" | "v5"
}

export interface EngineSettings {
  readonly dataDir: string
  readonly port: number
  readonly host: string
  readonly deliveryTtlMs: number
  readonly depthCap: number
  readonly nodeProtocol: "provider" | "v5"
  /** Node liveness TTL (45 s) and the sweep period (15 s). */
  readonly nodeLivenessTtlMs: number
  readonly sweepIntervalMs: number
  /** Invocation dispatch timeout (30 s). */
  readonly dispatchTimeoutMs: number
  /** HTTP-only agents go offline after this long without a call (5 min). */
  readonly agentStaleMs: number
  /** When set, one JSON line per written `deliver` frame (bench hook, env RELAY_ENGINE_DELIVER_LOG). */
  readonly deliverLogPath: string | undefined
}

export class EngineConfig extends Context.Tag("relay-broker/engine/EngineConfig")<EngineConfig, EngineSettings>() {}

export const defaults = {
  port: 0,
  host: "127.0.0.1",
  deliveryTtlMs: 60 * 60 * 1000,
  depthCap: 1000,
  nodeLivenessTtlMs: 45_000,
  sweepIntervalMs: 15_000,
  dispatchTimeoutMs: 30_000,
  agentStaleMs: 5 * 60 * 1000
} as const

export const settingsFrom = (options: EngineOptions): EngineSettings => ({
  ...defaults,
  dataDir: options.dataDir,
  port: options.port ?? defaults.port,
  host: options.host ?? defaults.host,
  deliveryTtlMs: options.deliveryTtlMs ?? defaults.deliveryTtlMs,
  depthCap: options.depthCap ?? defaults.depthCap,
  nodeProtocol: options.nodeProtocol ?? "provider",
  deliverLogPath: nonEmpty(process.env["RELAY_ENGINE_DELIVER_LOG"])
})

const nonEmpty = (value: string | undefined) => (value !== undefined && value.trim() !== "" ? value : undefined)

export const layer = (options: EngineOptions): Layer.Layer<EngineConfig> =>
  Layer.sync(EngineConfig, () => settingsFrom(options))
