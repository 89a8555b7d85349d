import { HttpClient, HttpClientRequest, HttpClientResponse, HttpServer } from "@effect/platform"
import { NodeFileSystem, NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Queue, Redacted, Ref } from "effect"
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as BrokerConfig from "../../src/broker/BrokerConfig.js"
import * as BrokerIdentity from "../../src/broker/BrokerIdentity.js"
import { EngineClient } from "../../src/broker/EngineClient.js"
import { EngineHttpFailed } from "../../src/broker/errors.js"
import { deliveryRoutes, deliveryRoutesIfPresent } from "../../src/broker/http/deliveryRoutes.js"
import { AgentRegistry } from "../../src/broker/AgentRegistry.js"
import { NodeControl } from "../../src/broker/NodeControl.js"
import { deliver, HarnessTag, takeAck, testLayer } from "./deliveriesFakes.js"

interface EngineCall {
  readonly op: string
  readonly token: string
  readonly args: unknown
}

/**
 * What the engine answers a DM to `to`, and what /api/send must answer then: `retryable` only where
 * the same request can succeed later.
 */
const engineAnswers: ReadonlyArray<{
  readonly to: string
  readonly engine: number | undefined
  readonly code?: string
  readonly status: number
  readonly retryable: boolean
}> = [
  { to: "unreachable", engine: undefined, status: 502, retryable: true },
  { to: "refused", engine: 400, code: "invalid_request", status: 400, retryable: false },
  { to: "forbidden", engine: 403, code: "forbidden", status: 400, retryable: false },
  { to: "slow", engine: 408, status: 504, retryable: true },
  { to: "conflict", engine: 409, code: "conflict", status: 409, retryable: false },
  { to: "huge", engine: 413, code: "payload_too_large", status: 413, retryable: false },
  { to: "invalid", engine: 422, code: "invalid", status: 422, retryable: false },
  { to: "busy", engine: 429, code: "rate_limited", status: 429, retryable: true },
  { to: "broken", engine: 500, code: "internal_error", status: 502, retryable: true },
  { to: "unimplemented", engine: 501, code: "not_implemented", status: 502, retryable: false },
  { to: "down", engine: 503, status: 502, retryable: true }
]

const makeEngine = (calls: Ref.Ref<ReadonlyArray<EngineCall>>, options?: { readonly staleTokens?: Set<string> }) => {
  const prefix = options?.staleTokens === undefined ? "at_live_broker_" : "at_live_fresh_"
  let tokens = 0
  const record = (op: string, token: Redacted.Redacted<string>, args: unknown) =>
    Effect.gen(function*() {
      yield* Ref.update(calls, (all) => [...all, { op, token: Redacted.value(token), args }])
      if (options?.staleTokens?.has(Redacted.value(token))) {
        return yield* new EngineHttpFailed({ operation: op, status: 401, code: "unauthorized", detail: "bad token" })
      }
      if ((args as { to?: string }).to === "nobody") {
        return yield* new EngineHttpFailed({ operation: op, status: 404, code: "agent_not_found", detail: "Agent not found" })
      }
      const failing = engineAnswers.find((row) => row.to === (args as { to?: string }).to)
      if (failing !== undefined) {
        return yield* new EngineHttpFailed({
          operation: op,
          ...(failing.engine === undefined ? {} : { status: failing.engine }),
          ...(failing.code === undefined ? {} : { code: failing.code }),
          detail: "engine said so"
        })
      }
    })
  return EngineClient.of({
    createWorkspace: () => Effect.die("not used"),
    getWorkspace: () => Effect.die("not used"),
    createAgent: (key, agent) =>
      Effect.as(record("createAgent", key, agent), {
        id: `agt_${agent.name}`,
        name: agent.name,
        token: Redacted.make(`${prefix}${++tokens}`)
      }),
    rotateAgentToken: (key, name) =>
      Effect.as(record("rotateAgentToken", key, name), {
        id: `agt_${name}`,
        name,
        token: Redacted.make(`${prefix}${++tokens}`)
      }),
    bindAgentToNode: () => Effect.die("not used"),
    sendDm: (token, message) =>
      Effect.as(record("sendDm", token, message), { id: "msg_dm_1", data: { id: "msg_dm_1", to: message.to } }),
    postToChannel: (token, message) =>
      Effect.as(record("postToChannel", token, message), {
        id: "msg_ch_1",
        data: { id: "msg_ch_1", channel_name: message.channel, mentions: ["bob"] }
      }),
    replyInThread: (token, message) =>
      Effect.as(record("replyInThread", token, message), { id: "msg_th_1", data: { id: "msg_th_1", thread_id: message.threadId } })
  })
}

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-routes-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const configFor = (stateDir: string): BrokerConfig.BrokerConfigShape => ({
  baseUrl: "http://127.0.0.1:1",
  workspaceKey: Redacted.make("rk_live_test"),
  nodeToken: undefined,
  nodeName: "test",
  stateDir,
  dataDir: stateDir,
  cwd: stateDir,
  brokerApiKey: Redacted.make("br_test"),
  apiBind: "127.0.0.1",
  apiPort: 0,
  heartbeatInterval: 12_000,
  requestTimeout: 30_000,
  version: "test"
})

/** The router served on an ephemeral port, with the delivery test layer and a fake engine behind it. */
const serve = (stateDir: string, calls: Ref.Ref<ReadonlyArray<EngineCall>>, staleTokens?: Set<string>) => {
  const engine = Layer.succeed(EngineClient, makeEngine(calls, staleTokens === undefined ? {} : { staleTokens }))
  const identity = Layer.effect(BrokerIdentity.BrokerIdentity, BrokerIdentity.make).pipe(
    Layer.provide(Layer.mergeAll(engine, BrokerConfig.layer(configFor(stateDir)), NodeFileSystem.layer))
  )
  return HttpServer.serve(deliveryRoutes).pipe(
    Layer.provideMerge(Layer.mergeAll(testLayer(), engine, identity)),
    Layer.provideMerge(NodeHttpServer.layerTest)
  )
}

const post = (path: string, body: unknown) =>
  Effect.flatMap(HttpClient.HttpClient, (client) =>
    client.execute(HttpClientRequest.post(path).pipe(HttpClientRequest.bodyUnsafeJson(body)))).pipe(
      Effect.flatMap((response) =>
        Effect.map(response.json, (json) => ({ status: response.status, body: json as Record<string, unknown> }))
      )
    )

const postRaw = (path: string, text: string) =>
  Effect.flatMap(HttpClient.HttpClient, (client) =>
    client.execute(HttpClientRequest.post(path).pipe(HttpClientRequest.bodyText(text, "application/json")))).pipe(
      Effect.flatMap((response) =>
        Effect.map(response.json, (json) => ({ status: response.status, body: json as Record<string, unknown> }))
      )
    )

const get = (path: string) =>
  Effect.flatMap(HttpClient.HttpClient, (client) => client.get(path)).pipe(
    Effect.flatMap(HttpClientResponse.filterStatusOk),
    Effect.flatMap((response) => response.json),
    Effect.map((json) => json as Record<string, unknown>)
  )

describe("delivery routes", () => {
  it.scopedLive("GET /api/dead-letters lists them with their reason; redeliver {id} re-surfaces one to a live agent", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const calls = yield* Ref.make<ReadonlyArray<EngineCall>>([])
      yield* Effect.gen(function*() {
        const harness = yield* HarnessTag
        yield* harness.addAgent("bob")
        yield* Queue.offer(harness.frames, deliver("bob", 1, { type: "mystery" }))
        yield* Queue.offer(harness.frames, deliver("ghost", 1))
        yield* takeAck(harness)
        yield* takeAck(harness)

        const listed = yield* get("/api/dead-letters")
        const entries = listed["dead_letters"] as ReadonlyArray<Record<string, unknown>>
        assert.deepStrictEqual(entries.map((entry) => [entry["id"], entry["agent"], entry["msg_id"], entry["reason"]]), [
          ["dl_1", "bob", "msg_bob_1", "unsupported_type"],
          ["dl_2", "ghost", "msg_ghost_1", "unknown_agent"]
        ])
        assert.strictEqual(typeof entries[0]?.["time"], "string")
        assert.deepStrictEqual(entries[0]?.["payload"], { type: "mystery" })
        assert.strictEqual(listed["capacity"], 500)
        const filtered = yield* get("/api/dead-letters?agent=ghost")
        assert.strictEqual(filtered["count"], 1)

        yield* harness.addAgent("ghost")
        const redelivered = yield* post("/api/dead-letters/redeliver", { id: "dl_2" })
        assert.strictEqual(redelivered.status, 200)
        assert.deepStrictEqual(redelivered.body["redelivered"], [{ id: "dl_2", agent: "ghost", msg_id: "msg_ghost_1" }])
        const injected = (yield* Ref.get(harness.injections)).filter((injection) => injection.agent === "ghost")
        assert.strictEqual(injected.length, 1)
        assert.strictEqual((yield* get("/api/dead-letters"))["count"], 1)

        const missing = yield* post("/api/dead-letters/redeliver", { id: "dl_404" })
        assert.strictEqual(missing.status, 404)
        assert.strictEqual(missing.body["code"], "dead_letter_not_found")
      }).pipe(Effect.provide(serve(dir, calls)))
    }))

  it.scopedLive("redeliver validates its body and names the field", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const calls = yield* Ref.make<ReadonlyArray<EngineCall>>([])
      yield* Effect.gen(function*() {
        for (const body of [{}, { id: "dl_1", all: true }]) {
          const response = yield* post("/api/dead-letters/redeliver", body)
          assert.strictEqual(response.status, 400)
          assert.strictEqual(response.body["field"], "id")
        }
        const wrongType = yield* post("/api/dead-letters/redeliver", { all: "yes" })
        assert.strictEqual(wrongType.status, 400)
        assert.strictEqual(wrongType.body["field"], "all")
        const notJson = yield* postRaw("/api/dead-letters/redeliver", "{nope")
        assert.strictEqual(notJson.status, 400)
        assert.strictEqual(notJson.body["field"], "body")
        const all = yield* post("/api/dead-letters/redeliver", { all: true })
        assert.deepStrictEqual([all.status, all.body["redelivered"], all.body["failed"]], [200, [], []])
      }).pipe(Effect.provide(serve(dir, calls)))
    }))

  it.scopedLive("GET /api/node-delivery answers per agent: cursor, last frame, last ack and counts", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const calls = yield* Ref.make<ReadonlyArray<EngineCall>>([])
      yield* Effect.gen(function*() {
        const harness = yield* HarnessTag
        yield* harness.addAgent("bob")
        yield* Queue.offer(harness.frames, deliver("bob", 1))
        yield* Queue.offer(harness.frames, deliver("bob", 1))
        yield* takeAck(harness)
        yield* takeAck(harness)
        const report = yield* get("/api/node-delivery")
        assert.deepStrictEqual((report["node"] as Record<string, unknown>)["connected"], true)
        const [bob] = report["agents"] as ReadonlyArray<Record<string, unknown>>
        assert.strictEqual(bob?.["agent"], "bob")
        assert.strictEqual(bob?.["agent_id"], "agt_bob")
        assert.strictEqual(bob?.["cursor"], 1)
        assert.strictEqual((bob?.["last_frame"] as Record<string, unknown>)["msg_id"], "msg_bob_1")
        assert.strictEqual((bob?.["last_ack"] as Record<string, unknown>)["up_to_seq"], 1)
        const counts = bob?.["counts"] as Record<string, number>
        assert.deepStrictEqual([counts["received"], counts["injected"], counts["duplicate"]], [2, 1, 1])
      }).pipe(Effect.provide(serve(dir, calls)))
    }))

  it.scopedLive("POST /api/send publishes through the engine as the broker's identity, a local agent, to a channel or a thread", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const calls = yield* Ref.make<ReadonlyArray<EngineCall>>([])
      yield* Effect.gen(function*() {
        const harness = yield* HarnessTag
        yield* harness.addAgent("alice")

        const dm = yield* post("/api/send", { to: "bob", text: "ping" })
        assert.strictEqual(dm.status, 200)
        assert.strictEqual(dm.body["event_id"], "msg_dm_1")
        assert.deepStrictEqual(dm.body["recipients"], ["bob"])
        assert.match(dm.body["from"] as string, /^broker-[0-9a-f]{8}$/)
        assert.strictEqual(dm.body["target_type"], "dm")

        const asAlice = yield* post("/api/send", { to: "#general", message: "hello all", from: "alice", mode: "steer" })
        assert.deepStrictEqual([asAlice.body["from"], asAlice.body["target_type"], asAlice.body["to"]], ["alice", "channel", "#general"])
        assert.deepStrictEqual(asAlice.body["mentions"], ["bob"])

        const stranger = yield* post("/api/send", { to: "bob", text: "hi", from: "mallory" })
        assert.strictEqual(stranger.body["from"], dm.body["from"])
        assert.include(stranger.body["warning"] as string, "mallory")

        const reply = yield* post("/api/send", { to: "bob", text: "in thread", thread: "msg_root" })
        assert.strictEqual(reply.body["target_type"], "thread")

        const all = yield* Ref.get(calls)
        assert.deepStrictEqual(all.map((call) => call.op), [
          "createAgent",
          "sendDm",
          "postToChannel",
          "sendDm",
          "replyInThread"
        ])
        assert.deepStrictEqual(all[0]?.args, { name: dm.body["from"], type: "human" })
        assert.strictEqual(all[0]?.token, "rk_live_test")
        assert.deepStrictEqual(all[1]?.args, { to: "bob", text: "ping" })
        assert.strictEqual(all[1]?.token, "at_live_broker_1")
        assert.deepStrictEqual(all[2], { op: "postToChannel", token: "at_live_alice", args: { channel: "general", text: "hello all", mode: "steer" } })
        assert.deepStrictEqual(all[4]?.args, { threadId: "msg_root", text: "in thread" })

        // The identity is kept in the state dir, 0600, and reused after a restart.
        const file = join(dir, "broker-identity.json")
        assert.strictEqual(statSync(file).mode & 0o777, 0o600)
        const stored = JSON.parse(readFileSync(file, "utf8"))
        assert.strictEqual(stored.name, dm.body["from"])
        assert.notInclude(JSON.stringify(stored), "rk_live_test")
      }).pipe(Effect.provide(serve(dir, calls)))

      const again = yield* Ref.make<ReadonlyArray<EngineCall>>([])
      yield* Effect.gen(function*() {
        yield* post("/api/send", { to: "bob", text: "after restart" })
        assert.deepStrictEqual((yield* Ref.get(again)).map((call) => [call.op, call.token]), [["sendDm", "at_live_broker_1"]])
      }).pipe(Effect.provide(serve(dir, again)))

      // A stale stored token (the engine forgot it) is replaced once, and the send goes through.
      const stale = yield* Ref.make<ReadonlyArray<EngineCall>>([])
      yield* Effect.gen(function*() {
        const sent = yield* post("/api/send", { to: "bob", text: "stale" })
        assert.strictEqual(sent.status, 200)
        assert.deepStrictEqual((yield* Ref.get(stale)).map((call) => call.op), ["sendDm", "createAgent", "sendDm"])
      }).pipe(Effect.provide(serve(dir, stale, new Set(["at_live_broker_1"]))))
    }))

  it.scopedLive("POST /api/send rejects bad bodies naming the field, and maps engine errors", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const calls = yield* Ref.make<ReadonlyArray<EngineCall>>([])
      yield* Effect.gen(function*() {
        const noText = yield* post("/api/send", { to: "bob" })
        assert.deepStrictEqual([noText.status, noText.body["field"], noText.body["success"]], [400, "text", false])
        const noTo = yield* post("/api/send", { text: "x" })
        assert.deepStrictEqual([noTo.status, noTo.body["field"]], [400, "to"])
        const badMode = yield* post("/api/send", { to: "bob", text: "x", mode: "shout" })
        assert.deepStrictEqual([badMode.status, badMode.body["field"]], [400, "mode"])
        const bareHash = yield* post("/api/send", { to: "#", text: "x" })
        assert.deepStrictEqual([bareHash.status, bareHash.body["field"]], [400, "to"])
        const unknown = yield* post("/api/send", { to: "nobody", text: "x" })
        assert.deepStrictEqual([unknown.status, unknown.body["code"]], [404, "agent_not_found"])
        assert.strictEqual(unknown.body["retryable"], false)
        for (const row of engineAnswers) {
          const answer = yield* post("/api/send", { to: row.to, text: "x" })
          assert.deepStrictEqual(
            [answer.status, answer.body["retryable"], answer.body["engine_status"], answer.body["code"]],
            [row.status, row.retryable, row.engine ?? null, row.code ?? "relay_error"],
            `engine ${row.engine}`
          )
        }
      }).pipe(Effect.provide(serve(dir, calls)))
    }))

  it.scopedLive("the optional variant answers 503 when the delivery services are not composed in, and works when they are", () =>
    Effect.gen(function*() {
      const bare = HttpServer.serve(deliveryRoutesIfPresent).pipe(
        Layer.provideMerge(Layer.mergeAll(
          Layer.succeed(NodeControl, {} as NodeControl["Type"]),
          Layer.succeed(AgentRegistry, {} as AgentRegistry["Type"])
        )),
        Layer.provideMerge(NodeHttpServer.layerTest)
      )
      yield* Effect.gen(function*() {
        const response = yield* post("/api/send", { to: "bob", text: "x" })
        assert.deepStrictEqual([response.status, response.body["code"]], [503, "service_unavailable"])
        const client = yield* HttpClient.HttpClient
        assert.strictEqual((yield* client.get("/api/node-delivery")).status, 503)
      }).pipe(Effect.provide(bare))

      const dir = yield* tempDir
      const calls = yield* Ref.make<ReadonlyArray<EngineCall>>([])
      const engine = Layer.succeed(EngineClient, makeEngine(calls))
      const identity = Layer.effect(BrokerIdentity.BrokerIdentity, BrokerIdentity.make).pipe(
        Layer.provide(Layer.mergeAll(engine, BrokerConfig.layer(configFor(dir)), NodeFileSystem.layer))
      )
      const full = HttpServer.serve(deliveryRoutesIfPresent).pipe(
        Layer.provideMerge(Layer.mergeAll(testLayer(), engine, identity)),
        Layer.provideMerge(NodeHttpServer.layerTest)
      )
      yield* Effect.gen(function*() {
        const response = yield* post("/api/send", { to: "bob", text: "x" })
        assert.strictEqual(response.status, 200)
        assert.strictEqual((yield* get("/api/dead-letters"))["count"], 0)
      }).pipe(Effect.provide(full))
    }))
})
