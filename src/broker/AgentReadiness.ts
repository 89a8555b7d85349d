import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { PtyClosed, UnknownWorker } from "./errors.js"
import { EventLog } from "./EventLog.js"
import type { Pty } from "./PtyHost.js"
import type { ReadinessProfile } from "./readinessTable.js"
import { firstLine } from "./TerminalScreen.js"

// Whether an agent can take keys yet: `starting` until the strongest sign its harness gives, then
// `ready`; `blocked` while its screen shows a login, trust or onboarding dialog. The signs, strongest
// first: the agent's own signal (`signal`, called when its relay tool server is initialised), its
// harness's prompt on the emulated screen (readinessTable), and for line programs, at once. A TUI
// that shows neither within its harness's timeout is treated as ready, with a warning.

/** How an agent's readiness was decided. `immediate`: a line program (bash, cat, a script). */
export type ReadinessSource = "signal" | "screen" | "timeout" | "immediate"

export type Readiness =
  | { readonly state: "starting"; readonly since: number }
  | { readonly state: "blocked"; readonly since: number; readonly screen: string }
  | {
    readonly state: "ready"
    readonly at: number
    readonly decidedBy: ReadinessSource
    /** Set when the agent was treated as ready without a sign (the timeout). */
    readonly warning?: string
  }

export type Ready = Extract<Readiness, { readonly state: "ready" }>

export interface TrackedAgent {
  readonly name: string
  readonly cli: string
  readonly pty: Pty
  readonly profile: ReadinessProfile
}

export interface ReadinessHandle {
  /**
   * Starts deciding: a line program is ready at once; a TUI's screen is watched (in the caller's
   * scope). Called once the agent is announced, so `worker_ready` follows `agent_spawned`.
   */
  readonly start: Effect.Effect<void, never, Scope.Scope>
  /** The state now (synchronous: read when agents are listed). */
  readonly peek: () => Readiness
  /** Completes once the agent is ready; fails when its process ends first. */
  readonly awaitReady: Effect.Effect<Ready, PtyClosed>
}

export class AgentReadiness extends Context.Tag("relay-broker/AgentReadiness")<AgentReadiness, {
  /** Tracks an agent's readiness (`starting` until the handle's `start`); the scope (the agent's) ends it. */
  readonly track: (agent: TrackedAgent) => Effect.Effect<ReadinessHandle, never, Scope.Scope>
  /**
   * The agent says it can take input (its tool server was initialised by its harness). Makes a
   * `starting` or `blocked` agent ready (decided by `signal`); a ready agent stays as it is.
   * `source` names the signaller in the log (e.g. "mcp").
   */
  readonly signal: (name: string, source?: string) => Effect.Effect<Readiness, UnknownWorker>
  readonly get: (name: string) => Effect.Effect<Option.Option<Readiness>>
}>() {}

// ---------------------------------------------------------------------------------------------

export interface AgentReadinessOptions {
  /** Replaces every harness's timeout (tests, or a slow machine). */
  readonly timeout?: Duration.DurationInput
  /** How often a starting agent's screen is read. Default 25 ms. */
  readonly screenPoll?: Duration.DurationInput
}

/** After the timeout, a blocked agent's screen is still read (it may be unblocked by hand), less often. */
const blockedPoll = Duration.millis(250)

/** A starting agent's screen is read every `poll` until the timeout, then every `blockedPoll`. */
export const screenWatch = (poll: Duration.Duration, limitMillis: number) =>
  Schedule.spaced(poll).pipe(Schedule.upTo(Duration.millis(limitMillis)), Schedule.andThen(Schedule.spaced(blockedPoll)))

export const config: Config.Config<AgentReadinessOptions> = Config.option(
  Config.integer("RELAY_READY_TIMEOUT_MS").pipe(
    Config.validate({ message: "expected a number of milliseconds, 0 or more", validation: (ms) => ms >= 0 }),
    Config.withDescription("Replaces every harness's readiness timeout (ms): a TUI without a ready sign is typed into after it.")
  )
).pipe(Config.map((timeout) => Option.match(timeout, { onNone: () => ({}), onSome: (ms) => ({ timeout: Duration.millis(ms) }) })))

interface Tracker {
  readonly agent: TrackedAgent
  readonly ready: Deferred.Deferred<Ready>
  state: Readiness
}

export const makeWith = (options: AgentReadinessOptions = {}) =>
  Effect.gen(function*() {
    const events = yield* EventLog
    const trackers = yield* Ref.make<ReadonlyMap<string, Tracker>>(new Map())
    const screenPoll = Duration.decode(options.screenPoll ?? "25 millis")

    const decide = (tracker: Tracker, decidedBy: ReadinessSource, warning?: string) =>
      Effect.gen(function*() {
        const at = yield* Clock.currentTimeMillis
        const ready: Ready = { state: "ready", at, decidedBy, ...(warning === undefined ? {} : { warning }) }
        if (!(yield* Deferred.succeed(tracker.ready, ready))) return
        tracker.state = ready
        const { name, cli, pty } = tracker.agent
        yield* events.publish("worker_ready", { name, runtime: "pty", cli, pid: pty.pid, readiness: decidedBy })
        if (warning !== undefined) {
          yield* events.publish("worker_error", { name, code: "readiness_timeout", message: warning })
          yield* Effect.logWarning(warning)
        }
        yield* Effect.logInfo("agent ready").pipe(Effect.annotateLogs({ decided_by: decidedBy }))
      })

    const block = (tracker: Tracker, screen: string) =>
      Effect.gen(function*() {
        const previous = tracker.state
        if (previous.state === "blocked" && previous.screen === screen) return
        tracker.state = { state: "blocked", since: yield* Clock.currentTimeMillis, screen }
        const message = `${tracker.agent.profile.harness} shows a login, trust or onboarding screen: "${screen}"; nothing is typed until it shows its prompt`
        yield* events.publish("worker_error", { name: tracker.agent.name, code: "agent_blocked", message })
        yield* Effect.logWarning("agent blocked").pipe(Effect.annotateLogs({ screen }))
      })

    /** One look at the screen; `true` once the agent is ready (by its prompt, or the timeout). */
    const lookAtScreen = (tracker: Tracker, startedAt: number, limit: number) =>
      Effect.gen(function*() {
        if (tracker.state.state === "ready") return true
        const { profile, pty } = tracker.agent
        const view = yield* pty.screen
        if (profile.ready(view)) {
          yield* decide(tracker, "screen")
          return true
        }
        if (profile.blocked(view)) {
          yield* block(tracker, firstLine(view))
          return false
        }
        if (tracker.state.state === "blocked") tracker.state = { state: "starting", since: tracker.state.since }
        if ((yield* Clock.currentTimeMillis) - startedAt < limit) return false
        yield* decide(tracker, "timeout", `no ${profile.harness} prompt on screen within ${limit} ms: typing without a ready sign`)
        return true
      })

    /** Reads the screen until the harness's prompt shows; after the timeout, a TUI neither ready nor blocked is let through. */
    const watchScreen = (tracker: Tracker, startedAt: number) => {
      const limit = Duration.toMillis(options.timeout ?? tracker.agent.profile.timeout)
      return lookAtScreen(tracker, startedAt, limit).pipe(
        Effect.repeat({ schedule: screenWatch(screenPoll, limit), until: (ready) => ready })
      )
    }

    const track = (agent: TrackedAgent) =>
      Effect.gen(function*() {
        const startedAt = yield* Clock.currentTimeMillis
        const tracker: Tracker = {
          agent,
          ready: yield* Deferred.make<Ready>(),
          state: { state: "starting", since: startedAt }
        }
        yield* Ref.update(trackers, (current) => new Map(current).set(agent.name, tracker))
        yield* Effect.addFinalizer(() =>
          Ref.update(trackers, (current) => {
            if (current.get(agent.name) !== tracker) return current
            const next = new Map(current)
            next.delete(agent.name)
            return next
          })
        )
        const logged = Effect.annotateLogs({ module: "AgentReadiness", agent: agent.name, harness: agent.profile.harness })
        const start = agent.profile.kind === "line"
          ? decide(tracker, "immediate").pipe(logged)
          : watchScreen(tracker, startedAt).pipe(
            // Ends with the process (a blocked one would be watched for ever).
            Effect.raceFirst(agent.pty.exited),
            Effect.catchAllCause((cause) => Effect.logError("readiness watch stopped", cause)),
            logged,
            // Interruptible even when started from an uninterruptible region (the registry's spawn):
            // the race must be able to drop its loser, and the scope to stop the watch.
            Effect.interruptible,
            Effect.forkScoped,
            Effect.asVoid
          )
        const closed = Effect.flatMap(agent.pty.exited, () => Effect.fail(new PtyClosed({ pid: agent.pty.pid })))
        return {
          start,
          peek: () => tracker.state,
          awaitReady: Effect.raceFirst(Deferred.await(tracker.ready), closed)
        } satisfies ReadinessHandle
      })

    const signal = (name: string, source = "agent") =>
      Effect.gen(function*() {
        const tracker = (yield* Ref.get(trackers)).get(name)
        if (tracker === undefined) return yield* new UnknownWorker({ agent: name })
        yield* decide(tracker, "signal").pipe(
          Effect.annotateLogs({ module: "AgentReadiness", agent: name, signal_source: source })
        )
        return tracker.state
      })

    const get = (name: string) => Effect.map(Ref.get(trackers), (current) => Option.fromNullable(current.get(name)?.state))

    return AgentReadiness.of({ track, signal, get })
  })

export const make = makeWith()

export const layer: Layer.Layer<AgentReadiness, never, EventLog> = Layer.effect(AgentReadiness, make)

export const layerWith = (options: AgentReadinessOptions): Layer.Layer<AgentReadiness, never, EventLog> =>
  Layer.effect(AgentReadiness, makeWith(options))

/** The live layer with `RELAY_READY_TIMEOUT_MS` read from the environment. */
export const layerConfig: Layer.Layer<AgentReadiness, never, EventLog> = Layer.effect(
  AgentReadiness,
  Effect.flatMap(Effect.orDie(config), makeWith)
)

