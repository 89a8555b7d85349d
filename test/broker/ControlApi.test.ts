import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Redacted, Ref, Scope, Stream } from "effect"
import WebSocket from "ws"
import { AgentRegistry, type LiveAgent } from "../../src/broker/AgentRegistry.js"
import * as BrokerConfig from "../../src/broker/BrokerConfig.js"
import * as ControlApi from "../../src/broker/ControlApi.js"
import {
  BindFailed,
  InvalidAgentName,
  NameTaken,
  PtyClosed,
  SpawnFailed,
  UnknownWorker
} from "../../src/broker/errors.js"
import * as EventLog from "../../src/broker/EventLog.js"
import * as Shutdown from "../../src/broker/http/Shutdown.js"
import { NodeControl } from "../../src/broker/NodeControl.js"
import type { Pty } from "../../src/broker/PtyHost.js"
import { plainView } from "../../src/broker/TerminalScreen.js"
import { TokenStore } from "../../src/broker/TokenStore.js"
import { connectedStatus, registryReads, runningAgentInfo } from "../support/brokerFakes.js"

const apiKey = "br_0123456789abcdef0123456789abcdef"

const config = (apiPort = 0): BrokerConfig.BrokerConfigShape => ({
  baseUrl: "http://127.0.0.1:1",
  workspaceKey: Redacted.make("rk_live_test"),
  nodeToken: undefined,
  nodeName: "test-node",
  stateDir: "/nonexistent",
  dataDir: "/nonexistent",
  cwd: "/",
  brokerApiKey: Redacted.make(apiKey),
  apiBind: "127.0.0.1",
  apiPort,
  heartbeatInterval: 12_000,
  requestTimeout: 1_000,
  version: "0.0.0-test"
})

/** A terminal in memory: what is written is echoed into the snapshot, as `cat` would. */
const fakePty = (pid: number, closed: Ref.Ref<boolean>, screen: Ref.Ref<string>, resized: Ref.Ref<string>): Pty => ({
  pid,
  write: (data) =>
    Effect.flatMap(Ref.get(closed), (isClosed) =>
      isClosed ? Effect.fail(new PtyClosed({ pid })) : Ref.update(screen, (text) => text + data)),
  inject: () => Effect.void,
  resize: (cols, rows) => Ref.set(resized, `${cols}x${rows}`),
  snapshot: Ref.get(screen),
  screen: Effect.zipWith(Ref.get(screen), Ref.get(resized), (text, size) => {
    const [cols, rows] = size === "" ? [80, 24] : size.split("x").map(Number)
    return plainView(text, { cols: cols!, rows: rows! })
  }),
  ansi: Ref.get(screen),
  withKeyboard: (use) => use(() => Effect.void),
  output: Stream.empty,
  exited: Effect.never,
  kill: () => Effect.void
})

/**
 * A registry of fake agents. Spawning names "taken", "unbindable", "bad name" or cli "no-such-cli"
 * fails the way the real registry would; "exited" spawns an agent whose terminal is closed.
 */
const makeRegistry = Effect.gen(function*() {
  const agents = yield* Ref.make<ReadonlyMap<string, LiveAgent>>(new Map())
  const resized = yield* Ref.make("")
  let nextPid = 1000
  const registry = AgentRegistry.of({
    spawn: (spec) =>
      Effect.gen(function*() {
        if (spec.name === "taken") return yield* new NameTaken({ agent: spec.name })
        if (spec.name === "defect") return yield* Effect.die(new Error("a bug"))
        if (spec.name === "bad name") return yield* new InvalidAgentName({ agent: spec.name, detail: "no spaces" })
        if (spec.name === "unbindable") {
          return yield* new BindFailed({ agent: spec.name, reason: "Rejected", detail: "engine said no" })
        }
        if (spec.cli === "no-such-cli") {
          return yield* new SpawnFailed({ command: spec.cli, reason: "NotFound", detail: "not found on PATH" })
        }
        const pid = nextPid++
        const info = runningAgentInfo(spec, pid)
        const pty = fakePty(pid, yield* Ref.make(spec.name === "exited"), yield* Ref.make(""), resized)
        yield* Ref.update(agents, (current) => new Map(current).set(spec.name, { ...info, pty, token: Redacted.make("at_x") }))
        return info
      }),
    release: (name) =>
      Effect.gen(function*() {
        const current = yield* Ref.get(agents)
        if (!current.has(name)) return yield* new UnknownWorker({ agent: name })
        const next = new Map(current)
        next.delete(name)
        yield* Ref.set(agents, next)
      }),
    ...registryReads(agents)
  })
  return { registry, agents, resized }
})

const node = NodeControl.of({
  request: () => Effect.die("not used"),
  registerAgent: () => Effect.die("not used"),
  send: () => Effect.void,
  announce: Effect.void,
  deliveries: Stream.never,
  invocations: Stream.never,
  inbound: Stream.never,
  undecodableDeliveries: Stream.never,
  status: Effect.succeed(connectedStatus("test-node"))
})

const tokens = TokenStore.of({
  identity: Effect.succeed({ nodeId: "node_test", nodeName: "test-node", workspaceId: "ws_test" }),
  token: Effect.succeed(Redacted.make("nt_x")),
  remint: Effect.succeed(Redacted.make("nt_x"))
})

/** Starts the API on a free port with fakes around it; everything is closed with the test's scope. */
const startApi = (apiPort = 0) =>
  Effect.gen(function*() {
    const fakes = yield* makeRegistry
    const deps = Layer.mergeAll(
      BrokerConfig.layer(config(apiPort)),
      Layer.succeed(AgentRegistry, fakes.registry),
      Layer.succeed(NodeControl, node),
      Layer.succeed(TokenStore, tokens),
      EventLog.layer,
      Shutdown.layer
    )
    const context = yield* Layer.build(Layer.merge(ControlApi.layer, deps).pipe(Layer.provide(deps)))
    const service = yield* Effect.provide(ControlApi.ControlApi, context)
    const events = yield* Effect.provide(EventLog.EventLog, context)
    const shutdown = yield* Effect.provide(Shutdown.Shutdown, context)
    return { ...fakes, url: service.url, port: service.port, events, shutdown }
  })

interface Answer {
  readonly status: number
  readonly body: any
}

const call = (
  url: string,
  method: string,
  path: string,
  options: { readonly body?: unknown; readonly raw?: string; readonly headers?: Record<string, string> } = {}
): Effect.Effect<Answer> =>
  Effect.promise(async () => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { "x-api-key": apiKey, "content-type": "application/json", ...options.headers },
      ...(options.raw !== undefined
        ? { body: options.raw }
        : options.body === undefined
        ? {}
        : { body: JSON.stringify(options.body) })
    })
    const text = await response.text()
    return { status: response.status, body: text === "" ? null : JSON.parse(text) }
  })

const spawnBody = (name: string, cli = "bash") => ({ body: { name, cli } })

describe("ControlApi", () => {
  it.scopedLive("/health is open; every other route needs the key (X-API-Key or Bearer)", () =>
    Effect.gen(function*() {
      const api = yield* startApi()
      const health = yield* call(api.url, "GET", "/health", { headers: { "x-api-key": "" } })
      assert.strictEqual(health.status, 200)
      assert.strictEqual(health.body.service, "agent-relay-listen")
      assert.strictEqual(health.body.status, "ok")
      assert.strictEqual(health.body.workspaceId, "ws_test")

      const noKey = yield* call(api.url, "GET", "/api/spawned", { headers: { "x-api-key": "" } })
      assert.strictEqual(noKey.status, 401)
      assert.deepStrictEqual(noKey.body, {
        error: { code: "unauthorized", message: "Missing or invalid API key", retryable: false, statusCode: 401 }
      })
      const wrongKey = yield* call(api.url, "GET", "/api/spawned", { headers: { "x-api-key": "br_wrong" } })
      assert.strictEqual(wrongKey.status, 401)
      // An unknown route does not reveal itself without the key.
      assert.strictEqual((yield* call(api.url, "GET", "/api/nope", { headers: { "x-api-key": "" } })).status, 401)

      const bearer = yield* call(api.url, "GET", "/api/spawned", {
        headers: { "x-api-key": "", authorization: `Bearer ${apiKey}` }
      })
      assert.strictEqual(bearer.status, 200)
      assert.deepStrictEqual(bearer.body, { agents: [] })
      assert.strictEqual((yield* call(api.url, "GET", "/api/nope")).status, 404)
    }))

  it.scopedLive("spawn, list, input, snapshot, resize and release an agent", () =>
    Effect.gen(function*() {
      const api = yield* startApi()
      const spawned = yield* call(api.url, "POST", "/api/spawn", {
        body: { name: "w1", cli: "cat", args: ["-u"], model: null, channels: ["general"], someFutureField: 1 }
      })
      assert.strictEqual(spawned.status, 200)
      assert.strictEqual(spawned.body.success, true)
      assert.strictEqual(spawned.body.name, "w1")
      assert.strictEqual(spawned.body.runtime, "pty")
      assert.isNumber(spawned.body.pid)

      const listed = yield* call(api.url, "GET", "/api/spawned")
      assert.deepStrictEqual(listed.body.agents.map((agent: any) => [agent.name, agent.cli, agent.pid]), [["w1", "cat", spawned.body.pid]])

      const input = yield* call(api.url, "POST", "/api/input/w1", { body: { data: "héllo\n" } })
      assert.deepStrictEqual(input.body, { name: "w1", bytes_written: 7 })
      const snapshot = yield* call(api.url, "GET", "/api/spawned/w1/snapshot")
      assert.strictEqual(snapshot.status, 200)
      assert.strictEqual(snapshot.body.format, "plain")
      assert.strictEqual(snapshot.body.screen, "héllo\n")
      assert.deepStrictEqual([snapshot.body.rows, snapshot.body.cols], [24, 80])

      const resized = yield* call(api.url, "POST", "/api/resize/w1", { body: { rows: 40, cols: 120 } })
      assert.strictEqual(resized.status, 200)
      assert.strictEqual(yield* Ref.get(api.resized), "120x40")
      const after = yield* call(api.url, "GET", "/api/spawned/w1/snapshot?format=ansi")
      assert.deepStrictEqual([after.body.rows, after.body.cols], [40, 120])
      assert.strictEqual(Buffer.from(after.body.screen, "base64").toString("utf8"), "héllo\n")

      const status = yield* call(api.url, "GET", "/api/status")
      assert.strictEqual(status.body.agent_count, 1)
      assert.strictEqual(status.body.node_connected, true)

      const released = yield* call(api.url, "DELETE", "/api/spawned/w1")
      assert.deepStrictEqual([released.status, released.body], [200, { success: true, name: "w1" }])
      assert.strictEqual((yield* Ref.get(api.agents)).size, 0)
    }))

  it.scopedLive("bad bodies get a 400 that names the field", () =>
    Effect.gen(function*() {
      const api = yield* startApi()
      const cases: ReadonlyArray<[string, string, { body?: unknown; raw?: string }, RegExp]> = [
        ["POST", "/api/spawn", { body: {} }, /name/],
        ["POST", "/api/spawn", { body: { name: 5, cli: "bash" } }, /name/],
        ["POST", "/api/spawn", { body: { name: "w", args: "-l" } }, /args/],
        ["POST", "/api/spawn", { body: { name: "w", harnessId: "h1" } }, /harnessId.*not supported/],
        ["POST", "/api/spawn", { body: { name: "w", transport: "carrier-pigeon" } }, /transport/],
        ["POST", "/api/spawn", { raw: "{not json" }, /not valid JSON/],
        ["POST", "/api/spawn", { body: [1] }, /body/]
      ]
      for (const [method, path, options, field] of cases) {
        const answer = yield* call(api.url, method, path, options)
        assert.strictEqual(answer.status, 400, `${path} ${JSON.stringify(options)}`)
        assert.strictEqual(answer.body.success, false)
        assert.strictEqual(answer.body.code, "invalid_request")
        assert.match(answer.body.error, field)
      }
      yield* call(api.url, "POST", "/api/spawn", spawnBody("w1"))
      const badInput = yield* call(api.url, "POST", "/api/input/w1", { body: { data: 3 } })
      assert.strictEqual(badInput.status, 400)
      assert.match(badInput.body.message, /data/)
      const badResize = yield* call(api.url, "POST", "/api/resize/w1", { body: { rows: 0, cols: 80 } })
      assert.strictEqual(badResize.status, 400)
      assert.match(badResize.body.message, /rows/)
      const badFormat = yield* call(api.url, "GET", "/api/spawned/w1/snapshot?format=html")
      assert.strictEqual(badFormat.status, 400)
      assert.match(badFormat.body.message, /format/)
      // None of this started anything.
      assert.strictEqual((yield* Ref.get(api.agents)).size, 1)
    }))

  it.scopedLive("a body over the limit gets 413 payload_too_large, not retryable; the API keeps serving", () =>
    Effect.gen(function*() {
      const api = yield* startApi()
      yield* call(api.url, "POST", "/api/spawn", spawnBody("w1"))
      const huge = yield* call(api.url, "POST", "/api/send", { body: { to: "w1", message: "x".repeat(10 * 1024 * 1024) } })
      assert.strictEqual(huge.status, 413)
      assert.deepStrictEqual([huge.body.success, huge.body.code, huge.body.retryable], [false, "payload_too_large", false])
      assert.match(huge.body.message, /limit/)
      const input = yield* call(api.url, "POST", "/api/input/w1", { body: { data: "still here" } })
      assert.strictEqual(input.status, 200)
    }))

  it.scopedLive("unknown agents get a 404", () =>
    Effect.gen(function*() {
      const api = yield* startApi()
      const answers = [
        yield* call(api.url, "DELETE", "/api/spawned/ghost"),
        yield* call(api.url, "POST", "/api/input/ghost", { body: { data: "x" } }),
        yield* call(api.url, "POST", "/api/resize/ghost", { body: { rows: 10, cols: 10 } }),
        yield* call(api.url, "GET", "/api/spawned/ghost/snapshot")
      ]
      for (const answer of answers) {
        assert.strictEqual(answer.status, 404)
        assert.strictEqual(answer.body.code, "agent_not_found")
        assert.match(answer.body.error, /ghost/)
      }
    }))

  it.scopedLive("spawn failures have honest status codes", () =>
    Effect.gen(function*() {
      const api = yield* startApi()
      const taken = yield* call(api.url, "POST", "/api/spawn", spawnBody("taken"))
      assert.deepStrictEqual([taken.status, taken.body.code, taken.body.name], [409, "name_taken", "taken"])
      const badName = yield* call(api.url, "POST", "/api/spawn", spawnBody("bad name"))
      assert.deepStrictEqual([badName.status, badName.body.code], [400, "invalid_agent_name"])
      const unbindable = yield* call(api.url, "POST", "/api/spawn", spawnBody("unbindable"))
      assert.deepStrictEqual([unbindable.status, unbindable.body.code, unbindable.body.retryable], [502, "bind_failed", false])
      assert.match(unbindable.body.error, /engine said no/)
      const missing = yield* call(api.url, "POST", "/api/spawn", spawnBody("w", "no-such-cli"))
      assert.deepStrictEqual([missing.status, missing.body.code, missing.body.retryable], [400, "cli_not_found", false])
      assert.match(missing.body.error, /no-such-cli/)
      // A defect answers the same request the same way again; a service not composed in never appears.
      const defect = yield* call(api.url, "POST", "/api/spawn", spawnBody("defect"))
      assert.deepStrictEqual([defect.status, defect.body.code, defect.body.retryable], [500, "internal_error", false])
      const noTools = yield* call(api.url, "POST", "/api/agent/ready", { body: {} })
      assert.deepStrictEqual([noTools.status, noTools.body.code, noTools.body.retryable], [503, "service_unavailable", false])
      const exited = yield* call(api.url, "POST", "/api/spawn", spawnBody("exited"))
      assert.strictEqual(exited.status, 200)
      const closed = yield* call(api.url, "POST", "/api/input/exited", { body: { data: "x" } })
      assert.deepStrictEqual([closed.status, closed.body.code], [409, "agent_exited"])
    }))

  it.scopedLive("/api/session reports the engine connection", () =>
    Effect.gen(function*() {
      const api = yield* startApi()
      const session = yield* call(api.url, "GET", "/api/session")
      assert.strictEqual(session.status, 200)
      assert.strictEqual(session.body.protocol_version, 2)
      assert.strictEqual(session.body.workspace_key, "rk_live_test")
      assert.strictEqual(session.body.relay_base_url, "http://127.0.0.1:1")
      assert.strictEqual(session.body.default_workspace_id, "ws_test")
      assert.strictEqual(session.body.node_id, "node_test")
    }))

  it.scopedLive("/ws replays events after sinceSeq, then follows live; it needs the key", () =>
    Effect.gen(function*() {
      const api = yield* startApi()
      yield* api.events.publish("agent_spawned", { name: "a" })
      yield* api.events.publish("agent_released", { name: "a" })
      const wsUrl = api.url.replace("http://", "ws://")

      const refused = yield* Effect.promise(() =>
        new Promise<number>((resolve) => {
          const socket = new WebSocket(`${wsUrl}/ws`)
          socket.on("unexpected-response", (_request, response) => resolve(response.statusCode ?? 0))
          socket.on("open", () => resolve(101))
        })
      )
      assert.strictEqual(refused, 401)

      const received: Array<any> = []
      const socket = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<WebSocket>((resolve, reject) => {
            const socket = new WebSocket(`${wsUrl}/ws?sinceSeq=1`, { headers: { "x-api-key": apiKey } })
            socket.on("message", (data) => received.push(JSON.parse(data.toString())))
            socket.on("open", () => resolve(socket))
            socket.on("error", reject)
          })
        ),
        (socket) => Effect.sync(() => socket.close())
      )
      const until = (count: number) =>
        Effect.promise(() =>
          new Promise<void>((resolve) => {
            const check = () => (received.length >= count ? resolve() : setTimeout(check, 10))
            check()
          })
        )
      yield* until(1)
      assert.deepStrictEqual(received.map((event) => [event.kind, event.seq]), [["agent_released", 2]])
      yield* api.events.publish("agent_exited", { name: "a", code: 0 })
      yield* until(2)
      assert.deepStrictEqual(received.map((event) => [event.kind, event.seq]), [["agent_released", 2], ["agent_exited", 3]])
      const health = yield* call(api.url, "GET", "/health")
      assert.strictEqual(health.body.wsConnections, 1)
      assert.strictEqual(socket.readyState, WebSocket.OPEN)

      const badSince = yield* call(api.url, "GET", "/ws?sinceSeq=abc")
      assert.strictEqual(badSince.status, 400)
      assert.match(badSince.body.message, /sinceSeq/)
    }))

  it.scopedLive("POST /api/shutdown answers, then signals the shutdown", () =>
    Effect.gen(function*() {
      const api = yield* startApi()
      const before = yield* Effect.timeout(api.shutdown.requested, "10 millis").pipe(Effect.option)
      assert.isTrue(Option.isNone(before))
      const answer = yield* call(api.url, "POST", "/api/shutdown")
      assert.deepStrictEqual(answer.body, { status: "shutting_down" })
      yield* api.shutdown.requested
    }))

  it.live("a taken port fails with ListenFailed and says so", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const first = yield* startApi().pipe(Scope.extend(scope))
      const second = yield* Effect.exit(Effect.scoped(startApi(first.port)))
      yield* Scope.close(scope, Exit.void)
      assert.isTrue(Exit.isFailure(second))
      if (Exit.isFailure(second)) {
        const error = second.cause._tag === "Fail" ? second.cause.error : undefined
        assert.strictEqual((error as { _tag?: string } | undefined)?._tag, "ListenFailed")
        assert.match(String((error as Error).message), /already in use/)
      }
    }))
})
