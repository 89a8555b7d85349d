import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { type AgentInfo, AgentRegistry } from "./AgentRegistry.js"
import { DeliveryHolds } from "./DeliveryHolds.js"
import { EventLog } from "./EventLog.js"

// What each agent is doing (`current_state` in /api/spawned): `working` while its terminal shows
// activity, `idle` after `idleThresholdSecs` of silence, `blocked_on_send` when it is silent with
// deliveries held for it. One `agent_idle {name, idle_secs, since}` (or `agent_blocked_on_send`) per
// silent stretch. `exitAfterTask` / `spawnMode: "task_exit"` release the agent when it first goes
// idle after its task, reported as its exit (`agent_exited`/`agent_exit`, reason `task_complete`);
// `single_shot` releases it when its process ends (never restarted).

export type CurrentState = "working" | "idle" | "blocked_on_send"
export type SpawnMode = "interactive" | "task_exit" | "single_shot"

export interface LifecycleOptions {
  readonly idleThresholdSecs?: number
  readonly spawnMode?: SpawnMode
  readonly exitAfterTask?: boolean
}

export class AgentIdleness extends Context.Tag("relay-broker/AgentIdleness")<AgentIdleness, {
  /** The spawn's lifecycle options (from `POST /api/spawn`). */
  readonly configure: (name: string, options: LifecycleOptions) => Effect.Effect<void>
  readonly stateOf: (agent: AgentInfo) => Effect.Effect<CurrentState>
}>() {}

/** The `reason` of the exit reported when a `task_exit` agent is released after its task. */
export const taskDoneReason = "task_complete"

/** Upstream's default: 120 s without output gives `agent_idle`. */
export const defaultIdleThresholdSecs = 120

export interface AgentIdlenessSettings {
  /** How often the agents are looked at (default 1 s). */
  readonly interval?: Duration.DurationInput
  readonly defaultThresholdSecs?: number
}

interface Watch {
  readonly options: LifecycleOptions
  /** The activity instant already announced as idle (one announcement per silent stretch). */
  readonly announcedFor: number | null
}

export const makeWith = (settings: AgentIdlenessSettings = {}) =>
  Effect.gen(function*() {
    const registry = yield* AgentRegistry
    const events = yield* EventLog
    const holds = yield* Effect.serviceOption(DeliveryHolds)
    const interval = settings.interval ?? "1 second"
    const defaultThreshold = settings.defaultThresholdSecs ?? defaultIdleThresholdSecs
    const watches = yield* Ref.make<ReadonlyMap<string, Watch>>(new Map())

    const heldFor = (name: string) =>
      Option.match(holds, {
        onNone: () => Effect.succeed(0),
        onSome: (service) => Effect.map(service.heldCounts, (counts) => counts.get(name) ?? 0)
      })

    const thresholdMs = (watch: Watch | undefined) =>
      Math.max(0, watch?.options.idleThresholdSecs ?? defaultThreshold) * 1000

    const stateOf = (agent: AgentInfo) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const watch = (yield* Ref.get(watches)).get(agent.name)
        if (agent.status === "running" && now - agent.lastActivityAt < thresholdMs(watch)) return "working" as const
        return (yield* heldFor(agent.name)) > 0 ? "blocked_on_send" as const : "idle" as const
      })

    const configure = (name: string, options: LifecycleOptions) =>
      Ref.update(watches, (current) => new Map(current).set(name, { options, announcedFor: null }))

    const releasesWhenIdle = (watch: Watch | undefined) =>
      watch?.options.exitAfterTask === true || watch?.options.spawnMode === "task_exit"

    const check = (agent: AgentInfo, now: number) =>
      Effect.gen(function*() {
        const watch = (yield* Ref.get(watches)).get(agent.name)
        const silentMs = now - agent.lastActivityAt
        if (agent.status !== "running" || silentMs < thresholdMs(watch)) return
        if (watch?.announcedFor === agent.lastActivityAt) return
        yield* Ref.update(watches, (current) =>
          new Map(current).set(agent.name, { options: watch?.options ?? {}, announcedFor: agent.lastActivityAt }))
        const held = yield* heldFor(agent.name)
        const silentSecs = Math.floor(silentMs / 1000)
        if (held > 0) {
          yield* events.publish("agent_blocked_on_send", { name: agent.name, blocked_secs: silentSecs, pending_delivery_count: held })
        } else {
          yield* events.publish("agent_idle", {
            name: agent.name,
            idle_secs: silentSecs,
            since: new Date(agent.lastActivityAt).toISOString()
          })
        }
        // Idle before its task was typed (still starting) is not "done".
        if (releasesWhenIdle(watch) && held === 0 && agent.taskTyped !== false) {
          yield* Effect.logInfo("task done (idle): releasing the agent").pipe(Effect.annotateLogs({ agent: agent.name }))
          // Reported as the agent's exit (what `waitForExit` waits for), then released.
          yield* registry.release(agent.name, { exitReason: taskDoneReason }).pipe(Effect.ignore)
        }
      })

    const tick = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      for (const agent of yield* registry.list) yield* check(agent, now)
    })

    yield* tick.pipe(
      Effect.catchAllCause((cause) => Effect.logError("idleness check failed", cause)),
      Effect.repeat(Schedule.spaced(interval)),
      Effect.annotateLogs({ service: "AgentIdleness" }),
      Effect.forkScoped
    )

    // single_shot: the agent is released once its process ends; a released agent is forgotten.
    const subscription = yield* events.subscribe(undefined, { kinds: ["agent_released", "agent_exited"] })
    yield* subscription.events.pipe(
      Stream.runForEach((event) =>
        Effect.gen(function*() {
          if (typeof event.name !== "string") return
          const name = event.name
          if (event.kind === "agent_released") {
            yield* Ref.update(watches, (current) => {
              const next = new Map(current)
              next.delete(name)
              return next
            })
          } else if (event.kind === "agent_exited") {
            const watch = (yield* Ref.get(watches)).get(name)
            if (watch?.options.spawnMode === "single_shot") yield* registry.release(name).pipe(Effect.ignore)
          }
        })
      ),
      Effect.forkScoped
    )

    return AgentIdleness.of({ configure, stateOf })
  })

export const layer: Layer.Layer<AgentIdleness, never, AgentRegistry | EventLog> = Layer.scoped(AgentIdleness, makeWith())

export const layerWith = (settings: AgentIdlenessSettings): Layer.Layer<AgentIdleness, never, AgentRegistry | EventLog> =>
  Layer.scoped(AgentIdleness, makeWith(settings))
