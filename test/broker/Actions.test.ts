import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Queue, Ref, Stream } from "effect"
import * as Actions from "../../src/broker/Actions.js"
import { AgentRegistry, type SpawnSpec } from "../../src/broker/AgentRegistry.js"
import { BindFailed, NameTaken, SpawnFailed, UnknownWorker } from "../../src/broker/errors.js"
import { NodeControl } from "../../src/broker/NodeControl.js"
import type { ActionInvoke, ActionResult, NodeToServer } from "../../src/wire/frames.js"
import { runningAgentInfo } from "../support/brokerFakes.js"

const invoke = (fields: Partial<ActionInvoke> & { readonly invocation_id: string; readonly action: string }): ActionInvoke => ({
  v: 1,
  type: "action.invoke",
  input: {},
  ...fields
})

interface Harness {
  readonly spawned: Ref.Ref<ReadonlyArray<SpawnSpec>>
  readonly released: Ref.Ref<ReadonlyArray<string>>
  readonly sent: Ref.Ref<ReadonlyArray<NodeToServer>>
  readonly invocations: Queue.Queue<ActionInvoke>
}

/**
 * A registry that records calls: names in `live` can be released; spawning "taken" fails with
 * NameTaken, "unbindable" with BindFailed, cli "missing-cli" with SpawnFailed. `gate`, when given,
 * holds every spawn until it is opened.
 */
const makeHarness = (options: { readonly gate?: Deferred.Deferred<void> } = {}) =>
  Effect.gen(function*() {
    const spawned = yield* Ref.make<ReadonlyArray<SpawnSpec>>([])
    const released = yield* Ref.make<ReadonlyArray<string>>([])
    const sent = yield* Ref.make<ReadonlyArray<NodeToServer>>([])
    const invocations = yield* Queue.unbounded<ActionInvoke>()
    const registry = AgentRegistry.of({
      spawn: (spec) =>
        Effect.gen(function*() {
          yield* Ref.update(spawned, (all) => [...all, spec])
          if (options.gate) yield* Deferred.await(options.gate)
          if (spec.name === "taken") return yield* new NameTaken({ agent: spec.name })
          if (spec.name === "unbindable") {
            return yield* new BindFailed({ agent: spec.name, reason: "Rejected", detail: "engine said no" })
          }
          if (spec.cli === "missing-cli") {
            return yield* new SpawnFailed({ command: spec.cli, reason: "NotFound", detail: "not on PATH" })
          }
          return runningAgentInfo(spec, 4242)
        }),
      release: (name) =>
        name === "ghost"
          ? Effect.fail(new UnknownWorker({ agent: name }))
          : Ref.update(released, (all) => [...all, name]),
      list: Effect.succeed([]),
      restarting: Effect.succeed([]),
      lookup: (name) => Effect.fail(new UnknownWorker({ agent: name }))
    })
    const node = NodeControl.of({
      request: () => Effect.die("not used"),
      registerAgent: () => Effect.die("not used"),
      send: (frame) => Ref.update(sent, (all) => [...all, frame]),
      announce: Effect.void,
      deliveries: Stream.empty,
      invocations: Stream.fromQueue(invocations),
      inbound: Stream.empty,
      undecodableDeliveries: Stream.empty,
      status: Effect.die("not used")
    })
    const deps = Layer.mergeAll(Layer.succeed(AgentRegistry, registry), Layer.succeed(NodeControl, node))
    const harness: Harness = { spawned, released, sent, invocations }
    return { harness, deps }
  })

const withActions = <A, E>(
  body: (actions: Actions.Actions["Type"], harness: Harness) => Effect.Effect<A, E>,
  options: { readonly gate?: Deferred.Deferred<void> } = {}
) =>
  Effect.gen(function*() {
    const { harness, deps } = yield* makeHarness(options)
    const actions = yield* Actions.make.pipe(Effect.provide(deps))
    return yield* body(actions, harness)
  })

describe("Actions", () => {
  it.effect("spawn reads name, cli, task, cwd, args and model, and replies spawned:true with the pid", () =>
    withActions((actions, harness) =>
      Effect.gen(function*() {
        const result = yield* actions.handle(invoke({
          invocation_id: "inv_1",
          action: "spawn",
          input: { name: "worker-1", cli: "bash", task: "say hi", cwd: "/tmp", args: ["-l"], model: "m1" }
        }))
        assert.deepStrictEqual(result, {
          v: 1,
          type: "action.result",
          invocation_id: "inv_1",
          output: { spawned: true, name: "worker-1", agent_id: "agent_worker-1", pid: 4242 }
        })
        const [spec] = yield* Ref.get(harness.spawned)
        assert.strictEqual(spec?.name, "worker-1")
        assert.strictEqual(spec?.cli, "bash")
        assert.strictEqual(spec?.task, "say hi")
        assert.strictEqual(spec?.cwd, "/tmp")
        assert.deepStrictEqual(spec?.args, ["-l"])
        assert.strictEqual(spec?.model, "m1")
        assert.strictEqual(spec?.invocationId, "inv_1")
        assert.deepStrictEqual(yield* Ref.get(harness.sent), [result])
      })
    ))

  it.effect("the frame's agent_name wins; the spawn:<harness> suffix is the cli when the input names none", () =>
    withActions((actions, harness) =>
      Effect.gen(function*() {
        yield* actions.handle(invoke({
          invocation_id: "inv_2",
          action: "spawn:codex",
          agent_name: "from-frame",
          input: { name: "from-input", initial_task: "t" }
        }))
        const [spec] = yield* Ref.get(harness.spawned)
        assert.strictEqual(spec?.name, "from-frame")
        assert.strictEqual(spec?.cli, "codex")
        assert.strictEqual(spec?.task, "t")
      })
    ))

  it.effect("command / provider / prompt aliases and input.agent are read", () =>
    withActions((actions, harness) =>
      Effect.gen(function*() {
        yield* actions.handle(invoke({ invocation_id: "a", action: "spawn", input: { agent: "w1", command: "cat", prompt: "p" } }))
        yield* actions.handle(invoke({ invocation_id: "b", action: "spawn", input: { agent: { name: "w2", provider: "bash" } } }))
        const specs = yield* Ref.get(harness.spawned)
        assert.deepStrictEqual(specs.map((spec) => [spec.name, spec.cli, spec.task]), [["w1", "cat", "p"], ["w2", "bash", undefined]])
      })
    ))

  it.effect("a missing name or cli is an error and starts nothing", () =>
    withActions((actions, harness) =>
      Effect.gen(function*() {
        const noName = yield* actions.handle(invoke({ invocation_id: "n", action: "spawn", input: { cli: "bash" } }))
        const blankName = yield* actions.handle(invoke({ invocation_id: "b", action: "spawn", input: { name: "  ", cli: "bash" } }))
        const noCli = yield* actions.handle(invoke({ invocation_id: "c", action: "spawn", input: { name: "w" } }))
        assert.isTrue(noName.error?.startsWith("spawn_missing_agent_name: "))
        assert.isTrue(blankName.error?.startsWith("spawn_missing_agent_name: "))
        assert.isTrue(noCli.error?.startsWith("spawn_missing_cli: "))
        assert.deepStrictEqual(yield* Ref.get(harness.spawned), [])
        assert.strictEqual((yield* Ref.get(harness.sent)).length, 3)
      })
    ))

  it.effect("registry failures become coded errors", () =>
    withActions((actions) =>
      Effect.gen(function*() {
        const spawnAs = (id: string, name: string, cli = "bash") =>
          actions.handle(invoke({ invocation_id: id, action: "spawn", input: { name, cli } })).pipe(
            Effect.map((result) => result.error)
          )
        assert.match((yield* spawnAs("1", "taken")) ?? "", /^name_taken: /)
        assert.match((yield* spawnAs("2", "unbindable")) ?? "", /^bind_failed: .*engine said no/)
        assert.match((yield* spawnAs("3", "w", "missing-cli")) ?? "", /^spawn_failed: .*missing-cli/)
      })
    ))

  it.effect("release answers released:true, or unknown_agent for a name it does not know", () =>
    withActions((actions, harness) =>
      Effect.gen(function*() {
        const ok = yield* actions.handle(invoke({ invocation_id: "r1", action: "release", input: { name: "w1" } }))
        const unknown = yield* actions.handle(invoke({ invocation_id: "r2", action: "release", input: { name: "ghost" } }))
        const missing = yield* actions.handle(invoke({ invocation_id: "r3", action: "release", input: {} }))
        assert.deepStrictEqual(ok.output, { released: true, name: "w1" })
        assert.strictEqual(unknown.error, "unknown_agent: ghost")
        assert.isTrue(missing.error?.startsWith("release_missing_agent_name"))
        assert.deepStrictEqual(yield* Ref.get(harness.released), ["w1"])
      })
    ))

  it.effect("any other action is unsupported", () =>
    withActions((actions) =>
      Effect.gen(function*() {
        const result = yield* actions.handle(invoke({ invocation_id: "x", action: "review", input: { name: "w" } }))
        assert.strictEqual(result.error, "unsupported_action: review")
      })
    ))

  it.effect("a repeated invocation id gets the recorded result and starts nothing", () =>
    withActions((actions, harness) =>
      Effect.gen(function*() {
        const frame = invoke({ invocation_id: "inv_same", action: "spawn", input: { name: "w", cli: "bash" } })
        const first = yield* actions.handle(frame)
        const second = yield* actions.handle(frame)
        assert.deepStrictEqual(second, first)
        assert.strictEqual((yield* Ref.get(harness.spawned)).length, 1)
        assert.deepStrictEqual(yield* Ref.get(harness.sent), [first, first])
      })
    ))

  it.effect("a repeat that arrives while the first run is in flight waits for it instead of running again", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      yield* withActions((actions, harness) =>
        Effect.gen(function*() {
          const frame = invoke({ invocation_id: "inv_slow", action: "spawn", input: { name: "w", cli: "bash" } })
          const first = yield* Effect.fork(actions.handle(frame))
          const second = yield* Effect.fork(actions.handle(frame))
          yield* Effect.yieldNow()
          assert.strictEqual((yield* Ref.get(harness.spawned)).length, 1)
          yield* Deferred.succeed(gate, undefined)
          const [a, b] = [yield* first.await, yield* second.await]
          assert.deepStrictEqual(a, b)
          assert.strictEqual((yield* Ref.get(harness.spawned)).length, 1)
        }), { gate })
    }))

  it.effect("the record is bounded: the oldest invocation ids are forgotten", () =>
    withActions((actions, harness) =>
      Effect.gen(function*() {
        const release = (id: number) => invoke({ invocation_id: `inv_${id}`, action: "release", input: { name: "w" } })
        for (let id = 0; id <= Actions.recordCapacity; id++) yield* actions.handle(release(id))
        assert.strictEqual((yield* Ref.get(harness.released)).length, Actions.recordCapacity + 1)
        // inv_0 was evicted: it runs again. inv_1024 is remembered: it does not.
        yield* actions.handle(release(0))
        yield* actions.handle(release(Actions.recordCapacity))
        assert.strictEqual((yield* Ref.get(harness.released)).length, Actions.recordCapacity + 2)
      })
    ))

  it.effect("the layer answers every action.invoke that NodeControl receives", () =>
    Effect.gen(function*() {
      const { harness, deps } = yield* makeHarness()
      yield* Effect.gen(function*() {
        yield* Queue.offer(harness.invocations, invoke({ invocation_id: "i1", action: "release", input: { name: "w" } }))
        yield* Queue.offer(harness.invocations, invoke({ invocation_id: "i2", action: "nope" }))
        const sent = yield* Effect.yieldNow().pipe(
          Effect.zipRight(Ref.get(harness.sent)),
          Effect.repeat({ until: (frames) => frames.length === 2 })
        )
        const byId = new Map(sent.map((frame) => [(frame as ActionResult).invocation_id, frame as ActionResult]))
        assert.deepStrictEqual(byId.get("i1")?.output, { released: true, name: "w" })
        assert.strictEqual(byId.get("i2")?.error, "unsupported_action: nope")
      }).pipe(Effect.provide(Actions.layer.pipe(Layer.provide(deps))), Effect.scoped)
    }))

  it.effect("an unexpected defect still gets an answer", () =>
    Effect.gen(function*() {
      const { harness, deps } = yield* makeHarness()
      const dying = Layer.succeed(AgentRegistry, AgentRegistry.of({
        spawn: () => Effect.die(new Error("boom")),
        release: () => Effect.die(new Error("boom")),
        list: Effect.succeed([]),
        restarting: Effect.succeed([]),
        lookup: () => Effect.die("not used")
      }))
      const actions = yield* Actions.make.pipe(Effect.provide(Layer.merge(deps, dying)))
      const result = yield* actions.handle(invoke({ invocation_id: "d", action: "spawn", input: { name: "w", cli: "bash" } }))
      assert.strictEqual(result.error, "spawn_failed: internal error")
      assert.strictEqual((yield* Ref.get(harness.sent)).length, 1)
    }))
})
