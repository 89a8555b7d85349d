import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import { AgentTools } from "../mcp/AgentTools.js"
import { AgentReadiness } from "./AgentReadiness.js"
import type { AgentInfo, LiveAgent, SpawnSpec } from "./agentShapes.js"
import { agentChildEnv, validateName } from "./agentEnv.js"
import { type Binding, makeAgentBinding } from "./agentBinding.js"
import { type Entry, type ReleaseOptions, type Restarting, type RestartingAgent, type State, without } from "./agentEntry.js"
import { makeLauncher } from "./agentLaunch.js"
import { makeOutputPublisher } from "./agentOutput.js"
import { AgentRoster } from "./AgentRoster.js"
import { AgentSupervisor, type RestartDecision } from "./AgentSupervisor.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { DeliveryBook } from "./DeliveryBook.js"
import { EngineClient } from "./EngineClient.js"
import {
  BindFailed,
  InvalidAgentName,
  NameTaken,
  type SpawnFailed,
  UnknownWorker
} from "./errors.js"
import { EventLog } from "./EventLog.js"
import { resolveHarness } from "./harness.js"
import { ProcessTree } from "./ProcessTree.js"
import { NodeControl } from "./NodeControl.js"
import { type Pty, type PtyExit, PtyHost } from "./PtyHost.js"

export class AgentRegistry extends Context.Tag("relay-broker/AgentRegistry")<AgentRegistry, {
  readonly spawn: (
    spec: SpawnSpec
  ) => Effect.Effect<AgentInfo, InvalidAgentName | NameTaken | BindFailed | SpawnFailed>
  /** Kill, `agent.deregister`, prune delivery state, announce. Releasing an agent that already exited succeeds. */
  readonly release: (name: string, options?: ReleaseOptions) => Effect.Effect<void, UnknownWorker>
  /** The agents whose process runs. */
  readonly list: Effect.Effect<ReadonlyArray<AgentInfo>>
  /** The agents waiting for a restart (AgentSupervisor): still bound, not running. */
  readonly restarting: Effect.Effect<ReadonlyArray<RestartingAgent>>
  readonly lookup: (name: string) => Effect.Effect<LiveAgent, UnknownWorker>
}>() {}

// ---------------------------------------------------------------------------------------------
// Live layer

export interface AgentRegistryOptions {
  /** The environment agents inherit (minus the broker's secrets). Default: `process.env`. */
  readonly baseEnv?: Readonly<Record<string, string | undefined>>
  /** `worker_stream` batching: a batch is published after this long, or at `streamFlushChars`. */
  readonly streamFlushInterval?: Duration.DurationInput
  readonly streamFlushChars?: number
  /** Exited agents remembered, so that releasing one succeeds. Default 1024. */
  readonly exitedCapacity?: number
}

export { brokerSecretEnv, validateName } from "./agentEnv.js"
export type { AgentInfo, LiveAgent, SpawnSpec } from "./agentShapes.js"
export type { ReleaseOptions, RestartingAgent } from "./agentEntry.js"

// The registry of agents this node runs: spawn (bind, launch, register), inject, exits, restarts,
// release. Binding: agentBinding.ts; names and the child's environment: agentEnv.ts; per-agent
// entry and state: agentEntry.ts; `worker_stream` batching: agentOutput.ts; starting the process,
// its keyboard and its task: agentLaunch.ts.

export const makeWith = (options: AgentRegistryOptions = {}) =>
  Effect.gen(function*() {
    const config = yield* BrokerConfig
    const nodeControl = yield* NodeControl
    const engine = yield* EngineClient
    const ptyHost = yield* PtyHost
    const roster = yield* AgentRoster
    const events = yield* EventLog
    const deliveryBook = yield* DeliveryBook
    const readiness = yield* AgentReadiness
    const layerScope = yield* Effect.scope
    const { bind, deregister } = makeAgentBinding({ config, nodeControl, engine })
    const childEnv = (spec: SpawnSpec, harness: ReturnType<typeof resolveHarness>, binding: Binding) =>
      agentChildEnv({ baseEnv: options.baseEnv ?? process.env, baseUrl: config.baseUrl }, spec, harness, binding)
    // When present, an agent's scope also ends the processes it left behind (detached helpers).
    const processTree = yield* Effect.serviceOption(ProcessTree)
    // The agent-relay MCP tools, when composed in (the daemon does): wiring, preflight, tokens.
    const agentTools = yield* Effect.serviceOption(AgentTools)
    // Restarts by policy, when composed in (the daemon does).
    const supervisor = yield* Effect.serviceOption(AgentSupervisor)

    const publishOutput = makeOutputPublisher({
      events,
      flushInterval: options.streamFlushInterval ?? "16 millis",
      flushChars: options.streamFlushChars ?? 4096
    })
    const exitedCapacity = options.exitedCapacity ?? 1024

    const state = yield* Ref.make<State>({ live: new Map(), starting: new Set(), exited: new Map(), restarting: new Map() })
    const watchers = yield* FiberSet.make<void>()
    let shuttingDown = false

    const now = Clock.currentTimeMillis
    const infoOf = (entry: Entry, status: AgentInfo["status"]): AgentInfo => ({
      ...entry.info,
      status,
      lastActivityAt: entry.activity.at,
      taskTyped: entry.activity.taskTyped,
      readiness: entry.readiness.peek()
    })

    // -- after the process ---------------------------------------------------------------------

    const cleanUp = (agent: { readonly name: string; readonly agentId: string }) =>
      Effect.gen(function*() {
        yield* deregister(agent.agentId, agent.name)
        yield* deliveryBook.forget({ name: agent.name, agentId: agent.agentId })
        if (Option.isSome(agentTools)) yield* agentTools.value.forget(agent.name)
        yield* roster.remove(agent.name)
        yield* nodeControl.announce
      })

    const decideRestart = (entry: Entry, exit: PtyExit, at: number): Effect.Effect<RestartDecision> =>
      Option.isNone(supervisor) ? Effect.succeed({ _tag: "Unsupervised" }) : supervisor.value.decide({
        name: entry.info.name,
        code: exit.code ?? null,
        signal: exit.signal ?? null,
        startedAt: entry.info.startedAt,
        endedAt: at
      }, entry.spec.restartPolicy)

    const onExit = (entry: Entry, exit: PtyExit) =>
      Effect.gen(function*() {
        if (shuttingDown) return
        const name = entry.info.name
        if ((yield* Ref.get(state)).live.get(name) !== entry) return
        const at = yield* now
        const decision = yield* decideRestart(entry, exit, at)
        const back = yield* Deferred.make<boolean>()
        const removed = yield* Ref.modify(state, (current): [boolean, State] => {
          if (current.live.get(name) !== entry) return [false, current]
          const info = { ...infoOf(entry, "exited"), lastActivityAt: Math.max(entry.activity.at, at) }
          const live = without(current.live, name)
          if (decision._tag === "Restart") {
            const restarting = new Map(current.restarting).set(name, {
              spec: entry.spec,
              binding: entry.binding,
              info,
              back,
              restartCount: decision.restartCount,
              restartAt: at + decision.delayMs
            })
            return [true, { ...current, live, restarting }]
          }
          const exited = new Map(without(current.exited, name))
          exited.set(name, info)
          while (exited.size > exitedCapacity) exited.delete(exited.keys().next().value!)
          return [true, { ...current, live, exited }]
        })
        // Released meanwhile: `release` does the rest.
        if (!removed) return
        // Let the last output reach the event log before the exit does.
        if (entry.pump !== undefined) yield* Effect.timeoutOption(Fiber.await(entry.pump), "1 second")
        yield* Scope.close(entry.scope, Exit.void)
        // A restart keeps the binding, the roster entry and the delivery cursor.
        if (decision._tag !== "Restart") yield* cleanUp(entry.info)
        yield* events.publish("agent_exited", { name, code: exit.code, signal: exit.signal })
        // Upstream's clients (harness-driver's waitForExit) also wait for `agent_exit {name, reason}`.
        yield* events.publish("agent_exit", {
          name,
          reason: exit.signal != null ? `signal ${exit.signal}` : `exit code ${exit.code}`
        })
        if (Option.isSome(supervisor)) yield* supervisor.value.carryOut(name, decision, relaunch(name))
        yield* Effect.logInfo("agent exited").pipe(
          Effect.annotateLogs({ agent: entry.info.name, code: exit.code, signal: exit.signal })
        )
      }).pipe(Effect.uninterruptible, Effect.annotateLogs({ module: "AgentRegistry" }))

    // -- spawn --------------------------------------------------------------------------------

    const { launch } = makeLauncher({
      config,
      ptyHost,
      readiness,
      events,
      layerScope,
      processTree,
      agentTools,
      childEnv,
      publishOutput
    })


    const spawn = Effect.fn("AgentRegistry.spawn")(function*(spec: SpawnSpec) {
      const name = yield* validateName(spec.name)
      const reserved = yield* Ref.modify(state, (current): [boolean, State] =>
        current.live.has(name) || current.starting.has(name) || current.restarting.has(name)
          ? [false, current]
          : [true, { ...current, starting: new Set(current.starting).add(name) }])
      if (!reserved) return yield* new NameTaken({ agent: name })
      const unreserve = Ref.update(state, (current) => {
        const starting = new Set(current.starting)
        starting.delete(name)
        return { ...current, starting }
      })
      return yield* Effect.gen(function*() {
        const binding = yield* bind(spec)
        // From here on the spawn runs to its end (an abandoned request must not leave an agent that
        // runs but is not registered); the fibers it forks are made interruptible again.
        return yield* Effect.uninterruptible(register(spec, binding))
      }).pipe(Effect.ensuring(unreserve))
    })

    const register = (spec: SpawnSpec, binding: Binding) =>
      Effect.gen(function*() {
        const name = spec.name
        const entry = yield* launch(spec, binding).pipe(
          // No process: undo the binding.
          Effect.onError(() => deregister(binding.agentId, name))
        )
        yield* Ref.update(state, (current) => ({
          ...current,
          live: new Map(current.live).set(name, entry),
          exited: without(current.exited, name)
        }))
        yield* FiberSet.run(watchers, Effect.interruptible(Effect.flatMap(entry.pty.exited, (exit) => onExit(entry, exit))))
        yield* roster.put({
          agent_id: binding.agentId,
          name,
          ...(spec.invocationId === undefined ? {} : { invocation_id: spec.invocationId }),
          ...(spec.sessionRef === undefined ? {} : { session_ref: spec.sessionRef })
        })
        yield* nodeControl.announce
        yield* events.publish("agent_spawned", {
          name,
          runtime: "pty",
          cli: spec.cli,
          agent_id: binding.agentId,
          pid: entry.info.pid,
          ...(spec.model === undefined ? {} : { model: spec.model }),
          ...(binding.warning === undefined ? {} : { registration_warning: binding.warning })
        })
        yield* entry.readiness.start.pipe(Scope.extend(entry.scope))
        yield* Effect.logInfo("agent spawned").pipe(
          Effect.annotateLogs({ module: "AgentRegistry", agent: name, pid: entry.info.pid, cli: spec.cli })
        )
        return infoOf(entry, "running")
      })

    // -- restart (AgentSupervisor runs it after the cooldown) -------------------------------------

    /** The agent as it was, with its binding: `false` when there is nothing to restart any more (released). */
    const relaunch = (name: string): Effect.Effect<boolean, SpawnFailed> =>
      Effect.gen(function*() {
        const pending = (yield* Ref.get(state)).restarting.get(name)
        if (pending === undefined || shuttingDown) return false
        // The task was typed into the first run; a restart does not type it again.
        const { task: _typedOnce, ...spec } = pending.spec
        const entry = yield* launch(spec, pending.binding).pipe(Effect.tapError(() => giveUp(name, pending)))
        yield* Ref.update(state, (current) => ({
          ...current,
          live: new Map(current.live).set(name, entry),
          restarting: without(current.restarting, name)
        }))
        yield* FiberSet.run(watchers, Effect.interruptible(Effect.flatMap(entry.pty.exited, (exit) => onExit(entry, exit))))
        yield* Deferred.succeed(pending.back, true)
        // Like a new agent: nothing is typed before it is ready.
        yield* entry.readiness.start.pipe(Scope.extend(entry.scope))
        yield* Effect.logInfo("agent restarted").pipe(
          Effect.annotateLogs({ module: "AgentRegistry", agent: name, pid: entry.info.pid })
        )
        return true
      }).pipe(Effect.uninterruptible)

    /** The restart failed: the agent is gone for good, unbound and its cursor dropped. */
    const giveUp = (name: string, pending: Restarting) =>
      Effect.gen(function*() {
        yield* Ref.update(state, (current) => ({
          ...current,
          restarting: without(current.restarting, name),
          exited: new Map(without(current.exited, name)).set(name, pending.info)
        }))
        yield* Deferred.succeed(pending.back, false)
        yield* cleanUp({ name, agentId: pending.binding.agentId })
      })

    const cancelRestart = (name: string) =>
      Option.isNone(supervisor) ? Effect.void : supervisor.value.cancel(name)

    // -- release, list, lookup ------------------------------------------------------------------

    /** The end of a released agent's process, reported as an exit (`ReleaseOptions.exitReason`). */
    const reportEnd = (name: string, pty: Pty, reason: string) =>
      Effect.gen(function*() {
        const exit = Option.getOrElse(yield* Effect.timeoutOption(pty.exited, "5 seconds"), (): PtyExit => ({ code: null, signal: null }))
        yield* events.publish("agent_exited", { name, code: exit.code, signal: exit.signal, reason })
        yield* events.publish("agent_exit", { name, reason })
      })

    const release = Effect.fn("AgentRegistry.release")(function*(name: string, options: ReleaseOptions = {}) {
      // A released agent is never restarted: a pending restart is interrupted (a relaunch under way is awaited).
      yield* cancelRestart(name)
      const found = yield* Ref.modify(state, (current): [Entry | Restarting | "exited" | undefined, State] => {
        const entry = current.live.get(name)
        if (entry !== undefined) return [entry, { ...current, live: without(current.live, name) }]
        const pending = current.restarting.get(name)
        if (pending !== undefined) return [pending, { ...current, restarting: without(current.restarting, name) }]
        if (current.exited.has(name)) return ["exited", { ...current, exited: without(current.exited, name) }]
        return [undefined, current]
      })
      if (found === undefined) return yield* new UnknownWorker({ agent: name })
      if (found === "exited") {
        // Nothing left to do.
      } else if ("back" in found) {
        // Its process exited by itself a moment ago (a cooldown may have started since the cancel above).
        yield* cancelRestart(name)
        yield* Deferred.succeed(found.back, false)
        yield* cleanUp({ name, agentId: found.binding.agentId })
      } else {
        // Closing the agent's scope kills its process (SIGTERM, grace, SIGKILL).
        yield* Scope.close(found.scope, Exit.void)
        yield* cleanUp(found.info)
        if (options.exitReason !== undefined) yield* reportEnd(name, found.pty, options.exitReason)
      }
      yield* events.publish("agent_released", { name })
      yield* Effect.logInfo("agent released").pipe(Effect.annotateLogs({ module: "AgentRegistry", agent: name }))
    })

    const list = Effect.gen(function*() {
      const current = yield* Ref.get(state)
      return [...current.live.values()].map((entry) => infoOf(entry, "running"))
    })

    const restarting = Effect.map(Ref.get(state), (current) =>
      [...current.restarting.values()].map((pending): RestartingAgent => ({
        info: pending.info,
        restartCount: pending.restartCount,
        restartAt: pending.restartAt
      })))

    const lookup = Effect.fn("AgentRegistry.lookup")(function*(name: string) {
      // An agent in its restart cooldown is waited for: a delivery reaches the new process, once.
      const pending = (yield* Ref.get(state)).restarting.get(name)
      if (pending !== undefined && !(yield* Deferred.await(pending.back))) return yield* new UnknownWorker({ agent: name })
      const entry = (yield* Ref.get(state)).live.get(name)
      if (entry === undefined) return yield* new UnknownWorker({ agent: name })
      return { ...infoOf(entry, "running"), pty: entry.pty, token: entry.token } satisfies LiveAgent
    })

    // No process outlives the registry: on shutdown every agent is killed (in parallel) and unbound.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        shuttingDown = true
        // No restart from here on; a relaunch under way finishes first, so its process is in `live`.
        yield* Effect.forEach((yield* Ref.get(state)).restarting.keys(), cancelRestart, { discard: true })
        const current = yield* Ref.getAndUpdate(state, (s) => ({ ...s, live: new Map(), restarting: new Map() }))
        yield* Effect.forEach(
          current.restarting,
          ([name, pending]) =>
            Effect.gen(function*() {
              yield* Deferred.succeed(pending.back, false)
              yield* deregister(pending.binding.agentId, name)
              yield* roster.remove(name)
            }),
          { discard: true }
        )
        yield* Effect.forEach(
          current.live.values(),
          (entry) =>
            Effect.gen(function*() {
              yield* Scope.close(entry.scope, Exit.void)
              yield* deregister(entry.info.agentId, entry.info.name)
              yield* roster.remove(entry.info.name)
            }),
          { concurrency: "unbounded", discard: true }
        )
      })
    )

    return AgentRegistry.of({ spawn, release, list, restarting, lookup })
  })

export const make = makeWith()

export const layer: Layer.Layer<
  AgentRegistry,
  never,
  BrokerConfig | NodeControl | EngineClient | PtyHost | AgentRoster | EventLog | DeliveryBook | AgentReadiness
> = Layer.scoped(AgentRegistry, make)

export const layerWith = (options: AgentRegistryOptions) => Layer.scoped(AgentRegistry, makeWith(options))

