import { FetchHttpClient } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as BrokerConfig from "../../src/broker/BrokerConfig.js"
import * as TokenStore from "../../src/broker/TokenStore.js"

// ---------------------------------------------------------------------------------------------
// A scripted engine HTTP API: records every request, answers from a per-route script.

interface Recorded {
  readonly method: string
  readonly url: string
  readonly authorization: string | undefined
  readonly body: unknown
}

type Answer = { readonly status: number; readonly body: unknown }

const engineHttp = (script: {
  readonly workspace?: () => Answer
  readonly mint: (attempt: number) => Answer
}) =>
  Effect.acquireRelease(
    Effect.async<{ readonly baseUrl: string; readonly requests: Array<Recorded>; readonly close: () => void }>((resume) => {
      const requests: Array<Recorded> = []
      let mints = 0
      const server = createServer((req: IncomingMessage, res: ServerResponse) => {
        let raw = ""
        req.on("data", (chunk) => (raw += chunk))
        req.on("end", () => {
          requests.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, body: raw === "" ? undefined : JSON.parse(raw) })
          const answer = req.method === "GET" && req.url === "/v1/workspace"
            ? (script.workspace ?? (() => ({ status: 200, body: { ok: true, data: { id: "ws_1", name: "w" } } })))()
            : req.method === "POST" && req.url === "/v1/nodes"
            ? script.mint(++mints)
            : { status: 404, body: { ok: false } }
          res.writeHead(answer.status, { "content-type": "application/json" })
          res.end(typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body))
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ baseUrl: `http://127.0.0.1:${port}`, requests, close: () => server.close() }))
      })
    }),
    (server) => Effect.sync(() => server.close())
  )

const minted = (token: string): Answer => ({ status: 201, body: { ok: true, data: { id: "node_x", name: "n", token } } })

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "token-store-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const configFor = (baseUrl: string, dataDir: string, overrides: Partial<BrokerConfig.BrokerConfigShape> = {}): BrokerConfig.BrokerConfigShape => ({
  baseUrl,
  workspaceKey: Redacted.make("rk_live_0123456789abcdef"),
  nodeToken: undefined,
  nodeName: "laptop",
  stateDir: join(dataDir, "state"),
  dataDir,
  cwd: "/work/project",
  brokerApiKey: Redacted.make("br_0123456789abcdef0123456789abcdef"),
  apiBind: "127.0.0.1",
  apiPort: 0,
  heartbeatInterval: 12_000,
  requestTimeout: 30_000,
  version: "9.9.9",
  ...overrides
})

const tokenStore = (config: BrokerConfig.BrokerConfigShape) =>
  TokenStore.TokenStore.pipe(
    Effect.provide(TokenStore.layer.pipe(
      Layer.provide(Layer.mergeAll(BrokerConfig.layer(config), FetchHttpClient.layer, NodeFileSystem.layer))
    ))
  )

const modeOf = (path: string) => statSync(path).mode & 0o777

describe("TokenStore: node id", () => {
  it("matches the upstream test vectors", () => {
    assert.strictEqual(
      TokenStore.deriveNodeId("node_seed123", "/Users/will/Projects/relay", "workspace-a"),
      "node_9d523415c2b9e7529929af6e897cb8d0"
    )
    assert.strictEqual(
      TokenStore.deriveNodeId("node_seed123", "/Users/will/Projects/relay", "workspace-b"),
      "node_2d0a3ae228bd33c44545572baff3f0de"
    )
  })

  it("sanitises node ids for file names", () => {
    assert.strictEqual(TokenStore.sanitizeNodeId("node_ab-9"), "node_ab-9")
    assert.strictEqual(TokenStore.sanitizeNodeId("../etc/passwd"), "___etc_passwd")
    assert.strictEqual(TokenStore.sanitizeNodeId(""), "node")
  })

  it("redacts credentials, bearer headers and token fields", () => {
    const text = TokenStore.redactSecrets(
      "key rk_live_abc Bearer xyz {\"token\":\"nt_whatever\"} my-secret",
      [Redacted.make("my-secret")]
    )
    assert.notInclude(text, "rk_live_abc")
    assert.notInclude(text, "xyz")
    assert.notInclude(text, "nt_whatever")
    assert.notInclude(text, "my-secret")
  })
})

describe("TokenStore: token cache scoping", () => {
  const scope = { nodeId: "node_a", workspaceId: "ws_1", baseUrl: "http://e:1" }
  const cached = { node_id: "node_a", workspace_id: "ws_1", base_url: "http://e:1/", token: " nt_live_t " }

  it("hits only when node id, workspace and base URL all match", () => {
    assert.deepStrictEqual(TokenStore.cachedTokenFor(cached, scope), Option.some("nt_live_t"))
    assert.isTrue(Option.isNone(TokenStore.cachedTokenFor({ ...cached, node_id: "node_b" }, scope)))
    assert.isTrue(Option.isNone(TokenStore.cachedTokenFor({ ...cached, workspace_id: "ws_2" }, scope)))
    assert.isTrue(Option.isNone(TokenStore.cachedTokenFor({ ...cached, base_url: "http://other:1" }, scope)))
    const { base_url: _, ...legacy } = cached
    assert.isTrue(Option.isNone(TokenStore.cachedTokenFor(legacy, scope)))
    assert.isTrue(Option.isNone(TokenStore.cachedTokenFor({ ...cached, token: "  " }, scope)))
  })
})

describe("TokenStore", () => {
  it.scopedLive("creates the machine seed (0600), derives the node id, mints and caches the token (0600)", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const engine = yield* engineHttp({ mint: () => minted("nt_live_first") })
      const store = yield* tokenStore(configFor(engine.baseUrl, dataDir))

      const identity = yield* store.identity
      const seed = readFileSync(join(dataDir, "machine-id"), "utf8")
      assert.match(seed, /^node_[0-9a-f]{32}\n$/)
      assert.strictEqual(modeOf(join(dataDir, "machine-id")), 0o600)
      assert.deepStrictEqual(identity, {
        nodeId: TokenStore.deriveNodeId(seed.trim(), "/work/project", "ws_1"),
        nodeName: "laptop",
        workspaceId: "ws_1"
      })

      const token = yield* store.token
      assert.strictEqual(Redacted.value(token), "nt_live_first")
      const mint = engine.requests.find((request) => request.url === "/v1/nodes")!
      assert.strictEqual(mint.authorization, "Bearer rk_live_0123456789abcdef")
      assert.deepStrictEqual(mint.body, {
        node_id: identity.nodeId,
        name: "laptop",
        kind: "ws",
        role: "broker",
        version: "relay-broker/9.9.9"
      })

      const cachePath = join(dataDir, "node-tokens", `${identity.nodeId}.json`)
      assert.strictEqual(modeOf(cachePath), 0o600)
      assert.deepStrictEqual(JSON.parse(readFileSync(cachePath, "utf8")), {
        node_id: identity.nodeId,
        workspace_id: "ws_1",
        base_url: engine.baseUrl,
        token: "nt_live_first"
      })

      // The same token is served from memory: no second mint.
      assert.strictEqual(Redacted.value(yield* store.token), "nt_live_first")
      assert.strictEqual(engine.requests.filter((request) => request.url === "/v1/nodes").length, 1)
    }))

  it.scopedLive("a new process reuses the matching cache and mints again on every kind of mismatch", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const engine = yield* engineHttp({ mint: (n) => minted(`nt_live_${n}`) })
      const config = configFor(engine.baseUrl, dataDir)
      const first = yield* tokenStore(config)
      const { nodeId } = yield* first.identity
      assert.strictEqual(Redacted.value(yield* first.token), "nt_live_1")

      const second = yield* tokenStore(config)
      assert.strictEqual(Redacted.value(yield* second.token), "nt_live_1")
      const mints = () => engine.requests.filter((request) => request.url === "/v1/nodes").length
      assert.strictEqual(mints(), 1)

      const cachePath = join(dataDir, "node-tokens", `${nodeId}.json`)
      const good = { node_id: nodeId, workspace_id: "ws_1", base_url: engine.baseUrl, token: "nt_live_cached" }
      const mismatches = [
        { ...good, node_id: "node_other" },
        { ...good, workspace_id: "ws_other" },
        { ...good, base_url: "http://127.0.0.1:1" },
        { node_id: nodeId, workspace_id: "ws_1", token: "nt_live_cached" },
        "{ not json"
      ]
      for (const [index, content] of mismatches.entries()) {
        writeFileSync(cachePath, typeof content === "string" ? content : JSON.stringify(content))
        const store = yield* tokenStore(config)
        assert.notStrictEqual(Redacted.value(yield* store.token), "nt_live_cached")
        assert.strictEqual(mints(), 2 + index)
      }
      writeFileSync(cachePath, JSON.stringify(good))
      assert.strictEqual(Redacted.value(yield* (yield* tokenStore(config)).token), "nt_live_cached")
      assert.strictEqual(mints(), 1 + mismatches.length)
    }))

  it.scopedLive("the auto node id changes with the workspace, and an existing seed is kept", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      writeFileSync(join(dataDir, "machine-id"), "node_seed123\n")
      const workspaceA = yield* engineHttp({ workspace: () => ({ status: 200, body: { ok: true, data: { id: "workspace-a" } } }), mint: () => minted("nt_live_a") })
      const workspaceB = yield* engineHttp({ workspace: () => ({ status: 200, body: { ok: true, data: { id: "workspace-b" } } }), mint: () => minted("nt_live_b") })
      const cwd = "/Users/will/Projects/relay"
      const a = yield* (yield* tokenStore(configFor(workspaceA.baseUrl, dataDir, { cwd }))).identity
      const b = yield* (yield* tokenStore(configFor(workspaceB.baseUrl, dataDir, { cwd }))).identity
      assert.strictEqual(a.nodeId, "node_9d523415c2b9e7529929af6e897cb8d0")
      assert.strictEqual(b.nodeId, "node_2d0a3ae228bd33c44545572baff3f0de")
      assert.strictEqual(readFileSync(join(dataDir, "machine-id"), "utf8"), "node_seed123\n")
    }))

  it.scopedLive("pinned RELAY_NODE_TOKEN: used as is, never minted or cached; the node id is the seed verbatim", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      writeFileSync(join(dataDir, "machine-id"), "node_pinned_seed\n")
      const engine = yield* engineHttp({ mint: () => minted("nt_live_minted") })
      const store = yield* tokenStore(configFor(engine.baseUrl, dataDir, { nodeToken: Redacted.make("nt_live_pinned") }))
      assert.strictEqual(Redacted.value(yield* store.token), "nt_live_pinned")
      assert.strictEqual((yield* store.identity).nodeId, "node_pinned_seed")
      assert.isFalse(engine.requests.some((request) => request.url === "/v1/nodes"))
      assert.isFalse(existsSync(join(dataDir, "node-tokens")))
    }))

  it.scopedLive("remint drops the cache, mints again and persists the new token", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const engine = yield* engineHttp({ mint: (n) => minted(`nt_live_${n}`) })
      const store = yield* tokenStore(configFor(engine.baseUrl, dataDir))
      const { nodeId } = yield* store.identity
      assert.strictEqual(Redacted.value(yield* store.token), "nt_live_1")
      assert.strictEqual(Redacted.value(yield* store.remint), "nt_live_2")
      assert.strictEqual(Redacted.value(yield* store.token), "nt_live_2")
      const cachePath = join(dataDir, "node-tokens", `${nodeId}.json`)
      assert.strictEqual(JSON.parse(readFileSync(cachePath, "utf8")).token, "nt_live_2")
      assert.strictEqual(modeOf(cachePath), 0o600)
    }))

  it.scopedLive("a 4xx fails at once with the status and a redacted body", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const engine = yield* engineHttp({
        mint: () => ({
          status: 403,
          body: { ok: false, error: { code: "forbidden", message: "key rk_live_0123456789abcdef has no rights; Bearer nt_live_leak" } }
        })
      })
      const error = yield* Effect.flip((yield* tokenStore(configFor(engine.baseUrl, dataDir))).token)
      assert.strictEqual(error._tag, "MintFailed")
      assert.strictEqual(error.reason, "Rejected")
      assert.strictEqual(error.status, 403)
      assert.include(error.body, "forbidden")
      assert.notInclude(error.message, "rk_live_0123456789abcdef")
      assert.notInclude(error.message, "nt_live_leak")
      assert.strictEqual(engine.requests.filter((request) => request.url === "/v1/nodes").length, 1)
    }))

  it.scopedLive("5xx answers are retried (4 attempts in all), then succeed or fail as ServerError", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const flaky = yield* engineHttp({
        mint: (n) => n < 3 ? { status: 503, body: "busy" } : minted("nt_live_after_retry")
      })
      assert.strictEqual(Redacted.value(yield* (yield* tokenStore(configFor(flaky.baseUrl, dataDir))).token), "nt_live_after_retry")
      assert.strictEqual(flaky.requests.filter((request) => request.url === "/v1/nodes").length, 3)

      const broken = yield* engineHttp({ mint: () => ({ status: 500, body: "{\"token\":\"nt_live_secret\"}" }) })
      const error = yield* Effect.flip((yield* tokenStore(configFor(broken.baseUrl, join(dataDir, "b")))).token)
      assert.strictEqual(error.reason, "ServerError")
      assert.strictEqual(error.status, 500)
      assert.notInclude(error.body, "nt_live_secret")
      assert.strictEqual(broken.requests.filter((request) => request.url === "/v1/nodes").length, 4)
    }))

  it.scopedLive("an unreachable engine is a Transport failure after the retries", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const engine = yield* engineHttp({ mint: () => minted("unused") })
      engine.close()
      const error = yield* Effect.flip((yield* tokenStore(configFor(engine.baseUrl, dataDir))).token)
      assert.strictEqual(error._tag, "MintFailed")
      assert.strictEqual(error.reason, "Transport")
    }))

  it.scopedLive("an answer without a token is InvalidResponse, not retried", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const engine = yield* engineHttp({ mint: () => ({ status: 201, body: { ok: true, data: { token: "  " } } }) })
      const error = yield* Effect.flip((yield* tokenStore(configFor(engine.baseUrl, dataDir))).token)
      assert.strictEqual(error.reason, "InvalidResponse")
      assert.strictEqual(engine.requests.filter((request) => request.url === "/v1/nodes").length, 1)
    }))

  it.scopedLive("an unwritable data dir still yields a working (ephemeral) identity and token", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataDir = join(dir, "file-not-dir")
      writeFileSync(dataDir, "")
      const engine = yield* engineHttp({ mint: () => minted("nt_live_mem") })
      const store = yield* tokenStore(configFor(engine.baseUrl, dataDir))
      assert.match((yield* store.identity).nodeId, /^node_[0-9a-f]{32}$/)
      assert.strictEqual(Redacted.value(yield* store.token), "nt_live_mem")
    }))
})
