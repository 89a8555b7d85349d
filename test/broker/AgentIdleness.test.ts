import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Ref, TestClock } from "effect"
import * as AgentIdleness from "../../src/broker/AgentIdleness.js"
import { type AgentInfo, AgentRegistry, type LiveAgent } from "../../src/broker/AgentRegistry.js"
import * as EventLog from "../../src/broker/EventLog.js"
import { registryReads, runningAgentInfo } from "../support/brokerFakes.js"

// Idleness under the TestClock, over a fake registry whose agents' last activity the test sets.

const setup = Effect.gen(function*() {
  const agents = yield* Ref.make<ReadonlyMap<string, LiveAgent>>(new Map())
  const released = yield* Ref.make<ReadonlyArray<string>>([])
  const registry = Layer.succeed(AgentRegistry, AgentRegistry.of({
    ...registryReads(agents),
    spawn: () => Effect.die("not used"),
    release: (name: string) =>
      Effect.zipRight(
        Ref.update(released, (list) => [...list, name]),
        Ref.update(agents, (current) => {
          const next = new Map(current)
          next.delete(name)
          return next
        })
      )
  } as unknown as AgentRegistry["Type"]))
  const put = (info: AgentInfo) => Ref.update(agents, (current) => new Map(current).set(info.name, info as LiveAgent))
  return { registry, put, released, agents }
})

const idleEvents = Effect.flatMap(EventLog.EventLog, (log) =>
  Effect.map(log.recent, (events) => events.filter((event) => event.kind === "agent_idle")))

describe("AgentIdleness", () => {
  it.scoped("working while active, one agent_idle after the threshold, working again on output", () =>
    Effect.gen(function*() {
      const { put, registry } = yield* setup
      const context = yield* Layer.build(
        AgentIdleness.layerWith({ interval: "1 second", defaultThresholdSecs: 5 }).pipe(
          Layer.provideMerge(Layer.merge(registry, EventLog.layer))
        )
      )
      const idleness = yield* Effect.provide(AgentIdleness.AgentIdleness, context)
      const bob = { ...runningAgentInfo({ name: "bob", cli: "cat" }, 7), lastActivityAt: 0 }
      yield* put(bob)
      assert.strictEqual(yield* idleness.stateOf(bob), "working")
      yield* TestClock.adjust("4 seconds")
      assert.deepStrictEqual(yield* Effect.provide(idleEvents, context), [])
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* idleness.stateOf(bob), "idle")
      const [idle] = yield* Effect.provide(idleEvents, context)
      assert.strictEqual(idle?.name, "bob")
      assert.isAtLeast(idle?.idle_secs as number, 5)
      assert.strictEqual(idle?.since, new Date(0).toISOString())
      // Silence goes on: no second event for the same stretch.
      yield* TestClock.adjust("10 seconds")
      assert.lengthOf(yield* Effect.provide(idleEvents, context), 1)
      // Output at 16 s: working, then idle once more.
      const later = { ...bob, lastActivityAt: 16_000 }
      yield* put(later)
      assert.strictEqual(yield* idleness.stateOf(later), "working")
      yield* TestClock.adjust("6 seconds")
      assert.lengthOf(yield* Effect.provide(idleEvents, context), 2)
    }))

  it.scoped("task_exit / exitAfterTask release the agent when it goes idle; idleThresholdSecs is per agent", () =>
    Effect.gen(function*() {
      const { put, registry, released } = yield* setup
      const context = yield* Layer.build(
        AgentIdleness.layerWith({ interval: "1 second", defaultThresholdSecs: 120 }).pipe(
          Layer.provideMerge(Layer.merge(registry, EventLog.layer))
        )
      )
      const idleness = yield* Effect.provide(AgentIdleness.AgentIdleness, context)
      yield* put(runningAgentInfo({ name: "worker", cli: "cat" }, 8))
      yield* put(runningAgentInfo({ name: "helper", cli: "cat" }, 9))
      yield* put(runningAgentInfo({ name: "chatty", cli: "cat" }, 10))
      yield* idleness.configure("worker", { spawnMode: "task_exit", idleThresholdSecs: 3 })
      yield* idleness.configure("helper", { exitAfterTask: true, idleThresholdSecs: 3 })
      yield* idleness.configure("chatty", { idleThresholdSecs: 3 })
      yield* TestClock.adjust("4 seconds")
      assert.sameMembers([...(yield* Ref.get(released))], ["worker", "helper"])
    }))

  it.scoped("task_exit: silent before its task was typed is not done; idle after it is", () =>
    Effect.gen(function*() {
      const { put, registry, released } = yield* setup
      const context = yield* Layer.build(
        AgentIdleness.layerWith({ interval: "1 second", defaultThresholdSecs: 120 }).pipe(
          Layer.provideMerge(Layer.merge(registry, EventLog.layer))
        )
      )
      const idleness = yield* Effect.provide(AgentIdleness.AgentIdleness, context)
      const starting = { ...runningAgentInfo({ name: "slow", cli: "claude" }, 11), taskTyped: false }
      yield* put(starting)
      yield* idleness.configure("slow", { spawnMode: "task_exit", idleThresholdSecs: 2 })
      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual(yield* Ref.get(released), [])
      // The task typed at 5 s (activity), then silence: done.
      yield* put({ ...starting, taskTyped: true, lastActivityAt: 5_000 })
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Ref.get(released), [])
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual(yield* Ref.get(released), ["slow"])
    }))
})
