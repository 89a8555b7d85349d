import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

// The delivery pipeline's knobs (Deliveries), with their environment names.

export interface DeliveriesOptions {
  /** How long frames behind a seq gap wait for the missing ones before they are surfaced anyway. */
  readonly gapGrace: Duration.Duration
  /** First delay of the local retries of a failed injection (doubling). */
  readonly injectRetryBase: Duration.Duration
  /** Retries after the first attempt before the frame is dead-lettered. */
  readonly injectRetries: number
  /** First delay of the retries of a failed cursor save (doubling, then every 5 s until it succeeds). */
  readonly saveRetryBase: Duration.Duration
  /** A worker with frames waiting that stays this long in one step (or takes no frame) is `stalled`. */
  readonly stallAfter: Duration.Duration
  /**
   * The same bound while it injects. An injection may legitimately wait for the agent to be ready
   * (the task typed first, the readiness gate: up to about 25 s), so this one is higher.
   */
  readonly injectStallAfter: Duration.Duration
  /** How often the stall monitor looks at the workers. */
  readonly stallCheckInterval: Duration.Duration
}

export class DeliveriesConfig extends Context.Tag("relay-broker/DeliveriesConfig")<DeliveriesConfig, DeliveriesOptions>() {}

export const defaults: DeliveriesOptions = {
  gapGrace: Duration.seconds(2),
  injectRetryBase: Duration.millis(25),
  injectRetries: 5,
  saveRetryBase: Duration.millis(100),
  stallAfter: Duration.seconds(5),
  injectStallAfter: Duration.seconds(30),
  stallCheckInterval: Duration.seconds(1)
}

export const configLayer = (options?: Partial<DeliveriesOptions>): Layer.Layer<DeliveriesConfig> =>
  Layer.succeed(DeliveriesConfig, { ...defaults, ...options })

const millis = (name: string, fallback: Duration.Duration, description: string) =>
  Config.integer(name).pipe(
    Config.map(Duration.millis),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

export const config: Config.Config<DeliveriesOptions> = Config.all({
  gapGrace: millis("RELAY_DELIVERY_GAP_GRACE_MS", defaults.gapGrace, "How long frames behind a seq gap wait for the missing ones (ms)."),
  injectRetryBase: millis("RELAY_DELIVERY_RETRY_MS", defaults.injectRetryBase, "First delay of the local injection retries (ms, doubling)."),
  injectRetries: Config.integer("RELAY_DELIVERY_RETRIES").pipe(
    Config.withDefault(defaults.injectRetries),
    Config.withDescription("Injection retries before a frame is dead-lettered.")
  ),
  saveRetryBase: millis("RELAY_DELIVERY_SAVE_RETRY_MS", defaults.saveRetryBase, "First delay of the cursor-save retries (ms, doubling up to 5 s)."),
  stallAfter: millis("RELAY_DELIVERY_STALL_MS", defaults.stallAfter, "No progress for this long with frames waiting: the agent is stalled (ms)."),
  injectStallAfter: millis(
    "RELAY_DELIVERY_INJECT_STALL_MS",
    defaults.injectStallAfter,
    "The same while injecting, which may wait for the agent to be ready (ms)."
  ),
  stallCheckInterval: millis("RELAY_DELIVERY_STALL_CHECK_MS", defaults.stallCheckInterval, "How often stalls are looked for (ms).")
})

export const layerConfig: Layer.Layer<DeliveriesConfig> = Layer.effect(
  DeliveriesConfig,
  Effect.orElseSucceed(config, () => defaults)
)
