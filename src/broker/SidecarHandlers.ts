import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { FleetCapability } from "../wire/frames.js"
import type { Json, JsonObject } from "../wire/Json.js"

// The action handlers of connected fleet sidecars (agent-relay 9.1.6, control-api §3.6). A sidecar
// on `/api/fleet/ws` registers handler names; the node advertises them to the engine, and an
// engine `action.invoke` for one of them is sent to that sidecar as `invoke_handler
// {invocation_id, name, input}`. Its `handler_result {invocation_id, output|error}` is the action's
// result. A sidecar that does not answer within the timeout, or disconnects first, ends the
// invocation with a clear `{error}`: an invocation never hangs.

/** An invocation's end, as `action.result` carries it: exactly one of `output` or `error`. */
export type HandlerOutcome = { readonly output: Json } | { readonly error: string }

/** What the route needs to reach one connected sidecar. */
export interface SidecarLink {
  /** Writes one frame to the sidecar's socket. */
  readonly send: (frame: string) => Effect.Effect<void>
}

export interface Sidecar {
  /** `register_node {manifest}`: the node's name and its capabilities (their kinds and metadata). */
  readonly registerNode: (manifest: { readonly name: string; readonly capabilities: ReadonlyArray<FleetCapability> }) => Effect.Effect<void>
  /** `register_handlers {names}`: the handler names this sidecar answers (replaces the previous list). */
  readonly registerHandlers: (names: ReadonlyArray<string>) => Effect.Effect<void>
  /** `handler_result`: fails with the upstream error code when no invocation of this sidecar is waiting. */
  readonly complete: (invocationId: string, outcome: HandlerOutcome) => Effect.Effect<void, HandlerResultRefused>
  /** The connection ended: its handlers go, its waiting invocations fail at once. */
  readonly close: Effect.Effect<void>
}

export class HandlerResultRefused extends Error {
  readonly code = "unknown_invocation"
  constructor(invocationId: string) {
    super(`handler_result did not match an in-flight invocation (${invocationId})`)
  }
}

export class SidecarHandlers extends Context.Tag("relay-broker/SidecarHandlers")<SidecarHandlers, {
  /** A new sidecar connection; `close` it when the socket ends. */
  readonly connect: (link: SidecarLink) => Effect.Effect<Sidecar>
  /** Runs the action on the sidecar that registered it, or None when no connected sidecar did. */
  readonly invoke: (
    invocation: { readonly invocation_id: string; readonly action: string; readonly input: Json }
  ) => Effect.Effect<Option.Option<HandlerOutcome>>
  /** The capabilities the node advertises for the connected sidecars' handlers, current and changes. */
  readonly capabilities: Effect.Effect<ReadonlyArray<FleetCapability>>
  readonly capabilityChanges: Stream.Stream<ReadonlyArray<FleetCapability>>
}>() {}

export interface SidecarHandlersOptions {
  /** How long a sidecar has to answer an `invoke_handler`. Default 25 s (below the engine's 30 s dispatch timeout). */
  readonly timeout?: Duration.DurationInput
}

interface Entry {
  readonly id: number
  readonly link: SidecarLink
  readonly node: string
  readonly manifest: ReadonlyArray<FleetCapability>
  readonly handlers: ReadonlyArray<string>
  /** Invocations sent to this sidecar and not answered yet. */
  readonly waiting: Map<string, Deferred.Deferred<HandlerOutcome>>
}

const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** One capability per handler name: the manifest's kind and metadata when it has the name (a fleet `spawn` kind is a capacity). */
const advertisedFor = (entry: Entry): ReadonlyArray<FleetCapability> =>
  entry.handlers.map((name) => {
    const declared = entry.manifest.find((capability) => capability.name === name)
    const kind = declared?.kind === "action" || declared?.kind === "capacity"
      ? declared.kind
      : declared?.kind === "spawn" ? "capacity" : undefined
    return {
      name,
      ...(kind === undefined ? {} : { kind }),
      ...(declared?.metadata !== undefined && isObject(declared.metadata) ? { metadata: declared.metadata } : {})
    }
  })

export const makeWith = (options: SidecarHandlersOptions = {}) =>
  Effect.gen(function*() {
    const timeout = Duration.decode(options.timeout ?? "25 seconds")
    // Connection order: the most recent registration of a name answers it.
    const entries = yield* Ref.make<ReadonlyArray<Entry>>([])
    const advertised = yield* SubscriptionRef.make<ReadonlyArray<FleetCapability>>([])
    let nextId = 0

    const readvertise = Effect.gen(function*() {
      const seen = new Set<string>()
      const capabilities: Array<FleetCapability> = []
      for (const entry of [...(yield* Ref.get(entries))].reverse()) {
        for (const capability of advertisedFor(entry)) {
          if (seen.has(capability.name)) continue
          seen.add(capability.name)
          capabilities.push(capability)
        }
      }
      yield* SubscriptionRef.set(advertised, capabilities)
    })

    const update = (id: number, change: (entry: Entry) => Entry) =>
      Ref.update(entries, (all) => all.map((entry) => entry.id === id ? change(entry) : entry))

    const connect = (link: SidecarLink) =>
      Effect.gen(function*() {
        const id = nextId++
        const waiting = new Map<string, Deferred.Deferred<HandlerOutcome>>()
        yield* Ref.update(entries, (all) => [...all, { id, link, node: "local-node", manifest: [], handlers: [], waiting }])
        const sidecar: Sidecar = {
          registerNode: (manifest) =>
            update(id, (entry) => ({ ...entry, node: manifest.name, manifest: manifest.capabilities })).pipe(
              Effect.zipRight(readvertise)
            ),
          registerHandlers: (names) =>
            update(id, (entry) => ({ ...entry, handlers: [...new Set(names)] })).pipe(Effect.zipRight(readvertise)),
          complete: (invocationId, outcome) =>
            Effect.gen(function*() {
              const deferred = waiting.get(invocationId)
              if (deferred === undefined) return yield* Effect.fail(new HandlerResultRefused(invocationId))
              waiting.delete(invocationId)
              yield* Deferred.succeed(deferred, outcome)
            }),
          close: Effect.gen(function*() {
            const entry = (yield* Ref.get(entries)).find((candidate) => candidate.id === id)
            yield* Ref.update(entries, (all) => all.filter((candidate) => candidate.id !== id))
            for (const [invocationId, deferred] of waiting) {
              yield* Deferred.succeed(deferred, {
                error: `handler_unavailable: the fleet sidecar '${entry?.node ?? "local-node"}' disconnected before answering invocation ${invocationId}`
              })
            }
            waiting.clear()
            yield* readvertise
          })
        }
        return sidecar
      })

    const invoke = (invocation: { readonly invocation_id: string; readonly action: string; readonly input: Json }) =>
      Effect.gen(function*() {
        const handler = [...(yield* Ref.get(entries))].reverse().find((entry) => entry.handlers.includes(invocation.action))
        if (handler === undefined) return Option.none<HandlerOutcome>()
        const deferred = yield* Deferred.make<HandlerOutcome>()
        handler.waiting.set(invocation.invocation_id, deferred)
        yield* handler.link.send(JSON.stringify({
          v: 2,
          type: "invoke_handler",
          payload: { invocation_id: invocation.invocation_id, name: invocation.action, input: invocation.input }
        }))
        const outcome = yield* Deferred.await(deferred).pipe(
          Effect.timeoutTo({
            duration: timeout,
            onSuccess: (outcome): HandlerOutcome => outcome,
            onTimeout: (): HandlerOutcome => ({
              error: `handler_timeout: the fleet sidecar '${handler.node}' did not answer '${invocation.action}' within ${
                Duration.format(timeout)
              }`
            })
          }),
          Effect.ensuring(Effect.sync(() => handler.waiting.delete(invocation.invocation_id)))
        )
        return Option.some(outcome)
      }).pipe(Effect.annotateLogs({ module: "SidecarHandlers", invocation: invocation.invocation_id }))

    return SidecarHandlers.of({
      connect,
      invoke,
      capabilities: SubscriptionRef.get(advertised),
      capabilityChanges: advertised.changes
    })
  })

export const make = makeWith()

export const layer: Layer.Layer<SidecarHandlers> = Layer.effect(SidecarHandlers, make)

export const layerWith = (options: SidecarHandlersOptions): Layer.Layer<SidecarHandlers> =>
  Layer.effect(SidecarHandlers, makeWith(options))
