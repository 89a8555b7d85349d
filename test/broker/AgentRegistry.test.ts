import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted, Schedule, Scope, Stream } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Os from "node:os"
import { fileURLToPath } from "node:url"
import * as AgentReadiness from "../../src/broker/AgentReadiness.js"
import { AgentRegistry, layerWith as registryLayerWith } from "../../src/broker/AgentRegistry.js"
import * as AgentRoster from "../../src/broker/AgentRoster.js"
import { BrokerConfig } from "../../src/broker/BrokerConfig.js"
import { DeliveryBook } from "../../src/broker/DeliveryBook.js"
import { EngineClient } from "../../src/broker/EngineClient.js"
import { EngineHttpFailed, NodeRequestFailed } from "../../src/broker/errors.js"
import * as EventLog from "../../src/broker/EventLog.js"
import { type AgentRegistration, NodeControl } from "../../src/broker/NodeControl.js"
import { layer as ptyLayer, type Pty, PtyHost } from "../../src/broker/PtyHost.js"
import type { NodeToServer } from "../../src/wire/frames.js"
import { isAlive } from "../support/processes.js"

// ---------------------------------------------------------------------------------------------
// Test doubles: a recording NodeControl, EngineClient and DeliveryBook; the real PtyHost (counted).

interface Recorder {
  readonly registered: Array<AgentRegistration>
  readonly frames: Array<NodeToServer>
  readonly forgotten: Array<string>
  readonly engineCalls: Array<string>
  announces: number
  spawns: number
}

const recorder = (): Recorder => ({ registered: [], frames: [], forgotten: [], engineCalls: [], announces: 0, spawns: 0 })

interface Behaviour {
  /** `agent.register` over node control fails. */
  readonly nodeRegisterFails?: boolean
  /** The HTTP fallback: "ok", the agent already exists (409, then rotate), or everything fails. */
  readonly http?: "ok" | "exists" | "fails"
  /** The engine URL the agents get as RELAY_BASE_URL. */
  readonly baseUrl?: string
}

const secretEnv = {
  RELAY_NODE_TOKEN: "nt_live_leak",
  RELAY_WORKSPACE_KEY: "rk_live_leak",
  AGENT_RELAY_WORKSPACE_KEY: "rk_live_leak2",
  RELAY_API_KEY: "rk_live_leak3",
  RELAY_BROKER_API_KEY: "br_leak"
}

const baseEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value
  return { ...env, ...secretEnv }
}

/** A service double: the given members, and a loud failure for any other (contracts grow). */
const stub = <S extends object>(members: Partial<S>): S =>
  new Proxy(members, {
    get: (target, key) => key in target ? target[key as keyof typeof target] : Effect.dieMessage(`not stubbed: ${String(key)}`)
  }) as S

const testLayer = (rec: Recorder, behaviour: Behaviour = {}) => {
  const config = Layer.succeed(BrokerConfig, {
    baseUrl: behaviour.baseUrl ?? "http://127.0.0.1:9",
    workspaceKey: Redacted.make("rk_live_workspace"),
    nodeToken: undefined,
    nodeName: "test-node",
    stateDir: Os.tmpdir(),
    dataDir: Os.tmpdir(),
    cwd: Os.tmpdir(),
    brokerApiKey: Redacted.make("br_test"),
    apiBind: "127.0.0.1",
    apiPort: 0,
    heartbeatInterval: 12_000,
    requestTimeout: 30_000,
    version: "test"
  })
  const nodeControl = Layer.succeed(
    NodeControl,
    NodeControl.of(stub<NodeControl["Type"]>({
      registerAgent: (agent) =>
        Effect.suspend(() => {
          rec.registered.push(agent)
          return behaviour.nodeRegisterFails === true
            ? Effect.fail(new NodeRequestFailed({ reason: "Disconnected", code: "node_control_disconnected", detail: "no session" }))
            : Effect.succeed({ agent_id: `id-${agent.name}`, token: `at_live_${agent.name}` })
        }),
      send: (frame) => Effect.sync(() => void rec.frames.push(frame)),
      announce: Effect.sync(() => void (rec.announces += 1))
    }))
  )
  const refused = (operation: string, status: number, code: string) =>
    new EngineHttpFailed({ operation, status, code, detail: code })
  const engine = Layer.succeed(
    EngineClient,
    EngineClient.of(stub<EngineClient["Type"]>({
      createAgent: (_key, agent) =>
        Effect.suspend(() => {
          rec.engineCalls.push(`createAgent ${agent.name}`)
          if (behaviour.http === "exists") return Effect.fail(refused("createAgent", 409, "agent_already_exists"))
          if (behaviour.http === "fails") return Effect.fail(new EngineHttpFailed({ operation: "createAgent", detail: "connection refused" }))
          return Effect.succeed({ id: `http-${agent.name}`, name: agent.name, token: Redacted.make("at_live_http") })
        }),
      rotateAgentToken: (_key, name) =>
        Effect.sync(() => {
          rec.engineCalls.push(`rotateAgentToken ${name}`)
          return { id: `rotated-${name}`, name, token: Redacted.make("at_live_rotated") }
        }),
      bindAgentToNode: (_key, nodeName, agentName) => Effect.sync(() => void rec.engineCalls.push(`bind ${nodeName} ${agentName}`))
    }))
  )
  const deliveryBook = Layer.succeed(
    DeliveryBook,
    DeliveryBook.of(stub<DeliveryBook["Type"]>({
      forget: (agent) => Effect.sync(() => void rec.forgotten.push(`${agent.name}/${agent.agentId}`))
    }))
  )
  const countedPty = Layer.effect(
    PtyHost,
    Effect.map(PtyHost, (host) =>
      PtyHost.of({ spawn: (options) => Effect.suspend(() => (rec.spawns += 1, host.spawn(options))) }))
  ).pipe(Layer.provide(ptyLayer))
  return registryLayerWith({ baseEnv: baseEnv() }).pipe(
    Layer.provideMerge(
      Layer.mergeAll(config, nodeControl, engine, deliveryBook, countedPty, AgentRoster.layer, AgentReadiness.layer)
    ),
    Layer.provideMerge(EventLog.layer)
  )
}

// ---------------------------------------------------------------------------------------------

const guard = <A, E, R>(effect: Effect.Effect<A, E, R>, what: string) =>
  Effect.timeoutFail(effect, { duration: "15 seconds", onTimeout: () => new Error(`${what} never happened`) })

const waitForScreen = (pty: Pty, predicate: (screen: string) => boolean) =>
  guard(
    Effect.repeat(pty.snapshot, { schedule: Schedule.spaced("10 millis"), until: predicate }),
    "the expected output"
  ).pipe(Effect.flatMap(() => pty.snapshot))

/** The first event of `kind` matching `predicate`, from a subscription made before the action. */
const nextEvent = (kind: string, predicate: (event: EventLog.BrokerEvent) => boolean = () => true) =>
  Effect.gen(function*() {
    const log = yield* EventLog.EventLog
    const subscription = yield* log.subscribe()
    return guard(
      subscription.events.pipe(
        Stream.filter((event) => event.kind === kind && predicate(event)),
        Stream.runHead,
        Effect.map((head) => head._tag === "Some" ? head.value : undefined)
      ),
      `event ${kind}`
    )
  })

/** A stand-in for the engine's `POST /v1/dm`, recording what it was sent. */
const dmServer = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly dms: Array<{ auth: string | undefined; body: unknown }>; readonly server: Http.Server }>(
    (resume) => {
      const dms: Array<{ auth: string | undefined; body: unknown }> = []
      const server = Http.createServer((req, res) => {
        let raw = ""
        req.on("data", (chunk: Buffer) => (raw += chunk.toString("utf8")))
        req.on("end", () => {
          if (req.method === "POST" && req.url === "/v1/dm") dms.push({ auth: req.headers.authorization, body: JSON.parse(raw) })
          res.writeHead(201, { "content-type": "application/json" })
          res.end(JSON.stringify({ ok: true, data: { id: "m1" } }))
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, dms, server })))
    }
  ),
  ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
)

const echoAgent = fileURLToPath(new URL("../../scripts/echo-agent.mjs", import.meta.url))

describe("AgentRegistry", () => {
  it.scopedLive("spawn binds over node control, starts the pty with the agent env and no broker secrets", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      const roster = yield* AgentRoster.AgentRoster
      const spawned = yield* nextEvent("agent_spawned")
      const script = "echo TOKEN=$RELAY_AGENT_TOKEN NAME=$RELAY_AGENT_NAME TYPE=$RELAY_AGENT_TYPE URL=$RELAY_BASE_URL " +
        "STRICT=$RELAY_STRICT_AGENT_NAME SKIP=$RELAY_SKIP_BOOTSTRAP " +
        "SECRETS=[$RELAY_NODE_TOKEN$RELAY_WORKSPACE_KEY$AGENT_RELAY_WORKSPACE_KEY$RELAY_API_KEY$RELAY_BROKER_API_KEY] " +
        "EXTRA=$EXTRA; read x"
      const info = yield* registry.spawn({
        name: "env-check",
        cli: "bash",
        args: ["-c", script],
        env: { EXTRA: "given" },
        invocationId: "inv_1"
      })
      assert.deepStrictEqual(rec.registered, [{ name: "env-check", invocation_id: "inv_1" }])
      assert.strictEqual(info.agentId, "id-env-check")
      assert.strictEqual(info.status, "running")
      assert.strictEqual(info.injectMode, "type")
      assert.isUndefined(info.warning)
      const agent = yield* registry.lookup("env-check")
      const screen = yield* waitForScreen(agent.pty, (text) => text.includes("EXTRA="))
      assert.include(
        screen,
        "TOKEN=at_live_env-check NAME=env-check TYPE=agent URL=http://127.0.0.1:9 STRICT=1 SKIP=1 SECRETS=[] EXTRA=given"
      )
      assert.strictEqual(Redacted.value(agent.token), "at_live_env-check")
      assert.deepStrictEqual(yield* roster.list, [{ agent_id: "id-env-check", name: "env-check", invocation_id: "inv_1" }])
      assert.isAtLeast(rec.announces, 1)
      const event = yield* spawned
      assert.strictEqual(event?.name, "env-check")
      assert.strictEqual(event?.pid, info.pid)
      assert.deepStrictEqual((yield* registry.list).map((a) => a.name), ["env-check"])
    }).pipe(Effect.provide(testLayer(rec)))
  })

  it.scopedLive("invalid and taken names are refused before anything is bound", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      for (const name of ["", "has space", "x".repeat(65), "ünï", "a/b"]) {
        const error = yield* Effect.flip(registry.spawn({ name, cli: "cat" }))
        assert.strictEqual(error._tag, "InvalidAgentName", name)
      }
      assert.strictEqual(rec.registered.length, 0)
      yield* registry.spawn({ name: "A.b_c-1", cli: "cat" })
      const taken = yield* Effect.flip(registry.spawn({ name: "A.b_c-1", cli: "cat" }))
      assert.strictEqual(taken._tag, "NameTaken")
      // Two spawns racing for one name: one wins.
      const results = yield* Effect.all(
        [Effect.either(registry.spawn({ name: "race", cli: "cat" })), Effect.either(registry.spawn({ name: "race", cli: "cat" }))],
        { concurrency: "unbounded" }
      )
      assert.strictEqual(results.filter((r) => r._tag === "Right").length, 1)
      assert.strictEqual(results.filter((r) => r._tag === "Left" && r.left._tag === "NameTaken").length, 1)
      assert.strictEqual(rec.spawns, 2)
    }).pipe(Effect.provide(testLayer(rec)))
  })

  it.scopedLive("when agent.register fails, the HTTP fallback registers and binds to this node", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      const info = yield* registry.spawn({ name: "fallback", cli: "cat" })
      assert.deepStrictEqual(rec.engineCalls, ["createAgent fallback", "bind test-node fallback"])
      assert.strictEqual(info.agentId, "http-fallback")
      assert.include(info.warning ?? "", "node_control_disconnected")
      assert.strictEqual(Redacted.value((yield* registry.lookup("fallback")).token), "at_live_http")
    }).pipe(Effect.provide(testLayer(rec, { nodeRegisterFails: true, http: "ok" })))
  })

  it.scopedLive("an agent that already exists gets its token rotated", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      const info = yield* registry.spawn({ name: "again", cli: "cat" })
      assert.deepStrictEqual(rec.engineCalls, ["createAgent again", "rotateAgentToken again", "bind test-node again"])
      assert.strictEqual(info.agentId, "rotated-again")
    }).pipe(Effect.provide(testLayer(rec, { nodeRegisterFails: true, http: "exists" })))
  })

  it.scopedLive("bind failure: BindFailed, and no process is started", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      const roster = yield* AgentRoster.AgentRoster
      const error = yield* Effect.flip(registry.spawn({ name: "unbound", cli: "cat" }))
      assert.strictEqual(error._tag, "BindFailed")
      assert.strictEqual(error._tag === "BindFailed" ? error.reason : "", "Transport")
      assert.strictEqual(rec.spawns, 0)
      assert.deepStrictEqual(yield* registry.list, [])
      assert.deepStrictEqual(yield* roster.list, [])
      // The name is free again.
      assert.strictEqual((yield* Effect.flip(registry.spawn({ name: "unbound", cli: "cat" })))._tag, "BindFailed")
    }).pipe(Effect.provide(testLayer(rec, { nodeRegisterFails: true, http: "fails" })))
  })

  it.scopedLive("a command that cannot start undoes the binding", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      const roster = yield* AgentRoster.AgentRoster
      const error = yield* Effect.flip(registry.spawn({ name: "ghost", cli: "no-such-cli-xyz" }))
      assert.strictEqual(error._tag, "SpawnFailed")
      assert.include(error.message, "no-such-cli-xyz")
      assert.deepStrictEqual(rec.frames, [{ v: 1, type: "agent.deregister", agent_id: "id-ghost", name: "ghost" }])
      assert.deepStrictEqual(yield* registry.list, [])
      assert.deepStrictEqual(yield* roster.list, [])
    }).pipe(Effect.provide(testLayer(rec)))
  })

  it.scopedLive("the task is the first message; later injections wait for it", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      yield* registry.spawn({ name: "tasked", cli: "cat", task: "first: the task" })
      const agent = yield* registry.lookup("tasked")
      yield* agent.pty.inject("second: a message", { input: agent.injectMode, steer: false })
      const screen = yield* waitForScreen(agent.pty, (text) => text.split("second: a message").length >= 3)
      const task = screen.indexOf("first: the task")
      assert.isAtLeast(task, 0)
      assert.isBelow(task, screen.indexOf("second: a message"))
      const info = (yield* registry.list)[0]!
      assert.isAtLeast(info.lastActivityAt, info.startedAt)
    }).pipe(Effect.provide(testLayer(rec)))
  })

  it.scopedLive("output is published as batched worker_stream events", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      const log = yield* EventLog.EventLog
      const subscription = yield* log.subscribe()
      yield* registry.spawn({ name: "chatty", cli: "bash", args: ["-c", "for i in $(seq 1 500); do echo chunk-$i; done; read x"] })
      const text = yield* guard(
        subscription.events.pipe(
          Stream.filter((event) => event.kind === "worker_stream"),
          Stream.scan("", (acc, event) => {
            assert.strictEqual(event.name, "chatty")
            assert.strictEqual(event.stream, "stdout")
            assert.isAtMost((event.chunk as string).length, 4096 + 4096)
            return acc + (event.chunk as string)
          }),
          Stream.takeUntil((acc) => acc.includes("chunk-500")),
          Stream.runLast
        ),
        "the last chunk"
      )
      assert.include(text._tag === "Some" ? text.value : "", "chunk-1\r\n")
    }).pipe(Effect.provide(testLayer(rec)))
  })

  it.scopedLive("release kills the process, deregisters, forgets deliveries and announces", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      const roster = yield* AgentRoster.AgentRoster
      const info = yield* registry.spawn({ name: "short", cli: "bash" })
      assert.isTrue(isAlive(info.pid))
      const released = yield* nextEvent("agent_released")
      const announcesBefore = rec.announces
      yield* registry.release("short")
      assert.isFalse(isAlive(info.pid))
      assert.deepStrictEqual(rec.frames, [{ v: 1, type: "agent.deregister", agent_id: "id-short", name: "short" }])
      assert.deepStrictEqual(rec.forgotten, ["short/id-short"])
      assert.deepStrictEqual(yield* roster.list, [])
      assert.isAbove(rec.announces, announcesBefore)
      assert.strictEqual((yield* released)?.name, "short")
      assert.strictEqual((yield* Effect.flip(registry.release("short")))._tag, "UnknownWorker")
      assert.strictEqual((yield* Effect.flip(registry.release("never-was")))._tag, "UnknownWorker")
      assert.strictEqual((yield* Effect.flip(registry.lookup("short")))._tag, "UnknownWorker")
      // The name can be used again at once.
      yield* registry.spawn({ name: "short", cli: "cat" })
    }).pipe(Effect.provide(testLayer(rec)))
  })

  it.scopedLive("an agent that exits by itself is removed, deregistered and reported; releasing it succeeds", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const registry = yield* AgentRegistry
      const roster = yield* AgentRoster.AgentRoster
      const exited = yield* nextEvent("agent_exited")
      yield* registry.spawn({ name: "quitter", cli: "bash", args: ["-c", "read x; exit 4"] })
      const agent = yield* registry.lookup("quitter")
      yield* agent.pty.write("bye\r")
      const event = yield* exited
      assert.deepStrictEqual({ name: event?.name, code: event?.code, signal: event?.signal }, {
        name: "quitter",
        code: 4,
        signal: null
      })
      assert.deepStrictEqual(rec.frames, [{ v: 1, type: "agent.deregister", agent_id: "id-quitter", name: "quitter" }])
      assert.deepStrictEqual(rec.forgotten, ["quitter/id-quitter"])
      assert.deepStrictEqual(yield* registry.list, [])
      assert.deepStrictEqual(yield* roster.list, [])
      assert.strictEqual((yield* Effect.flip(registry.lookup("quitter")))._tag, "UnknownWorker")
      yield* registry.release("quitter")
      assert.strictEqual(rec.frames.length, 1)
      assert.strictEqual((yield* Effect.flip(registry.release("quitter")))._tag, "UnknownWorker")
    }).pipe(Effect.provide(testLayer(rec)))
  })

  it.live("closing the registry's scope kills every agent", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(testLayer(rec), scope)
      const registry = context.unsafeMap.get(AgentRegistry.key) as AgentRegistry["Type"]
      const a = yield* registry.spawn({ name: "one", cli: "sleep", args: ["600"] })
      const b = yield* registry.spawn({ name: "two", cli: "bash" })
      assert.isTrue(isAlive(a.pid) && isAlive(b.pid))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(isAlive(a.pid))
      assert.isFalse(isAlive(b.pid))
    })
  })

  it.scopedLive("echo-agent reads a relay message (after a reminder block) and DMs pong to its sender", () => {
    const rec = recorder()
    return Effect.gen(function*() {
      const engine = yield* dmServer
      return yield* Effect.gen(function*() {
        const registry = yield* AgentRegistry
        yield* registry.spawn({ name: "echo", cli: "node", args: [echoAgent] })
        const agent = yield* registry.lookup("echo")
        yield* waitForScreen(agent.pty, (text) => text.includes("ready as echo"))
        const message = [
          "<system-reminder>",
          "Agent Relay MCP tools are available for replies.",
          "- For direct replies to \"alice\", use mcp__agent-relay__send_dm (to: \"alice\").",
          "</system-reminder>",
          "Relay message from alice [ws_1 / msg_1]: can you ping me?"
        ].join("\n")
        yield* agent.pty.inject(message, { input: agent.injectMode, steer: false })
        const screen = yield* waitForScreen(agent.pty, (text) => text.includes("sent pong to alice"))
        assert.include(screen, "read: Relay message from alice [ws_1 / msg_1]: can you ping me?")
        assert.deepStrictEqual(engine.dms, [{ auth: "Bearer at_live_echo", body: { to: "alice", text: "pong" } }])
        // A plain line is echoed; without "ping" nothing is sent.
        yield* agent.pty.inject("just saying hi", { input: agent.injectMode, steer: false })
        yield* waitForScreen(agent.pty, (text) => text.includes("read: just saying hi"))
        assert.strictEqual(engine.dms.length, 1)
      }).pipe(Effect.provide(testLayer(rec, { baseUrl: engine.url })))
    })
  })
})
