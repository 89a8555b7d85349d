import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import { EventLog } from "./EventLog.js"

// Supervision (`restartPolicy` on spawn). When an agent's process ends by itself, AgentRegistry asks
// `decide`: with a policy that allows it, the agent is kept bound (same agent id and token, same
// delivery cursor) and `restartAfterCooldown` brings it back after `cooldown_ms`, in a fiber of its
// own that a release interrupts (`cancel`). Past `max_restarts`, or after `max_consecutive_failures`
// crashes in a row, the agent is permanently dead. Every crash (supervised or not) is recorded for
// `/api/crash-insights`. This service knows nothing of the registry: the registry hands it the
// relaunch to run, so the two compose without a cycle.

/** `restartPolicy` as upstream's clients send it; absent fields take `defaultRestartPolicy`. */
export interface RestartPolicy {
  readonly enabled?: boolean
  readonly max_restarts?: number
  readonly cooldown_ms?: number
  readonly max_consecutive_failures?: number
}

export const defaultRestartPolicy = {
  enabled: true,
  max_restarts: 5,
  cooldown_ms: 2000,
  max_consecutive_failures: 3
} as const

/** A process that ended by itself. */
export interface AgentExit {
  readonly name: string
  readonly code: number | null
  readonly signal: number | string | null
  /** Epoch ms of this run's start and of its end. */
  readonly startedAt: number
  readonly endedAt: number
}

export type RestartDecision =
  | { readonly _tag: "Unsupervised" }
  | {
    readonly _tag: "Restart"
    readonly restartCount: number
    readonly delayMs: number
    readonly code: number | null
    readonly signal: number | string | null
  }
  | { readonly _tag: "Dead"; readonly reason: string }

export interface CrashRecord {
  readonly name: string
  readonly code: number | null
  readonly signal: number | string | null
  readonly reason: string
  readonly timestamp: string
  readonly uptime_secs: number
  /** Whether supervision brought (or is bringing) the agent back after this crash. */
  readonly restarted: boolean
}

export class AgentSupervisor extends Context.Tag("relay-broker/AgentSupervisor")<AgentSupervisor, {
  /** Counts the exit against the agent's policy (and records it when it is a crash). */
  readonly decide: (exit: AgentExit, policy: RestartPolicy | undefined) => Effect.Effect<RestartDecision>
  /**
   * Announces the decision; for a restart, runs `relaunch` after the cooldown in a fiber of its own.
   * `relaunch` fails when the agent cannot be started again: it is then permanently dead; it gives
   * `false` when there is nothing to restart any more (released meanwhile).
   */
  readonly carryOut: <E extends { readonly message: string }>(
    name: string,
    decision: RestartDecision,
    relaunch: Effect.Effect<boolean, E>
  ) => Effect.Effect<void>
  /** The agent was released: a pending restart is interrupted (and awaited) and its counters dropped. */
  readonly cancel: (name: string) => Effect.Effect<void>
  /** Crashes, oldest first (bounded). */
  readonly crashes: Effect.Effect<ReadonlyArray<CrashRecord>>
}>() {}

export interface AgentSupervisorSettings {
  /** A run this long counts as healthy: the consecutive-failure count starts again. Default 30 s. */
  readonly stableAfter?: Duration.DurationInput
  /** Crash records kept. Default 200. */
  readonly crashCapacity?: number
}

interface Counters {
  readonly restarts: number
  readonly consecutiveFailures: number
}

const crashed = (exit: AgentExit) => (exit.code ?? 0) !== 0 || exit.signal !== null

const describeExit = (exit: AgentExit) =>
  exit.signal !== null ? `signal ${String(exit.signal)}` : `exit code ${String(exit.code)}`

/** The cooldown before a restart: one wait of `delayMs`, run as a named schedule. */
export const restartCooldown = (delayMs: number) => Schedule.once.pipe(Schedule.addDelay(() => Duration.millis(delayMs)))

export const makeWith = (settings: AgentSupervisorSettings = {}) =>
  Effect.gen(function*() {
    const events = yield* EventLog
    const stableAfterMs = Duration.toMillis(settings.stableAfter ?? "30 seconds")
    const crashCapacity = settings.crashCapacity ?? 200
    const counters = yield* Ref.make<ReadonlyMap<string, Counters>>(new Map())
    const crashLog = yield* Ref.make<ReadonlyArray<CrashRecord>>([])
    const cooldowns = yield* FiberMap.make<string>()

    const setCounters = (name: string, next: Counters | undefined) =>
      Ref.update(counters, (current) => {
        const map = new Map(current)
        if (next === undefined) map.delete(name)
        else map.set(name, next)
        return map
      })

    const choose = (exit: AgentExit, policy: RestartPolicy | undefined, before: Counters): RestartDecision => {
      if (policy === undefined || policy.enabled === false) return { _tag: "Unsupervised" }
      const maxRestarts = policy.max_restarts ?? defaultRestartPolicy.max_restarts
      const maxFailures = policy.max_consecutive_failures ?? defaultRestartPolicy.max_consecutive_failures
      const stable = exit.endedAt - exit.startedAt >= stableAfterMs
      const failures = (stable ? 0 : before.consecutiveFailures) + (crashed(exit) ? 1 : 0)
      if (maxFailures > 0 && failures >= maxFailures) {
        return { _tag: "Dead", reason: `${failures} consecutive failures (max_consecutive_failures ${maxFailures}); last: ${describeExit(exit)}` }
      }
      if (before.restarts >= maxRestarts) {
        return { _tag: "Dead", reason: `max_restarts (${maxRestarts}) reached; last: ${describeExit(exit)}` }
      }
      return {
        _tag: "Restart",
        restartCount: before.restarts + 1,
        code: exit.code,
        signal: exit.signal,
        delayMs: Math.max(0, policy.cooldown_ms ?? defaultRestartPolicy.cooldown_ms)
      }
    }

    const decide = (exit: AgentExit, policy: RestartPolicy | undefined) =>
      Effect.gen(function*() {
        const before = (yield* Ref.get(counters)).get(exit.name) ?? { restarts: 0, consecutiveFailures: 0 }
        const decision = choose(exit, policy, before)
        if (decision._tag === "Restart") {
          const stable = exit.endedAt - exit.startedAt >= stableAfterMs
          yield* setCounters(exit.name, {
            restarts: decision.restartCount,
            consecutiveFailures: (stable ? 0 : before.consecutiveFailures) + (crashed(exit) ? 1 : 0)
          })
        } else {
          yield* setCounters(exit.name, undefined)
        }
        if (crashed(exit)) {
          const record: CrashRecord = {
            name: exit.name,
            code: exit.code,
            signal: exit.signal,
            reason: describeExit(exit),
            timestamp: new Date(exit.endedAt).toISOString(),
            uptime_secs: Math.max(0, Math.floor((exit.endedAt - exit.startedAt) / 1000)),
            restarted: decision._tag === "Restart"
          }
          yield* Ref.update(crashLog, (current) => [...current, record].slice(-crashCapacity))
        }
        return decision
      })

    const permanentlyDead = (name: string, reason: string) =>
      Effect.zipRight(
        events.publish("agent_permanently_dead", { name, reason }),
        Effect.logWarning("agent permanently dead").pipe(Effect.annotateLogs({ agent: name, reason }))
      )

    const carryOut = <E extends { readonly message: string }>(
      name: string,
      decision: RestartDecision,
      relaunch: Effect.Effect<boolean, E>
    ) => {
      switch (decision._tag) {
        case "Unsupervised":
          return Effect.void
        case "Dead":
          return permanentlyDead(name, decision.reason)
        case "Restart":
          return Effect.gen(function*() {
            yield* events.publish("agent_restarting", {
              name,
              ...(decision.code === null ? {} : { code: decision.code }),
              ...(decision.signal === null ? {} : { signal: decision.signal }),
              restart_count: decision.restartCount,
              delay_ms: decision.delayMs
            })
            const restart = Effect.gen(function*() {
              yield* Effect.void.pipe(Effect.schedule(restartCooldown(decision.delayMs)))
              // Past the cooldown the relaunch runs to its end: a release waits for it, then releases the new process.
              yield* Effect.uninterruptible(
                relaunch.pipe(
                  Effect.flatMap((restarted) =>
                    restarted ? events.publish("agent_restarted", { name, restart_count: decision.restartCount }) : Effect.void
                  ),
                  Effect.catchAll((error) =>
                    Effect.zipRight(setCounters(name, undefined), permanentlyDead(name, `restart failed: ${error.message}`))
                  )
                )
              )
            })
            yield* FiberMap.run(cooldowns, name, restart.pipe(Effect.annotateLogs({ service: "AgentSupervisor", agent: name })))
          })
      }
    }

    const cancel = (name: string) =>
      Effect.gen(function*() {
        const fiber = yield* FiberMap.get(cooldowns, name).pipe(Effect.option)
        yield* FiberMap.remove(cooldowns, name)
        if (fiber._tag === "Some") yield* fiber.value.await
        yield* setCounters(name, undefined)
      })

    return AgentSupervisor.of({ decide, carryOut, cancel, crashes: Ref.get(crashLog) })
  })

export const layer: Layer.Layer<AgentSupervisor, never, EventLog> = Layer.scoped(AgentSupervisor, makeWith())

export const layerWith = (settings: AgentSupervisorSettings): Layer.Layer<AgentSupervisor, never, EventLog> =>
  Layer.scoped(AgentSupervisor, makeWith(settings))
