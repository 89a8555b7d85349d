import { FetchHttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { type Credential, EngineClient, makeWith, redactSecrets } from "../../src/broker/EngineClient.js"
import { EmbeddedEngine } from "../../src/engine/index.js"

// A tiny stand-in for the engine's HTTP slice: records requests, answers from a route table.
interface Seen {
  readonly method: string
  readonly url: string
  readonly authorization: string | undefined
  readonly body: unknown
}
type Route = (seen: Seen) => { readonly status: number; readonly body?: unknown }

const startServer = (routes: Record<string, Route>) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly seen: Array<Seen>; readonly server: Http.Server }>((resume) => {
      const seen: Array<Seen> = []
      const server = Http.createServer((req, res) => {
        let raw = ""
        req.on("data", (chunk: Buffer) => (raw += chunk.toString("utf8")))
        req.on("end", () => {
          const entry: Seen = {
            method: req.method ?? "",
            url: req.url ?? "",
            authorization: req.headers.authorization,
            body: raw.length > 0 ? JSON.parse(raw) : undefined
          }
          seen.push(entry)
          const route = routes[`${entry.method} ${entry.url}`]
          const answer = route === undefined
            ? { status: 404, body: { code: "not_found", message: "Route not found" } }
            : route(entry)
          res.writeHead(answer.status, { "content-type": "application/json" })
          res.end(answer.body === undefined ? "" : JSON.stringify(answer.body))
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}/`, seen, server }))
      })
    }),
    ({ server }) => Effect.async<void>((resume) => { server.close(() => resume(Effect.void)) })
  )

const clientFor = (url: string) => makeWith({ baseUrl: url }).pipe(Effect.provide(FetchHttpClient.layer))

const key = Redacted.make("rk_live_0123456789abcdef0123456789abcdef")
const agentToken = Redacted.make("at_live_feedfacefeedfacefeedfacefeedface")

describe("EngineClient", () => {
  it.scopedLive("creates a workspace without auth and reads the envelope", () =>
    Effect.gen(function*() {
      const server = yield* startServer({
        "POST /v1/workspaces": () => ({
          status: 201,
          body: { ok: true, data: { workspace_id: "w1", api_key: Redacted.value(key), created_at: "x" } }
        })
      })
      const client = yield* clientFor(server.url)
      const created = yield* client.createWorkspace("local")
      assert.strictEqual(created.workspaceId, "w1")
      assert.strictEqual(Redacted.value(created.apiKey), Redacted.value(key))
      assert.deepStrictEqual(server.seen[0]?.body, { name: "local" })
      assert.strictEqual(server.seen[0]?.authorization, undefined)
    }))

  it.scopedLive("sends the credential as a bearer token", () =>
    Effect.gen(function*() {
      const server = yield* startServer({
        "GET /v1/workspace": () => ({ status: 200, body: { ok: true, data: { id: "w1", name: "local", plan: "free" } } }),
        "POST /v1/agents": ({ body }) => ({
          status: 201,
          body: { ok: true, data: { id: "a1", name: (body as { name: string }).name, token: Redacted.value(agentToken) } }
        })
      })
      const client = yield* clientFor(server.url)
      assert.deepStrictEqual(yield* client.getWorkspace(key), { id: "w1", name: "local" })
      const agent = yield* client.createAgent(key, { name: "alice", type: "agent" })
      assert.strictEqual(agent.id, "a1")
      assert.strictEqual(Redacted.value(agent.token), Redacted.value(agentToken))
      assert.strictEqual(server.seen[0]?.authorization, `Bearer ${Redacted.value(key)}`)
      assert.deepStrictEqual(server.seen[1]?.body, { name: "alice", type: "agent" })
    }))

  it.scopedLive("maps an error envelope to EngineHttpFailed with status and code, secrets redacted", () =>
    Effect.gen(function*() {
      const server = yield* startServer({
        "POST /v1/agents": () => ({
          status: 409,
          body: {
            ok: false,
            error: { code: "agent_already_exists", message: `Agent exists; key ${Redacted.value(key)} at_live_abc123` }
          }
        })
      })
      const client = yield* clientFor(server.url)
      const error = yield* Effect.flip(client.createAgent(key, { name: "alice", type: "agent" }))
      assert.strictEqual(error._tag, "EngineHttpFailed")
      assert.strictEqual(error.status, 409)
      assert.strictEqual(error.code, "agent_already_exists")
      assert.notInclude(error.message, Redacted.value(key))
      assert.notInclude(error.message, "at_live_abc123")
      assert.include(error.message, "<redacted>")
    }))

  it.scopedLive("maps a bare {code,message} 404 and a malformed success", () =>
    Effect.gen(function*() {
      const server = yield* startServer({
        "POST /v1/dm": () => ({ status: 201, body: { ok: true, data: { nothing: true } } })
      })
      const client = yield* clientFor(server.url)
      const missing = yield* Effect.flip(client.bindAgentToNode(key, "node a", "alice"))
      assert.strictEqual(missing.status, 404)
      assert.strictEqual(missing.code, "not_found")
      assert.strictEqual(server.seen[0]?.url, "/v1/nodes/node%20a/agents")
      assert.deepStrictEqual(server.seen[0]?.body, { agent_name: "alice" })
      const malformed = yield* Effect.flip(client.sendDm(agentToken, { to: "bob", text: "hi" }))
      assert.strictEqual(malformed.code, "invalid_response")
    }))

  it.scopedLive("a refused connection is an EngineHttpFailed without status", () =>
    Effect.gen(function*() {
      const server = yield* startServer({})
      const url = server.url
      yield* Effect.async<void>((resume) => { server.server.close(() => resume(Effect.void)) })
      const client = yield* clientFor(url)
      const error = yield* Effect.flip(client.getWorkspace(key))
      assert.strictEqual(error._tag, "EngineHttpFailed")
      assert.strictEqual(error.status, undefined)
    }))

  it.scopedLive("messages: DM, channel post (without #), thread reply; rotate fetches the id when absent", () =>
    Effect.gen(function*() {
      const server = yield* startServer({
        "POST /v1/dm": () => ({
          status: 201,
          body: { ok: true, data: { conversation_id: "dm_1", message: { id: "m1" }, id: "m1", to: "bob" } }
        }),
        "POST /v1/channels/general/messages": () => ({ status: 201, body: { ok: true, data: { id: "m2" } } }),
        "POST /v1/messages/m2/replies": () => ({ status: 201, body: { ok: true, data: { id: "m3", thread_id: "m2" } } }),
        "POST /v1/agents/alice/rotate-token": () => ({
          status: 200,
          body: { ok: true, data: { name: "alice", token: "at_live_rotated" } }
        }),
        "GET /v1/agents/alice": () => ({ status: 200, body: { ok: true, data: { id: "a7", name: "alice" } } })
      })
      const client = yield* clientFor(server.url)
      const dm = yield* client.sendDm(agentToken, { to: "bob", text: "ping", mode: "steer" })
      assert.strictEqual(dm.id, "m1")
      assert.deepStrictEqual(server.seen[0]?.body, { to: "bob", text: "ping", mode: "steer" })
      assert.strictEqual((dm.data as { conversation_id: string }).conversation_id, "dm_1")
      assert.strictEqual((yield* client.postToChannel(agentToken, { channel: "#general", text: "hi" })).id, "m2")
      assert.strictEqual((yield* client.replyInThread(agentToken, { threadId: "m2", text: "re" })).id, "m3")
      const rotated = yield* client.rotateAgentToken(key, "alice")
      assert.strictEqual(rotated.id, "a7")
      assert.strictEqual(Redacted.value(rotated.token), "at_live_rotated")
    }))

  it("redactSecrets hides given values and credential-shaped text", () => {
    assert.strictEqual(
      redactSecrets("a secret-xyz b nt_live_abc c br_0123456789abcdef0123", [Redacted.make("secret-xyz")]),
      "a <redacted> b <redacted> c <redacted>"
    )
  })

  it("the tag key follows the house naming", () => {
    assert.strictEqual(EngineClient.key, "relay-broker/EngineClient")
  })
})

// ---------------------------------------------------------------------------------------------
// Against the embedded engine.

const startEngine = Effect.gen(function*() {
  const dataDir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "engine-client-"))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )
  return yield* EmbeddedEngine.start({ dataDir })
})

/** `POST /v1/nodes` is the node's business (TokenStore), not the EngineClient's: a raw call here. */
const createNode = (url: string, key: Credential, name: string) =>
  Effect.promise(() =>
    fetch(`${url}/v1/nodes`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${Redacted.value(key)}` },
      body: JSON.stringify({ name, kind: "ws", role: "broker" })
    }).then((response) => response.status)
  )

describe("EngineClient against the embedded engine", () => {
  it.scopedLive("workspace, agents (409 then rotate), node binding, DM, channel post and thread reply", () =>
    Effect.gen(function*() {
      const engine = yield* startEngine
      const client = yield* clientFor(engine.url)
      const workspace = yield* client.createWorkspace("engine-client-test")
      assert.match(Redacted.value(workspace.apiKey), /^rk_/)
      const info = yield* client.getWorkspace(workspace.apiKey)
      assert.strictEqual(info.id, workspace.workspaceId)
      assert.strictEqual(info.name, "engine-client-test")

      const alice = yield* client.createAgent(workspace.apiKey, { name: "alice", type: "agent" })
      const bob = yield* client.createAgent(workspace.apiKey, { name: "bob", type: "agent" })
      assert.match(Redacted.value(alice.token), /^at_/)
      const duplicate = yield* Effect.flip(client.createAgent(workspace.apiKey, { name: "alice", type: "agent" }))
      assert.strictEqual(duplicate.status, 409)
      assert.strictEqual(duplicate.code, "agent_already_exists")
      assert.notInclude(duplicate.message, Redacted.value(workspace.apiKey))
      const rotated = yield* client.rotateAgentToken(workspace.apiKey, "alice")
      assert.strictEqual(rotated.id, alice.id)
      assert.notStrictEqual(Redacted.value(rotated.token), Redacted.value(alice.token))

      assert.strictEqual(yield* createNode(engine.url, workspace.apiKey, "node-a"), 201)
      yield* client.bindAgentToNode(workspace.apiKey, "node-a", "bob")
      const noNode = yield* Effect.flip(client.bindAgentToNode(workspace.apiKey, "no-such-node", "bob"))
      assert.strictEqual(noNode.status, 404)

      const dm = yield* client.sendDm(rotated.token, { to: "bob", text: "ping" })
      assert.isString(dm.id)
      const unknown = yield* Effect.flip(client.sendDm(rotated.token, { to: "nobody", text: "ping" }))
      assert.strictEqual(unknown.status, 404)
      const post = yield* client.postToChannel(bob.token, { channel: "#general", text: "hello" })
      const reply = yield* client.replyInThread(rotated.token, { threadId: post.id, text: "hi back" })
      assert.notStrictEqual(reply.id, post.id)
      const refused = yield* Effect.flip(client.sendDm(alice.token, { to: "bob", text: "old token" }))
      assert.strictEqual(refused.status, 401)
    }))
})
