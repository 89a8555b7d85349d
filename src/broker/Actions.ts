import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import type { Json } from "../wire/Json.js"
import type { ActionInvoke, ActionResult } from "../wire/frames.js"
import { AgentRegistry, type SpawnSpec } from "./AgentRegistry.js"
import { NodeControl } from "./NodeControl.js"
import { SidecarHandlers } from "./SidecarHandlers.js"

// The engine's `action.invoke`: `spawn` / `spawn:<harness>` start an agent on this node, `release`
// stops one, an action a connected fleet sidecar registered goes to that sidecar (SidecarHandlers,
// before the built-in ones, as upstream routes it), anything else is unsupported. Every invocation gets exactly one `action.result`, and a
// repeated invocation id gets the recorded result again without running anything.

/** How many invocation results are remembered for idempotency (oldest forgotten first). */
export const recordCapacity = 1024

export class Actions extends Context.Tag("relay-broker/Actions")<Actions, {
  /**
   * Runs one invocation (or recalls its recorded result), replies `action.result` over NodeControl
   * and returns the frame it sent. Never fails: every failure becomes an `{error}` result.
   */
  readonly handle: (invoke: ActionInvoke) => Effect.Effect<ActionResult>
}>() {}

// ---------------------------------------------------------------------------------------------
// Reading the invocation's input

type Input = { readonly [key: string]: Json }

const asObject = (value: Json | undefined): Input | undefined =>
  value !== null && typeof value === "object" && !Array.isArray(value) ? value as Input : undefined

const trimmed = (value: Json | undefined): string | undefined =>
  typeof value === "string" && value.trim() !== "" ? value.trim() : undefined

/** The first non-empty string among `keys`, at the top of `input`, then under `input.agent` (upstream's lookup). */
const readString = (input: Input | undefined, keys: ReadonlyArray<string>): string | undefined => {
  const scopes = [input, asObject(input?.agent)]
  for (const scope of scopes) {
    for (const key of keys) {
      const value = trimmed(scope?.[key])
      if (value !== undefined) return value
    }
  }
  return undefined
}

const readStrings = (input: Input | undefined, key: string): ReadonlyArray<string> | undefined => {
  const value = input?.[key] ?? asObject(input?.agent)?.[key]
  return Array.isArray(value) && value.every((item) => typeof item === "string") ? value as ReadonlyArray<string> : undefined
}

const isSpawn = (action: string) => action === "spawn" || action.startsWith("spawn:")

/** `spawn:<harness>` → the harness, used as the CLI when the input names none. */
const harnessOf = (action: string): string | undefined =>
  action.startsWith("spawn:") && action.length > "spawn:".length ? action.slice("spawn:".length).trim() || undefined : undefined

/** The agent's name: the frame's `agent_name`, else `input.name` / `agent_name` / `agent`. */
export const agentNameOf = (invoke: ActionInvoke): string | undefined =>
  trimmed(invoke.agent_name) ?? readString(asObject(invoke.input), ["name", "agent_name", "agent"])

/** The spawn request an invocation describes, or the `{error}` code it earns. */
export const readSpawnRequest = (
  invoke: ActionInvoke
): { readonly _tag: "Spec"; readonly spec: SpawnSpec } | { readonly _tag: "Invalid"; readonly error: string } => {
  const input = asObject(invoke.input)
  const name = agentNameOf(invoke)
  if (name === undefined) return { _tag: "Invalid", error: "spawn_missing_agent_name: no agent name in the invocation" }
  const cli = readString(input, ["cli", "command", "provider"]) ?? harnessOf(invoke.action)
  if (cli === undefined) return { _tag: "Invalid", error: `spawn_missing_cli: no cli for agent '${name}'` }
  const task = readString(input, ["task", "initial_task", "prompt"])
  const cwd = readString(input, ["cwd"])
  const model = readString(input, ["model"])
  const team = readString(input, ["team"])
  const sessionRef = readString(input, ["session_ref", "sessionRef"])
  const args = readStrings(input, "args")
  const channel = readString(input, ["channel"])
  const channels = [...(readStrings(input, "channels") ?? []), ...(channel === undefined ? [] : [channel])]
  const spec: SpawnSpec = {
    name,
    cli,
    invocationId: invoke.invocation_id,
    ...(args === undefined ? {} : { args }),
    ...(task === undefined ? {} : { task }),
    ...(cwd === undefined ? {} : { cwd }),
    ...(model === undefined ? {} : { model }),
    ...(team === undefined ? {} : { team }),
    ...(sessionRef === undefined ? {} : { sessionRef }),
    ...(channels.length === 0 ? {} : { channels })
  }
  return { _tag: "Spec", spec }
}

// ---------------------------------------------------------------------------------------------

const succeeded = (invoke: ActionInvoke, output: Json): ActionResult => ({
  v: 1,
  type: "action.result",
  invocation_id: invoke.invocation_id,
  output
})

const failed = (invoke: ActionInvoke, error: string): ActionResult => ({
  v: 1,
  type: "action.result",
  invocation_id: invoke.invocation_id,
  error
})

export const make = Effect.gen(function*() {
  const registry = yield* AgentRegistry
  const node = yield* NodeControl
  const sidecars = yield* Effect.serviceOption(SidecarHandlers)
  // Insertion-ordered: the first keys are the oldest. In-flight invocations are here too, so a
  // repeat that arrives while the first run is still going waits for it instead of running again.
  const record = yield* Ref.make<ReadonlyMap<string, Deferred.Deferred<ActionResult>>>(new Map())

  const spawn = (invoke: ActionInvoke) => {
    const request = readSpawnRequest(invoke)
    if (request._tag === "Invalid") return Effect.succeed(failed(invoke, request.error))
    return registry.spawn(request.spec).pipe(
      Effect.map((agent) =>
        succeeded(invoke, { spawned: true, name: agent.name, agent_id: agent.agentId, pid: agent.pid })
      ),
      Effect.catchTags({
        InvalidAgentName: (error) => Effect.succeed(failed(invoke, `invalid_agent_name: ${error.message}`)),
        NameTaken: (error) => Effect.succeed(failed(invoke, `name_taken: ${error.message}`)),
        BindFailed: (error) => Effect.succeed(failed(invoke, `bind_failed: ${error.message}`)),
        SpawnFailed: (error) => Effect.succeed(failed(invoke, `spawn_failed: ${error.message}`))
      })
    )
  }

  const release = (invoke: ActionInvoke) => {
    const name = agentNameOf(invoke)
    if (name === undefined) {
      return Effect.succeed(failed(invoke, "release_missing_agent_name: no agent name in the invocation"))
    }
    return registry.release(name).pipe(
      Effect.as(succeeded(invoke, { released: true, name })),
      Effect.catchTag("UnknownWorker", () => Effect.succeed(failed(invoke, `unknown_agent: ${name}`)))
    )
  }

  const builtIn = (invoke: ActionInvoke): Effect.Effect<ActionResult> =>
    isSpawn(invoke.action)
      ? spawn(invoke)
      : invoke.action === "release"
      ? release(invoke)
      : Effect.succeed(failed(invoke, `unsupported_action: ${invoke.action}`))

  /** The sidecar that registered the action answers it; else the broker's own actions. */
  const routed = (invoke: ActionInvoke): Effect.Effect<ActionResult> =>
    Option.isNone(sidecars) ? builtIn(invoke) : sidecars.value.invoke(invoke).pipe(
      Effect.flatMap(Option.match({
        onNone: () => builtIn(invoke),
        onSome: (outcome) => Effect.succeed("error" in outcome ? failed(invoke, outcome.error) : succeeded(invoke, outcome.output))
      }))
    )

  const run = (invoke: ActionInvoke): Effect.Effect<ActionResult> => {
    const outcome = routed(invoke)
    // A defect must still answer the engine, or its invocation would hang until the dispatch timeout.
    return outcome.pipe(
      Effect.catchAllCause((cause) =>
        Effect.logError("action failed unexpectedly", Cause.pretty(cause)).pipe(
          Effect.as(failed(invoke, `${isSpawn(invoke.action) ? "spawn_failed" : "action_failed"}: internal error`))
        )
      )
    )
  }

  /** The recorded result of this invocation id, or a fresh slot this call must fill. */
  const claim = (invocationId: string, slot: Deferred.Deferred<ActionResult>) =>
    Ref.modify(record, (current): [Option.Option<Deferred.Deferred<ActionResult>>, ReadonlyMap<string, Deferred.Deferred<ActionResult>>] => {
      const known = current.get(invocationId)
      if (known !== undefined) return [Option.some(known), current]
      const next = new Map(current).set(invocationId, slot)
      for (const key of next.keys()) {
        if (next.size <= recordCapacity) break
        next.delete(key)
      }
      return [Option.none(), next]
    })

  const handle = Effect.fn("Actions.handle")(function*(invoke: ActionInvoke) {
    const slot = yield* Deferred.make<ActionResult>()
    const known = yield* claim(invoke.invocation_id, slot)
    const result = Option.isSome(known)
      ? yield* Deferred.await(known.value).pipe(
        Effect.tap(() => Effect.logInfo("repeated invocation: answering with the recorded result"))
      )
      : yield* run(invoke).pipe(
        Effect.tap((result) => Deferred.succeed(slot, result)),
        Effect.onInterrupt(() => Deferred.interrupt(slot))
      )
    yield* node.send(result)
    yield* Effect.logInfo("action.result sent").pipe(
      Effect.annotateLogs({ outcome: "error" in result ? result.error ?? "" : "ok" })
    )
    return result
  }, (effect, invoke) =>
    Effect.annotateLogs(effect, { module: "Actions", invocation: invoke.invocation_id, action: invoke.action }))

  return Actions.of({ handle })
})

/** The service plus its consumer: every `action.invoke` from NodeControl is handled concurrently. */
export const layer: Layer.Layer<Actions, never, AgentRegistry | NodeControl> = Layer.scoped(
  Actions,
  Effect.gen(function*() {
    const actions = yield* make
    const node = yield* NodeControl
    const fibers = yield* FiberSet.make()
    yield* node.invocations.pipe(
      Stream.runForEach((invoke) => FiberSet.run(fibers, actions.handle(invoke))),
      Effect.annotateLogs({ module: "Actions" }),
      Effect.forkScoped
    )
    return actions
  })
)
