import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Queue, TestClock } from "effect"
import * as Protocol from "../../src/broker/nodeProtocol.js"
import * as SidecarHandlers from "../../src/broker/SidecarHandlers.js"

// Routing an engine action to the fleet sidecar that registered it (control-api §3.6): the frame it
// gets, its answer as the result, and the two ways an invocation ends without an answer (timeout,
// disconnect), so it never hangs.

const link = Effect.gen(function*() {
  const frames = yield* Queue.unbounded<any>()
  return { frames, link: { send: (frame: string) => Queue.offer(frames, JSON.parse(frame)).pipe(Effect.asVoid) } }
})

const invocation = (id: string, action: string, input: any = { text: "hi" }) => ({ invocation_id: id, action, input })

describe("SidecarHandlers", () => {
  it.effect("sends invoke_handler to the sidecar that registered the action and returns its handler_result", () =>
    Effect.gen(function*() {
      const handlers = yield* SidecarHandlers.make
      const { frames, link: sidecarLink } = yield* link
      const sidecar = yield* handlers.connect(sidecarLink)
      yield* sidecar.registerNode({ name: "n1", capabilities: [{ name: "summarize", kind: "action", metadata: { v: 1 } }, { name: "spawn:cat", kind: "spawn" }] })
      yield* sidecar.registerHandlers(["summarize", "spawn:cat"])
      assert.deepStrictEqual(yield* handlers.capabilities, [
        { name: "summarize", kind: "action", metadata: { v: 1 } },
        { name: "spawn:cat", kind: "capacity" }
      ])

      assert.isTrue(Option.isNone(yield* handlers.invoke(invocation("inv_0", "deploy"))), "an action no sidecar registered is not routed")

      const running = yield* Effect.fork(handlers.invoke(invocation("inv_1", "summarize")))
      const frame = yield* Queue.take(frames)
      assert.deepStrictEqual(frame, { v: 2, type: "invoke_handler", payload: { invocation_id: "inv_1", name: "summarize", input: { text: "hi" } } })
      yield* sidecar.complete("inv_1", { output: { summary: "hi" } })
      assert.deepStrictEqual(yield* Fiber.join(running), Option.some({ output: { summary: "hi" } }))

      const failing = yield* Effect.fork(handlers.invoke(invocation("inv_2", "summarize")))
      yield* Queue.take(frames)
      yield* sidecar.complete("inv_2", { error: "boom" })
      assert.deepStrictEqual(yield* Fiber.join(failing), Option.some({ error: "boom" }))

      const late = yield* Effect.flip(sidecar.complete("inv_2", { output: null }))
      assert.strictEqual(late.code, "unknown_invocation")
    }))

  it.effect("an unanswered invocation ends with handler_timeout after the timeout, and a late answer is refused", () =>
    Effect.gen(function*() {
      const handlers = yield* SidecarHandlers.makeWith({ timeout: "10 seconds" })
      const { frames, link: sidecarLink } = yield* link
      const sidecar = yield* handlers.connect(sidecarLink)
      yield* sidecar.registerNode({ name: "slow-node", capabilities: [] })
      yield* sidecar.registerHandlers(["stall"])
      const running = yield* Effect.fork(handlers.invoke(invocation("inv_1", "stall")))
      yield* Queue.take(frames)
      yield* TestClock.adjust("9 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.poll(running)), "still waiting before the timeout")
      yield* TestClock.adjust("1 second")
      const outcome = yield* Fiber.join(running)
      assert.isTrue(Option.isSome(outcome))
      const error = (Option.getOrThrow(outcome) as { error: string }).error
      assert.match(error, /^handler_timeout: the fleet sidecar 'slow-node' did not answer 'stall' within 10s/)
      assert.strictEqual((yield* Effect.flip(sidecar.complete("inv_1", { output: 1 }))).code, "unknown_invocation")
    }))

  it.effect("a sidecar that disconnects fails its waiting invocations at once and its handlers are no longer routed or advertised", () =>
    Effect.gen(function*() {
      const handlers = yield* SidecarHandlers.make
      const { frames, link: sidecarLink } = yield* link
      const sidecar = yield* handlers.connect(sidecarLink)
      yield* sidecar.registerNode({ name: "gone", capabilities: [] })
      yield* sidecar.registerHandlers(["work"])
      const running = yield* Effect.fork(handlers.invoke(invocation("inv_1", "work")))
      yield* Queue.take(frames)
      yield* sidecar.close
      const outcome = Option.getOrThrow(yield* Fiber.join(running)) as { error: string }
      assert.match(outcome.error, /^handler_unavailable: the fleet sidecar 'gone' disconnected/)
      assert.isTrue(Option.isNone(yield* handlers.invoke(invocation("inv_2", "work"))))
      assert.deepStrictEqual(yield* handlers.capabilities, [])
    }))

  it.effect("the latest registration of a name answers it; when it leaves, the earlier sidecar does again", () =>
    Effect.gen(function*() {
      const handlers = yield* SidecarHandlers.make
      const first = yield* link
      const second = yield* link
      const one = yield* handlers.connect(first.link)
      yield* one.registerHandlers(["work"])
      const two = yield* handlers.connect(second.link)
      yield* two.registerHandlers(["work"])
      assert.deepStrictEqual((yield* handlers.capabilities).map((capability) => capability.name), ["work"])

      const toSecond = yield* Effect.fork(handlers.invoke(invocation("inv_1", "work")))
      assert.strictEqual((yield* Queue.take(second.frames)).payload.invocation_id, "inv_1")
      yield* two.complete("inv_1", { output: 2 })
      assert.deepStrictEqual(yield* Fiber.join(toSecond), Option.some({ output: 2 }))

      yield* two.close
      const toFirst = yield* Effect.fork(handlers.invoke(invocation("inv_2", "work")))
      assert.strictEqual((yield* Queue.take(first.frames)).payload.invocation_id, "inv_2")
      yield* one.complete("inv_2", { output: 1 })
      assert.deepStrictEqual(yield* Fiber.join(toFirst), Option.some({ output: 1 }))
    }))
})

describe("the node's advertised capabilities with sidecar handlers", () => {
  const base = { provider: { name: "broker", instance_id: "broker_x" }, spawn: [{ name: "spawn:claude" }] }
  const handlers = [{ name: "summarize", kind: "action" }, { name: "spawn:claude", kind: "capacity" }, { name: "spawn:cat", kind: "capacity" }]

  it("provider dialect: each handler once with its kind, beside the node's own capacities; handlers_live", () => {
    const manifest = { ...base, dialect: "provider" as const, handlers }
    assert.deepStrictEqual(Protocol.advertised(manifest), [
      { name: "spawn:claude", kind: "capacity" },
      { name: "summarize", kind: "action" },
      { name: "spawn:cat", kind: "capacity" },
      { name: "release", kind: "capacity" },
      { name: "relay:delivery-cursor-v1", kind: "capacity" }
    ])
    const heartbeat = Protocol.heartbeatFrame({ ...manifest, spawn: [] }, { id: "n", name: "n", version: "v", activeAgents: 0 })
    assert.isTrue((heartbeat as { handlers_live: boolean }).handlers_live)
  })

  it("v5 dialect: names only", () => {
    assert.deepStrictEqual(Protocol.advertised({ ...base, dialect: "v5", handlers }), [
      { name: "spawn:claude" },
      { name: "summarize" },
      { name: "spawn:cat" }
    ])
  })
})
