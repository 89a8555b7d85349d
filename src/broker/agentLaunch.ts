import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Path from "node:path"
import type { AgentTools } from "../mcp/AgentTools.js"
import type { AgentReadiness } from "./AgentReadiness.js"
import type { Binding } from "./agentBinding.js"
import type { Entry } from "./agentEntry.js"
import type { SpawnSpec } from "./AgentRegistry.js"
import type { BrokerConfig } from "./BrokerConfig.js"
import type { EventLog } from "./EventLog.js"
import { resolveHarness } from "./harness.js"
import { type Keyboard, type Typed, typeProved } from "./KeyboardProof.js"
import { processTagEnv, type ProcessTree } from "./ProcessTree.js"
import type { InjectMode, Pty, PtyHost } from "./PtyHost.js"
import { readinessProfile } from "./readinessTable.js"

// Starting an agent's process: its harness and tools, its scope (which also reaps the processes it
// leaves behind), the terminal, readiness, the keyboard (every message waits for readiness and, in a
// TUI, shows on screen before Enter), the output pump and the task. AgentRegistry registers the result.

export interface LaunchServices {
  readonly config: BrokerConfig["Type"]
  readonly ptyHost: PtyHost["Type"]
  readonly readiness: AgentReadiness["Type"]
  readonly events: EventLog["Type"]
  /** The registry's scope: each agent's scope is forked from it. */
  readonly layerScope: Scope.Scope
  readonly processTree: Option.Option<ProcessTree["Type"]>
  readonly agentTools: Option.Option<AgentTools["Type"]>
  readonly childEnv: (spec: SpawnSpec, harness: ReturnType<typeof resolveHarness>, binding: Binding) => Record<string, string>
  readonly publishOutput: (entry: Entry) => Effect.Effect<void>
}

export const makeLauncher = (services: LaunchServices) => {
  const { agentTools, childEnv, config, events, layerScope, processTree, ptyHost, publishOutput, readiness } = services
  const now = Clock.currentTimeMillis

  // Every message, the task first, waits for the agent to be ready and, in a TUI, shows on its screen before Enter.
  const typeInto = (keyboard: Keyboard, text: string, mode: InjectMode) =>
    typeProved(keyboard, text, mode).pipe(
      Effect.tap((typed) => verified(keyboard.name, mode, typed))
    )

  const verified = (name: string, mode: InjectMode, typed: Typed) =>
    typed.verification === "none" || mode.delivery === undefined
      ? Effect.void
      : events.publish("delivery_verified", {
        name,
        delivery_id: mode.delivery.deliveryId,
        event_id: mode.delivery.eventId,
        verification: typed.verification,
        ...(typed.reason === undefined ? {} : { reason: typed.reason })
      })

  /** The tag for the agent's environment; the scope reaps what carries it after the terminal is gone. */
  const trackProcesses = (scope: Scope.Scope) =>
    Option.match(processTree, {
      onNone: () => Effect.succeed({}),
      onSome: (tree) =>
        Effect.gen(function*() {
          const tag = yield* tree.newTag
          // Added before the terminal, so it runs after the terminal was killed.
          yield* Scope.addFinalizer(scope, Effect.ignore(tree.reap(tag)))
          return { [processTagEnv]: tag }
        })
    })

  const launch = (spec: SpawnSpec, binding: Binding) =>
    Effect.gen(function*() {
      const harness = resolveHarness(spec)
      const cwd = Path.resolve(config.cwd, spec.cwd ?? ".")
      const baseEnv = childEnv(spec, harness, binding)
      const tools = Option.isNone(agentTools) ? undefined : yield* agentTools.value.prepare({
        name: spec.name,
        token: binding.token,
        command: harness.command,
        args: harness.args,
        cwd,
        env: baseEnv,
        ...(spec.resultSchema === undefined ? {} : { resultSchema: spec.resultSchema })
      })
      const args = [...(tools?.args ?? []), ...harness.args]
      const warning = [binding.warning, tools?.note].filter((part) => part !== undefined).join("; ")
      const scope = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
      const processTag = yield* trackProcesses(scope)
      const pty = yield* ptyHost.spawn({
        command: harness.command,
        args,
        cwd,
        env: { ...baseEnv, ...tools?.env, ...processTag }
      }).pipe(
        Scope.extend(scope),
        Effect.onError(() => Scope.close(scope, Exit.void))
      )
      if (tools !== undefined && Option.isSome(agentTools)) yield* agentTools.value.started(spec.name, pty.pid)
      const startedAt = yield* now
      const mode: InjectMode = { input: harness.injectInput, steer: false }
      const profile = readinessProfile(harness.command)
      const handle = yield* readiness.track({ name: spec.name, cli: spec.cli, pty, profile }).pipe(Scope.extend(scope))
      const keyboard: Keyboard = { name: spec.name, pty, profile, readiness: handle }
      // Messages wait until the task, when there is one, has been typed: it is the first message.
      const taskTyped = yield* Effect.makeLatch(spec.task === undefined)
      const activity = { at: startedAt, taskTyped: spec.task === undefined }
      const touch = Effect.map(now, (at) => (activity.at = at))
      const tracked: Pty = {
        ...pty,
        write: (data) => Effect.zipRight(touch, pty.write(data)),
        inject: (text, injectMode) =>
          taskTyped.whenOpen(Effect.zipRight(typeInto(keyboard, text, injectMode), Effect.asVoid(touch)))
      }
      const entry: Entry = {
        spec,
        binding,
        info: {
          name: spec.name,
          agentId: binding.agentId,
          cli: spec.cli,
          args,
          cwd,
          pid: pty.pid,
          startedAt,
          injectMode: harness.injectInput,
          ...(spec.model === undefined ? {} : { model: spec.model }),
          ...(spec.team === undefined ? {} : { team: spec.team }),
          ...(warning === "" ? {} : { warning })
        },
        pty: tracked,
        readiness: handle,
        token: binding.token,
        scope,
        ...(spec.invocationId === undefined ? {} : { invocationId: spec.invocationId }),
        ...(spec.sessionRef === undefined ? {} : { sessionRef: spec.sessionRef }),
        activity
      }
      entry.pump = yield* Effect.forkIn(Effect.interruptible(publishOutput(entry)), scope)
      if (spec.task !== undefined) {
        const task = spec.task
        yield* Effect.forkIn(
          Effect.interruptible(
            typeInto(keyboard, task, mode).pipe(
              Effect.zipRight(touch),
              Effect.catchAll((error) => Effect.logWarning("the task could not be typed", error))
            )
          ).pipe(
            Effect.ensuring(Effect.zipRight(Effect.sync(() => (activity.taskTyped = true)), taskTyped.open))
          ),
          scope
        )
      }
      return entry
    })

  return { launch }
}
