import type * as Duration from "effect/Duration"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import type { FleetCapability } from "../wire/frames.js"
import type * as Protocol from "./nodeProtocol.js"

// NodeControl's policies and settings: the reconnect schedule, the options, the skipped-frames
// metric and the socket URL.

/** Exponential from 1 s, doubling, capped at 30 s, jittered (0.8x–1.2x). Reset after a healthy session. */
export const reconnectSchedule = Schedule.exponential("1 second", 2).pipe(
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.jittered
)

export interface NodeControlOptions {
  /** The delay between connection attempts. Default `reconnectSchedule`. */
  readonly reconnectSchedule?: Schedule.Schedule<unknown, unknown>
  /** A session that stayed up this long resets the backoff. Default 30 s. */
  readonly healthyAfter?: Duration.DurationInput
  /** Consecutive 401s answered with a remint before giving up re-minting. Default 5. */
  readonly maxConsecutiveRemints?: number
  /** Frames `send` keeps while disconnected; beyond it the oldest is dropped. Default 1024. */
  readonly outboxCapacity?: number
  /** Heartbeat intervals without any inbound byte (frame or pong) before the socket counts as dead. Default 4. */
  readonly idleHeartbeats?: number
  /** The WebSocket handshake limit. Default 10 s. */
  readonly connectTimeout?: Duration.DurationInput
  /**
   * Advertised in `node.register` and heartbeats, e.g. `spawn:<harness>` placement capabilities so
   * the engine can place spawns here; `handlers_live` is true when there are any. Default none.
   * (Never a bare `spawn`: it would become a workspace action pinned to this node.)
   */
  readonly capabilities?: ReadonlyArray<FleetCapability>
  /**
   * The protocol generation to start with. Default "provider" (relaycast 6: provider identity,
   * capability kinds, the delivery cursor); a v5 engine's refusal switches to "v5" by itself.
   */
  readonly dialect?: Protocol.Dialect
}

/** Undecodable or unknown inbound frames, by `kind` (invalid_json, not_an_object, unknown_type, invalid_frame). */
export const skippedFrames = Metric.counter("relay_broker_node_frames_skipped_total", {
  description: "Inbound node-control frames that were logged and skipped"
})

/** `ws(s)://<base>/v1/node/ws`, from the engine's http(s) base URL. */
export const nodeControlUrl = (baseUrl: string): string =>
  `${baseUrl.trim().replace(/\/+$/, "").replace(/^https:/i, "wss:").replace(/^http:/i, "ws:")}/v1/node/ws`
