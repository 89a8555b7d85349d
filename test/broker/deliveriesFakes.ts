// Test doubles for the delivery pipeline: a NodeControl fed from a queue that records acks, an
// AgentRegistry of fake agents whose terminals record what was injected, and a TokenStore.
import { Context, Deferred, Effect, Layer, Queue, Redacted, Ref, Stream } from "effect"
import { AgentRegistry, type LiveAgent } from "../../src/broker/AgentRegistry.js"
import * as DeadLetters from "../../src/broker/DeadLetters.js"
import * as Deliveries from "../../src/broker/Deliveries.js"
import * as DeliveryBook from "../../src/broker/DeliveryBook.js"
import { PtyClosed } from "../../src/broker/errors.js"
import * as EventLog from "../../src/broker/EventLog.js"
import { NodeControl, type UndecodableDelivery } from "../../src/broker/NodeControl.js"
import type { InjectMode, Pty } from "../../src/broker/PtyHost.js"
import { plainView } from "../../src/broker/TerminalScreen.js"
import { TokenStore } from "../../src/broker/TokenStore.js"
import type { Deliver, NodeToServer } from "../../src/wire/frames.js"
import type { Json } from "../../src/wire/Json.js"
import { connectedStatus, registryReads } from "../support/brokerFakes.js"

export interface Injection {
  readonly agent: string
  readonly pid: number
  readonly text: string
  readonly mode: InjectMode
}

/** A shared, ordered log of what happened (inject, persist, ack), to check the order of the steps. */
export type Step = `inject:${string}` | `persist:${string}` | `ack:${string}` | `deadletter:${string}`

export interface Harness {
  readonly frames: Queue.Queue<Deliver>
  /** What NodeControl salvages from `deliver` frames it cannot decode. */
  readonly undecodable: Queue.Queue<UndecodableDelivery>
  readonly acks: Queue.Queue<{ readonly agent: string; readonly up_to_seq: number }>
  readonly injections: Ref.Ref<ReadonlyArray<Injection>>
  /** Every call of a fake terminal's inject, failed ones included. */
  readonly attempts: Ref.Ref<number>
  readonly steps: Ref.Ref<ReadonlyArray<Step>>
  /** Adds (or replaces) a live agent; `failures` makes its next N injections fail with PtyClosed. */
  readonly addAgent: (
    name: string,
    options?: {
      readonly injectMode?: InjectMode["input"]
      readonly cli?: string
      readonly failures?: number
      /** Its next N injections die (a defect, not a PtyClosed). */
      readonly defects?: number
      readonly gate?: Deferred.Deferred<void>
      readonly status?: "running" | "exited"
    }
  ) => Effect.Effect<void>
  readonly removeAgent: (name: string) => Effect.Effect<void>
}

export class HarnessTag extends Context.Tag("test/DeliveriesHarness")<HarnessTag, Harness>() {}

let nextPid = 1000

const makeHarness = Effect.gen(function*() {
  const frames = yield* Queue.unbounded<Deliver>()
  const undecodable = yield* Queue.unbounded<UndecodableDelivery>()
  const acks = yield* Queue.unbounded<{ readonly agent: string; readonly up_to_seq: number }>()
  const injections = yield* Ref.make<ReadonlyArray<Injection>>([])
  const attempts = yield* Ref.make(0)
  const steps = yield* Ref.make<ReadonlyArray<Step>>([])
  const agents = yield* Ref.make<ReadonlyMap<string, LiveAgent>>(new Map())

  const addAgent: Harness["addAgent"] = (name, options) =>
    Effect.gen(function*() {
      const pid = nextPid++
      const failuresLeft = yield* Ref.make(options?.failures ?? 0)
      const defectsLeft = yield* Ref.make(options?.defects ?? 0)
      const pty: Pty = {
        pid,
        write: () => Effect.void,
        inject: (text, mode) =>
          Effect.gen(function*() {
            yield* Ref.update(attempts, (count) => count + 1)
            if (options?.gate !== undefined) yield* Deferred.await(options.gate)
            const failing = yield* Ref.modify(failuresLeft, (left) => [left > 0, Math.max(0, left - 1)])
            if (failing) return yield* new PtyClosed({ pid })
            const dying = yield* Ref.modify(defectsLeft, (left) => [left > 0, Math.max(0, left - 1)])
            if (dying) return yield* Effect.dieMessage(`injected defect in the terminal of ${name}`)
            yield* Ref.update(injections, (all) => [...all, { agent: name, pid, text, mode }])
            yield* Ref.update(steps, (all) => [...all, `inject:${name}` as const])
          }),
        resize: () => Effect.void,
        snapshot: Effect.succeed(""),
        screen: Effect.succeed(plainView("")),
        ansi: Effect.succeed(""),
        withKeyboard: (use) => use(() => Effect.void),
        output: Stream.empty,
        exited: Effect.never,
        kill: () => Effect.void
      }
      const agent: LiveAgent = {
        name,
        agentId: `agt_${name}`,
        cli: options?.cli ?? "node",
        args: [],
        cwd: "/tmp",
        pid,
        status: options?.status ?? "running",
        startedAt: 0,
        lastActivityAt: 0,
        injectMode: options?.injectMode ?? "type",
        pty,
        token: Redacted.make(`at_live_${name}`)
      }
      yield* Ref.update(agents, (current) => new Map(current).set(name, agent))
    })

  const removeAgent = (name: string) =>
    Ref.update(agents, (current) => {
      const next = new Map(current)
      next.delete(name)
      return next
    })

  const harness: Harness = { frames, undecodable, acks, injections, attempts, steps, addAgent, removeAgent }

  const node = NodeControl.of({
    request: () => Effect.die("not used"),
    registerAgent: () => Effect.die("not used"),
    send: (frame: NodeToServer) =>
      frame.type === "delivery.ack"
        ? Effect.zipRight(
          Ref.update(steps, (all) => [...all, `ack:${frame.agent}:${frame.up_to_seq}` as const]),
          Queue.offer(acks, { agent: frame.agent, up_to_seq: frame.up_to_seq })
        )
        : Effect.void,
    announce: Effect.void,
    deliveries: Stream.fromQueue(frames),
    undecodableDeliveries: Stream.fromQueue(undecodable),
    invocations: Stream.never,
    inbound: Stream.never,
    status: Effect.succeed(connectedStatus("test"))
  })

  const registry = AgentRegistry.of({
    spawn: () => Effect.die("not used"),
    release: () => Effect.die("not used"),
    ...registryReads(agents)
  })

  return { harness, node, registry, steps }
})

const tokens = Layer.succeed(TokenStore, TokenStore.of({
  identity: Effect.succeed({ nodeId: "node_test", nodeName: "test", workspaceId: "ws_test" }),
  token: Effect.succeed(Redacted.make("nt_test")),
  remint: Effect.succeed(Redacted.make("nt_test"))
}))

/** A book whose writes are logged as `persist:<agent>:<seq>` steps, over any storage. */
const loggingBook = (steps: Ref.Ref<ReadonlyArray<Step>>, storage: DeliveryBook.BookStorage) =>
  Layer.scoped(
    DeliveryBook.DeliveryBook,
    DeliveryBook.make({
      ...storage,
      write: (cursor) =>
        Effect.zipRight(
          storage.write(cursor),
          Ref.update(steps, (all) => [...all, `persist:${cursor.name}:${cursor.upToSeq ?? 0}` as const])
        )
    })
  )

/**
 * Deliveries with fakes around it; the harness, DeliveryBook, DeadLetters and EventLog are
 * exposed to the test. `storage` defaults to memory.
 */
export const testLayer = (
  options?: Partial<Deliveries.DeliveriesOptions>,
  storage: DeliveryBook.BookStorage = DeliveryBook.memoryStorage,
  /** Wraps the book's methods (to inject faults the store cannot produce). */
  wrapBook: (book: DeliveryBook.DeliveryBook["Type"]) => DeliveryBook.DeliveryBook["Type"] = (book) => book,
  /** Wraps the dead-letter store's methods (a store that fails). */
  wrapDeadLetters: (letters: DeadLetters.DeadLetters["Type"]) => DeadLetters.DeadLetters["Type"] = (letters) => letters
) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const { harness, node, registry, steps } = yield* makeHarness
    const book = Layer.map(loggingBook(steps, storage), (context) =>
      Context.add(context, DeliveryBook.DeliveryBook, wrapBook(Context.get(context, DeliveryBook.DeliveryBook))))
    const base = Layer.mergeAll(
      Layer.succeed(HarnessTag, harness),
      Layer.succeed(NodeControl, node),
      Layer.succeed(AgentRegistry, registry),
      book,
      Layer.map(DeadLetters.layerMemory, (context) =>
        Context.add(context, DeadLetters.DeadLetters, wrapDeadLetters(Context.get(context, DeadLetters.DeadLetters)))),
      EventLog.layer,
      tokens,
      Deliveries.configLayer(options)
    )
    return Deliveries.layer.pipe(Layer.provideMerge(base))
  }))

export const deliver = (
  agent: string,
  seq: number,
  payload: Json = { type: "dm.received", data: { text: `message ${seq}`, agent_name: "alice" } },
  overrides?: Partial<Deliver>
): Deliver => ({
  v: 1,
  type: "deliver",
  agent,
  agent_id: `agt_${agent}`,
  delivery_id: `del_${agent}_${seq}`,
  msg_id: `msg_${agent}_${seq}`,
  seq,
  mode: "wait",
  payload,
  ...overrides
})

/** Lets the forked fibers run until `check` holds (bounded, so a broken pipeline fails the test). */
export const eventually = <A, R>(effect: Effect.Effect<A, never, R>, check: (value: A) => boolean, label = "condition") =>
  Effect.gen(function*() {
    for (let i = 0; i < 5000; i++) {
      const value = yield* effect
      if (check(value)) return value
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage(`timed out waiting for ${label}`)
  })

export const takeAck = (harness: Harness) => Queue.take(harness.acks)

export const noneLeft = <A>(queue: Queue.Queue<A>) => Effect.map(Queue.size(queue), (size) => size === 0)

