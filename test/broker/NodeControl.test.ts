import { assert, describe, it } from "@effect/vitest"
import {
  Chunk,
  Clock,
  Context,
  Effect,
  Exit,
  Fiber,
  Layer,
  Logger,
  Metric,
  Option,
  Queue,
  Redacted,
  Ref,
  Schedule,
  Scope,
  Stream,
  TestClock
} from "effect"
import { AgentRoster, layer as rosterLayer } from "../../src/broker/AgentRoster.js"
import * as BrokerConfig from "../../src/broker/BrokerConfig.js"
import { MintFailed } from "../../src/broker/errors.js"
import * as DeliveryBook from "../../src/broker/DeliveryBook.js"
import * as NodeControl from "../../src/broker/NodeControl.js"
import { type NodeIdentity, TokenStore } from "../../src/broker/TokenStore.js"
import { eventually } from "../support/polling.js"
import * as ScriptedNodeServer from "../support/scriptedNodeServer.js"

// Set-up: a fixed identity, a TokenStore double that counts remints, a log capture, and the layer
// built in the test's scope. The peer is the scripted server, so every fault is on demand.

const identity: NodeIdentity = { nodeId: "node_0123456789abcdef0123456789abcdef", nodeName: "laptop", workspaceId: "ws_1" }

const configFor = (baseUrl: string, overrides: Partial<BrokerConfig.BrokerConfigShape> = {}): BrokerConfig.BrokerConfigShape => ({
  baseUrl,
  workspaceKey: Redacted.make("rk_live_test"),
  nodeToken: undefined,
  nodeName: identity.nodeName,
  stateDir: "/nonexistent/state",
  dataDir: "/nonexistent/data",
  cwd: "/",
  brokerApiKey: Redacted.make("br_test"),
  apiBind: "127.0.0.1",
  apiPort: 0,
  // Real time: 1 s heartbeats make the 4-heartbeat idle limit 4 s, which a stalled machine does not reach.
  heartbeatInterval: 1_000,
  requestTimeout: 2_000,
  version: "9.9.9",
  ...overrides
})

interface LogLine {
  readonly level: string
  readonly message: string
}

interface StartOptions {
  readonly config?: Partial<BrokerConfig.BrokerConfigShape>
  readonly options?: NodeControl.NodeControlOptions
  /** Calls to `token` that fail (MintFailed) before it succeeds. Default 0. */
  readonly failingTokenCalls?: number
}

const startNode = (baseUrl: string, start: StartOptions = {}) =>
  Effect.gen(function*() {
    const remints = yield* Ref.make(0)
    const tokenCalls = yield* Ref.make(0)
    const logs: Array<LogLine> = []
    const tokens = Layer.succeed(
      TokenStore,
      TokenStore.of({
        identity: Effect.succeed(identity),
        token: Effect.gen(function*() {
          const call = yield* Ref.updateAndGet(tokenCalls, (n) => n + 1)
          if (call <= (start.failingTokenCalls ?? 0)) {
            return yield* new MintFailed({ status: 503, reason: "ServerError", body: "POST /v1/nodes: busy" })
          }
          return Redacted.make(`nt_live_${yield* Ref.get(remints)}`)
        }),
        remint: Effect.map(Ref.updateAndGet(remints, (n) => n + 1), (n) => Redacted.make(`nt_live_${n}`))
      })
    )
    const capture = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ logLevel, message }) => {
        logs.push({ level: logLevel.label, message: (Array.isArray(message) ? message : [message]).map(String).join(" ") })
      })
    )
    const deps = Layer.mergeAll(rosterLayer, tokens, BrokerConfig.layer(configFor(baseUrl, start.config)), DeliveryBook.layerMemory)
    const context = yield* Layer.build(
      NodeControl.layerWith(start.options ?? {}).pipe(Layer.provideMerge(deps))
    ).pipe(Effect.provide(capture))
    return {
      node: Context.get(context, NodeControl.NodeControl),
      roster: Context.get(context, AgentRoster),
      book: Context.get(context, DeliveryBook.DeliveryBook),
      /** Runs an effect of the test's own fiber with the log capture. */
      withLogs: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, capture),
      remints,
      tokenCalls,
      logs
    }
  })

const fast: NodeControl.NodeControlOptions = { reconnectSchedule: Schedule.spaced("20 millis") }

type Frame = ScriptedNodeServer.Frame
const { nextOfType } = ScriptedNodeServer

/** The bootstrap frames of a fresh connection, checked for order. */
const expectBootstrap = (connection: ScriptedNodeServer.ScriptedConnection) =>
  Effect.gen(function*() {
    const register = yield* connection.next
    const inventory = yield* connection.next
    const heartbeat = yield* connection.next
    assert.deepStrictEqual([register.type, inventory.type, heartbeat.type], ["node.register", "inventory.sync", "node.heartbeat"])
    return { register, inventory, heartbeat }
  })

/** A scripted engine and a node connected to it, past the bootstrap frames. */
const connectedNode = (start: StartOptions = { options: fast }) =>
  Effect.gen(function*() {
    const server = yield* ScriptedNodeServer.make
    const started = yield* startNode(server.baseUrl, start)
    const connection = yield* Queue.take(server.connections)
    const bootstrap = yield* expectBootstrap(connection)
    return { ...started, server, connection, bootstrap }
  })

const deliver = (seq: number, agent = "worker-1"): Frame => ({
  v: 1,
  type: "deliver",
  agent,
  agent_id: `id-${agent}`,
  delivery_id: `d-${seq}`,
  msg_id: `m-${seq}`,
  seq,
  mode: "wait",
  payload: { type: "message.created", data: { text: `hello ${seq}` } }
})

const skippedCount = (kind: string) =>
  Effect.map(Metric.value(Metric.tagged(NodeControl.skippedFrames, "kind", kind)), (state) => state.count)

/**
 * Waits until the loop counted `reconnects` and sleeps in its backoff; that sleep's delay. (The
 * heartbeat interval, 600 s in these tests, is the other sleep that may be pending.)
 */
const backoffSleep = (node: NodeControl.NodeControl["Type"], reconnects: number) =>
  Effect.gen(function*() {
    const backoffs = Effect.zipWith(TestClock.sleeps(), Clock.currentTimeMillis, (sleeps, now) =>
      Chunk.toReadonlyArray(sleeps).map((wake) => wake - now).filter((delay) => delay < 100_000))
    yield* eventually(
      `reconnect ${reconnects} sleeping in backoff`,
      Effect.zipWith(node.status, backoffs, (status, delays) => status.reconnects === reconnects && delays.length === 1)
    )
    return (yield* backoffs)[0]!
  })

describe("NodeControl (scripted server)", () => {
  it.scoped("401 on every upgrade: exactly 5 remints, one loud error, and backoff between all attempts", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      yield* server.setUpgradeStatus(() => 401)
      const { logs, node, remints } = yield* startNode(server.baseUrl)
      const delays: Array<number> = []
      for (let attempt = 1; attempt <= 9; attempt++) {
        const upgrade = yield* Queue.take(server.upgrades)
        // Every attempt carries the newest token: the one minted after the previous 401.
        assert.strictEqual(upgrade.authorization, `Bearer nt_live_${Math.min(attempt - 1, 5)}`)
        assert.strictEqual(upgrade.path, "/v1/node/ws")
        yield* eventually("the loop sleeps in backoff", Effect.map(TestClock.sleeps(), (sleeps) => Chunk.size(sleeps) === 1))
        assert.strictEqual(yield* Ref.get(remints), Math.min(attempt, 5))
        assert.strictEqual((yield* node.status).remints, Math.min(attempt, 5))
        assert.strictEqual((yield* node.status).reconnects, attempt)
        // Nothing happens until the clock moves.
        assert.strictEqual(yield* server.upgradeCount, attempt)
        const wake = Chunk.unsafeHead(yield* TestClock.sleeps())
        const delay = wake - (yield* Clock.currentTimeMillis)
        delays.push(delay)
        yield* TestClock.adjust(delay)
      }
      const loud = logs.filter((line) => line.level === "ERROR" && line.message.includes("NODE TOKEN REJECTED"))
      assert.strictEqual(loud.length, 1)
      const status = yield* node.status
      assert.isFalse(status.connected)
      assert.include(status.lastError ?? "", "401")
      // Exponential from 1 s (jittered 0.8–1.2), capped at 30 s (jittered up to 36 s).
      assert.isTrue(delays[0]! >= 800 && delays[0]! <= 1_200, `first delay ${delays[0]}`)
      for (let i = 1; i < 5; i++) assert.isTrue(delays[i]! > delays[i - 1]!, `delays grow: ${delays}`)
      for (const delay of delays) assert.isTrue(delay <= 36_000, `capped: ${delays}`)
    }))

  it.scoped("the reconnect backoff grows while sessions fail at once and starts over after a healthy session", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      const { node } = yield* startNode(server.baseUrl, {
        // No heartbeat or idle check within the test's clock moves; no jitter, so the delays are exact.
        config: { heartbeatInterval: 600_000 },
        options: { reconnectSchedule: Schedule.exponential("1 second", 2), healthyAfter: "5 seconds" }
      })
      /** Takes the next connection, keeps it for `kept` ms of test time, closes it, and returns the backoff delay. */
      const sessionThenDelay = (kept: number, reconnects: number) =>
        Effect.gen(function*() {
          const connection = yield* Queue.take(server.connections)
          yield* expectBootstrap(connection)
          if (kept > 0) yield* TestClock.adjust(kept)
          yield* connection.close(1011, "bye")
          const delay = yield* backoffSleep(node, reconnects)
          yield* TestClock.adjust(delay)
          return delay
        })
      const delays: Array<number> = []
      for (const [index, kept] of [0, 0, 0, 6_000, 0].entries()) delays.push(yield* sessionThenDelay(kept, index + 1))
      // 1, 2, 4 s while sessions die at once; the 6 s session was healthy: back to 1 s, then 2 s.
      assert.deepStrictEqual(delays, [1_000, 2_000, 4_000, 1_000, 2_000])
    }))

  it.scoped("the 401 re-mint budget starts over after a connection that succeeded", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      // Two 401s, one accepted connection, then 401s for good.
      yield* server.setUpgradeStatus((attempt) => attempt === 3 ? 101 : 401)
      const { node, remints } = yield* startNode(server.baseUrl, {
        config: { heartbeatInterval: 600_000 },
        options: { reconnectSchedule: Schedule.spaced("1 second") }
      })
      const step = (reconnects: number) =>
        Effect.zipRight(backoffSleep(node, reconnects), TestClock.adjust("1 second"))
      for (let attempt = 1; attempt <= 2; attempt++) {
        yield* Queue.take(server.upgrades)
        yield* step(attempt)
      }
      assert.strictEqual(yield* Ref.get(remints), 2)
      yield* Queue.take(server.upgrades)
      const connection = yield* Queue.take(server.connections)
      yield* expectBootstrap(connection)
      yield* connection.close(1011, "bye")
      yield* step(3)
      for (let attempt = 4; attempt <= 10; attempt++) {
        yield* Queue.take(server.upgrades)
        yield* step(attempt)
      }
      // A fresh budget of 5 after the good connection (without the reset it would stop at 5 in all).
      assert.strictEqual(yield* Ref.get(remints), 7)
      assert.strictEqual((yield* node.status).remints, 7)
    }))

  it.scopedLive("after connecting: node.register, inventory.sync (even empty), a heartbeat, then heartbeats", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      const { node } = yield* startNode(server.baseUrl, { options: fast })
      const connection = yield* Queue.take(server.connections)
      assert.strictEqual(connection.authorization, "Bearer nt_live_0")
      const { heartbeat, inventory, register } = yield* expectBootstrap(connection)
      assert.match(String(register.id), /^node_register_[0-9a-f]{32}$/)
      const { id: _, provider, ...registerFields } = register as typeof register & { provider: { name: string; instance_id: string } }
      assert.strictEqual(provider.name, "broker")
      assert.match(provider.instance_id, /^broker_[0-9a-f]{32}$/)
      const capabilities = [{ name: "release", kind: "capacity" }, { name: "relay:delivery-cursor-v1", kind: "capacity" }]
      assert.deepStrictEqual(registerFields, {
        type: "node.register",
        v: 1,
        name: "laptop",
        node_id: identity.nodeId,
        capabilities,
        max_agents: 0,
        tags: [],
        version: "relay-broker/9.9.9",
        resume_cursor: null
      })
      assert.deepStrictEqual(inventory.agents, [])
      assert.deepStrictEqual(heartbeat, {
        type: "node.heartbeat",
        v: 1,
        provider,
        name: "laptop",
        node_id: identity.nodeId,
        capabilities,
        max_agents: 0,
        version: "relay-broker/9.9.9",
        load: 0,
        active_agents: 0,
        handlers_live: false
      })
      assert.strictEqual((yield* nextOfType(connection, "node.heartbeat")).frame.type, "node.heartbeat")
      const status = yield* node.status
      assert.isTrue(status.connected)
      assert.isTrue(status.tokenPresent)
      assert.strictEqual(status.nodeId, identity.nodeId)
      assert.isNumber(status.since)
    }))

  it.scopedLive("each connection is a new provider instance; a v5 engine's invalid_message makes it register again as v5", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      const { node } = yield* startNode(server.baseUrl, { options: fast })
      const first = yield* Queue.take(server.connections)
      const one = yield* expectBootstrap(first)
      yield* first.close(1001, "going away")
      const second = yield* Queue.take(server.connections)
      const two = yield* expectBootstrap(second)
      const instance = (frame: any) => frame.provider.instance_id as string
      assert.notStrictEqual(instance(one.register), instance(two.register))
      // The v5 engine refuses the provider field, answering the register's id.
      yield* second.send({ v: 1, type: "error", id: two.register.id, ok: false, code: "invalid_message", message: "\"provider\" is unexpected" })
      const again = yield* nextOfType(second, "node.register")
      assert.isFalse("provider" in again.frame)
      assert.deepStrictEqual((again.frame as any).capabilities, [])
      const beat = yield* nextOfType(second, "node.heartbeat")
      assert.isFalse("provider" in beat.frame)
      assert.deepStrictEqual((beat.frame as any).capabilities, [])
      assert.isTrue((yield* node.status).connected)
    }))

  it.scopedLive("a server that closes after register: the reconnect re-sends register + inventory.sync of the live agents", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      const { node, roster } = yield* startNode(server.baseUrl, { options: fast })
      const first = yield* Queue.take(server.connections)
      yield* first.next
      yield* roster.put({ agent_id: "a-1", name: "worker-1", session_ref: "s-1" })
      yield* first.close(1001, "going away")
      const second = yield* Queue.take(server.connections)
      const { heartbeat, inventory, register } = yield* expectBootstrap(second)
      assert.strictEqual(register.node_id, identity.nodeId)
      assert.deepStrictEqual(inventory.agents, [{ agent_id: "a-1", name: "worker-1", session_ref: "s-1" }])
      assert.strictEqual(heartbeat.active_agents, 1)
      const status = yield* node.status
      assert.isTrue(status.reconnects >= 1)
      assert.include(status.lastError ?? "", "closed the connection (1001 going away)")
      yield* eventually("connected again", Effect.map(node.status, (s) => s.connected))
    }))

  it.scopedLive("a server that accepts and then never reads or writes: reconnect within 4 heartbeats", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      const { node } = yield* startNode(server.baseUrl, { options: fast })
      const first = yield* Queue.take(server.connections)
      yield* first.blackhole
      const second = yield* Queue.take(server.connections)
      yield* expectBootstrap(second)
      assert.include((yield* node.status).lastError ?? "", "nothing read from the engine for 4000 ms (4 heartbeats)")
    }))

  it.scopedLive("a quiet engine that answers pings is kept well past 4 heartbeat intervals", () =>
    Effect.gen(function*() {
      const { connection, node, server } = yield* connectedNode()
      for (let i = 0; i < 6; i++) yield* nextOfType(connection, "node.heartbeat")
      assert.strictEqual(yield* server.upgradeCount, 1)
      assert.isTrue((yield* node.status).connected)
    }))

  it.scopedLive("undecodable and unknown-type frames are skipped and counted; the connection is kept", () =>
    Effect.gen(function*() {
      const { connection, node, server } = yield* connectedNode()
      // Observe `inbound` from a known point: wait until a marker frame shows up on it.
      const seen = yield* Ref.make<ReadonlyArray<string>>([])
      yield* node.inbound.pipe(
        Stream.runForEach((frame) => Ref.update(seen, (all) => [...all, frame.type === "deliver" ? `deliver:${frame.seq}` : frame.type])),
        Effect.forkScoped
      )
      const marker = { v: 1, type: "context.update", topic: "presence", event: "x", data: {} }
      yield* eventually("inbound is subscribed", Effect.zipRight(connection.send(marker), Effect.map(Ref.get(seen), (s) => s.length > 0)))
      yield* Ref.set(seen, [])
      const before = {
        json: yield* skippedCount("invalid_json"),
        unknown: yield* skippedCount("unknown_type"),
        invalid: yield* skippedCount("invalid_frame")
      }
      yield* connection.send("this is not json")
      yield* connection.send({ v: 1, type: "mystery.frame", x: 1 })
      yield* connection.send({ v: 2, type: "ping" })
      yield* connection.send({ v: 1, type: "deliver", agent: "worker-1", seq: 3, msg_id: "m-3" })
      yield* connection.send({ v: 1, type: "ping" })
      yield* connection.send(deliver(4))
      const delivered = yield* node.deliveries.pipe(Stream.take(1), Stream.runCollect)
      assert.deepStrictEqual(Chunk.toArray(delivered).map((frame) => frame.seq), [4])
      const salvaged = yield* node.undecodableDeliveries.pipe(Stream.take(1), Stream.runCollect)
      assert.deepStrictEqual(
        Chunk.toArray(salvaged).map(({ agent, msgId, seq }) => ({ agent, msgId, seq })),
        [{ agent: "worker-1", msgId: "m-3", seq: 3 }]
      )
      assert.strictEqual((yield* skippedCount("invalid_json")) - before.json, 1)
      assert.strictEqual((yield* skippedCount("unknown_type")) - before.unknown, 1)
      assert.strictEqual((yield* skippedCount("invalid_frame")) - before.invalid, 2)
      yield* eventually("the deliver reached inbound", Effect.map(Ref.get(seen), (s) => s.includes("deliver:4")))
      // ping frames are consumed: only the deliver is broadcast (besides the markers).
      assert.deepStrictEqual((yield* Ref.get(seen)).filter((type) => type !== "context.update"), ["deliver:4"])
      assert.strictEqual(yield* server.upgradeCount, 1)
      assert.isTrue((yield* node.status).connected)
    }))

  it.scopedLive("an error frame for a pending request is a typed failure; replies resolve requests", () =>
    Effect.gen(function*() {
      const { connection, node } = yield* connectedNode()
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected))

      const rejected = yield* node.registerAgent({ name: "worker-1" }).pipe(Effect.flip, Effect.fork)
      const { frame } = yield* nextOfType(connection, "agent.register")
      assert.match(String(frame.id), /^agent_register_[0-9a-f]{32}$/)
      assert.deepStrictEqual({ ...frame, id: "" }, { type: "agent.register", v: 1, id: "", name: "worker-1" })
      yield* connection.send({ v: 1, type: "error", id: frame.id, ok: false, code: "agent_location_conflict", message: "held elsewhere" })
      const error = yield* Fiber.join(rejected)
      assert.strictEqual(error._tag, "NodeRequestFailed")
      assert.strictEqual(error.reason, "Rejected")
      assert.strictEqual(error.code, "agent_location_conflict")
      assert.strictEqual(error.detail, "held elsewhere")

      const synced = yield* node.request({ v: 1, type: "inventory.sync", agents: [] }).pipe(Effect.fork)
      const sync = (yield* nextOfType(connection, "inventory.sync")).frame
      yield* connection.reply(sync, { ok: "synced" })
      assert.deepStrictEqual(yield* Fiber.join(synced), { ok: "synced" })
    }))

  it.scopedLive("an agent.register reply with delivery_ack_seq starts the agent's cursor there before the next frame", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      const { node, book } = yield* startNode(server.baseUrl, { options: fast })
      const connection = yield* Queue.take(server.connections)
      yield* expectBootstrap(connection)
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected))
      const registered = yield* node.registerAgent({ name: "w" }).pipe(Effect.fork)
      const { frame } = yield* nextOfType(connection, "agent.register")
      yield* connection.reply(frame, { agent_id: "a-w", name: "w", token: "at_live_x", delivery_ack_seq: 2 })
      const data = yield* Fiber.join(registered)
      assert.strictEqual(data.delivery_ack_seq, 2)
      const cursor = yield* book.get("a-w")
      assert.isTrue(Option.isSome(cursor))
      assert.deepStrictEqual(Option.map(cursor, (c) => [c.upToSeq, c.baseline]).pipe(Option.getOrUndefined), [2, null])
    }))

  it.scopedLive("agent.register replies under a fresh id match by name only when exactly one request has it", () =>
    Effect.gen(function*() {
      const { connection, node } = yield* connectedNode()
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected))

      const solo = yield* node.registerAgent({ name: "solo", session_ref: "sess-1", invocation_id: "inv-1" }).pipe(Effect.fork)
      const soloFrame = (yield* nextOfType(connection, "agent.register")).frame
      assert.strictEqual(soloFrame.resumable, true)
      assert.strictEqual(soloFrame.session_ref, "sess-1")
      assert.strictEqual(soloFrame.invocation_id, "inv-1")
      yield* connection.send({ v: 1, type: "reply", id: "2989001122", ok: true, data: { agent_id: "a-solo", token: "at_live_solo", name: "solo" } })
      assert.deepStrictEqual(yield* Fiber.join(solo), { agent_id: "a-solo", token: "at_live_solo", name: "solo" })

      const first = yield* node.registerAgent({ name: "twin" }).pipe(Effect.fork)
      const firstFrame = (yield* nextOfType(connection, "agent.register")).frame
      const second = yield* node.registerAgent({ name: "twin" }).pipe(Effect.fork)
      const secondFrame = (yield* nextOfType(connection, "agent.register")).frame
      // Ambiguous: matches neither. Then each gets its own reply by id.
      yield* connection.send({ v: 1, type: "reply", id: "fresh", ok: true, data: { agent_id: "wrong", token: "at_live_wrong", name: "twin" } })
      yield* connection.reply(secondFrame, { agent_id: "a-2", token: "at_live_2", name: "twin" })
      yield* connection.reply(firstFrame, { agent_id: "a-1", token: "at_live_1", name: "twin" })
      assert.strictEqual((yield* Fiber.join(first)).agent_id, "a-1")
      assert.strictEqual((yield* Fiber.join(second)).agent_id, "a-2")
    }))

  it.scopedLive("a timeout fails the request; a late agent.register success is compensated with agent.deregister", () =>
    Effect.gen(function*() {
      const { connection, node } = yield* connectedNode({ options: fast, config: { requestTimeout: 300 } })
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected))

      const error = yield* Effect.flip(node.registerAgent({ name: "slow" }))
      assert.strictEqual(error.reason, "Timeout")
      assert.strictEqual(error.code, "agent_register_timeout")
      const request = (yield* nextOfType(connection, "agent.register")).frame
      yield* connection.reply(request, { agent_id: "a-slow", token: "at_live_slow", name: "slow" })
      const compensation = (yield* nextOfType(connection, "agent.deregister")).frame
      assert.deepStrictEqual(compensation, { type: "agent.deregister", v: 1, id: request.id, agent_id: "a-slow", name: "slow" })
    }))

  it.scopedLive("a disconnect fails pending requests; requests while disconnected fail at once", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      yield* server.setUpgradeStatus((attempt) => attempt === 1 ? 101 : 503)
      const { node } = yield* startNode(server.baseUrl, { options: fast })
      const connection = yield* Queue.take(server.connections)
      yield* expectBootstrap(connection)
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected))
      const waiting = yield* node.registerAgent({ name: "x" }).pipe(Effect.flip, Effect.fork)
      yield* nextOfType(connection, "agent.register")
      yield* connection.close()
      const error = yield* Fiber.join(waiting)
      assert.strictEqual(error.reason, "Disconnected")
      assert.strictEqual(error.code, "node_control_disconnected")
      yield* eventually("disconnected", Effect.map(node.status, (s) => !s.connected))
      const immediate = yield* Effect.flip(node.request({ v: 1, type: "inventory.sync", agents: [] }))
      assert.strictEqual(immediate.reason, "Disconnected")
      yield* eventually("HTTP 503 is an ordinary reconnect", Effect.map(node.status, (s) => (s.lastError ?? "").includes("HTTP 503")))
      assert.strictEqual((yield* node.status).remints, 0)
    }))

  it.scopedLive("send while disconnected: queued and flushed in order after the next register, an agent's acks combined into its last", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      yield* server.setUpgradeStatus(() => 503)
      const { node } = yield* startNode(server.baseUrl, { options: fast })
      yield* Queue.take(server.upgrades)
      yield* node.send({ v: 1, type: "delivery.ack", agent: "worker-1", up_to_seq: 1 })
      yield* node.send({ v: 1, type: "delivery.ack", agent: "worker-2", up_to_seq: 7 })
      yield* node.send({ v: 1, type: "delivery.ack", agent: "worker-1", up_to_seq: 2 })
      yield* node.send({ v: 1, type: "action.result", invocation_id: "inv-1", output: { ok: true } })
      yield* server.setUpgradeStatus(() => 101)
      const connection = yield* Queue.take(server.connections)
      yield* expectBootstrap(connection)
      const flushed: Array<Frame> = []
      while (flushed.length < 3) {
        const frame = yield* connection.next
        if (frame.type !== "node.heartbeat") flushed.push(frame)
      }
      assert.deepStrictEqual(flushed, [
        { type: "delivery.ack", v: 1, agent: "worker-2", up_to_seq: 7 },
        { type: "delivery.ack", v: 1, agent: "worker-1", up_to_seq: 2 },
        { type: "action.result", v: 1, invocation_id: "inv-1", output: { ok: true } }
      ])
    }))

  it.scopedLive("the outbox is bounded: beyond its capacity the oldest frames are dropped", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      yield* server.setUpgradeStatus(() => 503)
      const { logs, node, withLogs } = yield* startNode(server.baseUrl, { options: { ...fast, outboxCapacity: 2 } })
      yield* Queue.take(server.upgrades)
      for (const agent of ["a", "b", "c", "d"]) yield* withLogs(node.send({ v: 1, type: "delivery.ack", agent, up_to_seq: 1 }))
      yield* server.setUpgradeStatus(() => 101)
      const connection = yield* Queue.take(server.connections)
      yield* expectBootstrap(connection)
      const acks: Array<unknown> = []
      while (acks.length < 2) {
        const frame = yield* connection.next
        if (frame.type === "delivery.ack") acks.push(frame.agent)
      }
      assert.deepStrictEqual(acks, ["c", "d"])
      assert.isTrue(logs.some((line) => line.level === "WARN" && line.message.includes("outbox is full")))
    }))

  it.scopedLive("deliveries and invocations keep arrival order without loss for a consumer that subscribes late", () =>
    Effect.gen(function*() {
      const { connection, node } = yield* connectedNode()
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected))
      // A request's reply, sent last, marks the point where every earlier frame has been handled.
      const marker = yield* node.request({ v: 1, type: "inventory.sync", agents: [] }).pipe(Effect.fork)
      const sync = (yield* nextOfType(connection, "inventory.sync")).frame
      for (let seq = 1; seq <= 200; seq++) {
        yield* connection.send(deliver(seq))
        if (seq % 20 === 0) {
          yield* connection.send({ v: 1, type: "action.invoke", invocation_id: `inv-${seq}`, action: "spawn", input: { name: `w${seq}` } })
        }
      }
      yield* connection.reply(sync, {})
      yield* Fiber.join(marker)
      const delivered = yield* node.deliveries.pipe(Stream.take(200), Stream.runCollect)
      assert.deepStrictEqual(Chunk.toArray(delivered).map((frame) => frame.seq), Array.from({ length: 200 }, (_, i) => i + 1))
      const invoked = yield* node.invocations.pipe(Stream.take(10), Stream.runCollect)
      assert.deepStrictEqual(
        Chunk.toArray(invoked).map((frame) => frame.invocation_id),
        Array.from({ length: 10 }, (_, i) => `inv-${(i + 1) * 20}`)
      )
    }))

  it.scopedLive("announce sends inventory.sync of the roster and a heartbeat", () =>
    Effect.gen(function*() {
      const { connection, node, roster } = yield* connectedNode()
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected))
      yield* roster.put({ agent_id: "a-1", name: "worker-1" })
      yield* roster.put({ agent_id: "a-2", name: "worker-2", invocation_id: "inv-2" })
      yield* node.announce
      const { frame: inventory } = yield* nextOfType(connection, "inventory.sync")
      assert.deepStrictEqual(inventory.agents, [
        { agent_id: "a-1", name: "worker-1" },
        { agent_id: "a-2", name: "worker-2", invocation_id: "inv-2" }
      ])
      assert.strictEqual((yield* connection.next).type, "node.heartbeat")
      const { frame: heartbeat } = yield* nextOfType(connection, "node.heartbeat")
      assert.strictEqual(heartbeat.active_agents, 2)
    }))

  it.scopedLive("an error answer to node.register is reported in status.lastError", () =>
    Effect.gen(function*() {
      const { bootstrap: { register }, connection, logs, node } = yield* connectedNode()
      yield* connection.send({ v: 1, type: "error", id: register.id, ok: false, code: "node_id_mismatch", message: "node_id does not match" })
      yield* eventually("lastError", Effect.map(node.status, (s) => (s.lastError ?? "").includes("node_id_mismatch")))
      assert.isTrue(logs.some((line) => line.level === "ERROR" && line.message.includes("node.register: node_id_mismatch")))
    }))

  it.scopedLive("no token yet: the broker keeps running, shows it in status, and connects once minting works", () =>
    Effect.gen(function*() {
      const { node, server, tokenCalls } = yield* connectedNode({ options: fast, failingTokenCalls: 3 })
      assert.strictEqual(yield* Ref.get(tokenCalls), 4)
      assert.strictEqual(yield* server.upgradeCount, 1)
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected && s.tokenPresent))
    }))

  it.scopedLive("no token: status says tokenPresent false and names the mint failure", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      const { node } = yield* startNode(server.baseUrl, { options: { reconnectSchedule: Schedule.spaced("1 hour") }, failingTokenCalls: 1 })
      yield* eventually("the failure is visible", Effect.map(node.status, (s) => s.lastError !== null))
      const status = yield* node.status
      assert.isFalse(status.tokenPresent)
      assert.isFalse(status.connected)
      assert.include(status.lastError ?? "", "minting a node token failed")
      assert.strictEqual(yield* server.upgradeCount, 0)
    }))

  it.scopedLive("a clean stop sends node.deregister, then closes", () =>
    Effect.gen(function*() {
      const server = yield* ScriptedNodeServer.make
      const scope = yield* Scope.make()
      const { node } = yield* startNode(server.baseUrl, { options: fast }).pipe(Scope.extend(scope))
      const connection = yield* Queue.take(server.connections)
      yield* expectBootstrap(connection)
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected))
      yield* Scope.close(scope, Exit.void)
      const { frame } = yield* nextOfType(connection, "node.deregister")
      assert.strictEqual((frame as any).provider.name, "broker")
      assert.deepStrictEqual(Object.keys(frame).sort(), ["provider", "type", "v"])
      const closed = yield* connection.closed
      assert.strictEqual(closed.code, 1000)
      assert.isTrue(Option.isNone(yield* Queue.poll(server.connections)))
    }))
})
