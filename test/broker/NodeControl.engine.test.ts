import { FetchHttpClient } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Redacted, Scope } from "effect"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as AgentRoster from "../../src/broker/AgentRoster.js"
import * as BrokerConfig from "../../src/broker/BrokerConfig.js"
import * as NodeControl from "../../src/broker/NodeControl.js"
import * as TokenStore from "../../src/broker/TokenStore.js"
import { EmbeddedEngine } from "../../src/engine/index.js"
import { eventually } from "../support/polling.js"

// The node session against the embedded engine: real HTTP, real WebSocket, real SQLite.

const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const json = (url: string, init: RequestInit = {}) =>
  Effect.promise(() => fetch(url, init).then(async (response) => ({ status: response.status, body: await response.json() as any })))

const createWorkspace = (baseUrl: string, name: string) =>
  Effect.map(
    json(`${baseUrl}/v1/workspaces`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) }),
    ({ body }) => ({ id: body.data.workspace_id as string, key: body.data.api_key as string })
  )

const getNode = (baseUrl: string, key: string, name: string) =>
  Effect.map(json(`${baseUrl}/v1/nodes/${name}`, { headers: { authorization: `Bearer ${key}` } }), ({ body }) => body.data)

const setup = Effect.gen(function*() {
  const engine = yield* EmbeddedEngine.start({ dataDir: yield* tempDir("engine-") })
  const workspace = yield* createWorkspace(engine.url, "node-session")
  const dataDir = yield* tempDir("broker-data-")
  const settings = yield* BrokerConfig.settings({ cwd: dataDir, name: "laptop" })
  const config = BrokerConfig.complete(
    { ...settings, nodeToken: undefined, dataDir, heartbeatInterval: 1_000, requestTimeout: 5_000 },
    { baseUrl: engine.url, workspaceKey: Redacted.make(workspace.key) }
  )
  return { config, engine, workspace }
})

/** The broker's node session as the daemon composes it, built in `scope`. */
const startBroker = (config: BrokerConfig.BrokerConfigShape, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const platform = Layer.mergeAll(FetchHttpClient.layer, NodeFileSystem.layer, BrokerConfig.layer(config))
    const tokens = TokenStore.layer.pipe(Layer.provideMerge(platform))
    const session = NodeControl.layer.pipe(Layer.provideMerge(Layer.merge(tokens, AgentRoster.layer)))
    const context = yield* Layer.buildWithScope(session, scope)
    return {
      node: Context.get(context, NodeControl.NodeControl),
      tokens: Context.get(context, TokenStore.TokenStore),
      roster: Context.get(context, AgentRoster.AgentRoster)
    }
  })

describe("NodeControl against the embedded engine", () => {
  it.scopedLive("mints, connects, registers and heartbeats; the engine sees the node online; agent.register binds", () =>
    Effect.gen(function*() {
      const { config, engine, workspace } = yield* setup
      const scope = yield* Scope.make()
      const { node, tokens } = yield* startBroker(config, scope)
      yield* eventually("connected", Effect.map(node.status, (s) => s.connected))

      const identity = yield* tokens.identity
      assert.strictEqual(identity.workspaceId, workspace.id)
      assert.strictEqual(identity.nodeId, TokenStore.deriveNodeId(
        readFileSync(join(config.dataDir, "machine-id"), "utf8").trim(),
        config.cwd,
        workspace.id
      ))
      const cached = JSON.parse(readFileSync(TokenStore.tokenCachePath(config.dataDir, identity.nodeId), "utf8"))
      assert.match(cached.token, /^nt_live_/)

      yield* eventually("the engine sees the node online", Effect.map(getNode(engine.url, workspace.key, "laptop"), (n) => n?.status === "online"))
      const seen = yield* getNode(engine.url, workspace.key, "laptop")
      assert.strictEqual(seen.id, identity.nodeId)
      assert.strictEqual(seen.version, `relay-broker/${config.version}`)
      // Heartbeats keep coming: the engine's timestamp moves.
      yield* eventually(
        "a later heartbeat",
        Effect.map(getNode(engine.url, workspace.key, "laptop"), (n) => n.last_heartbeat_at !== seen.last_heartbeat_at)
      )

      const agent = yield* node.registerAgent({ name: "worker-1" })
      assert.isString(agent.agent_id)
      assert.match(agent.token, /^at_live_/)

      const status = yield* node.status
      assert.deepInclude(status, { connected: true, tokenPresent: true, remints: 0, nodeId: identity.nodeId, nodeName: "laptop" })

      // A clean stop deregisters: the engine marks the node offline.
      yield* Scope.close(scope, Exit.void)
      yield* eventually("offline after shutdown", Effect.map(getNode(engine.url, workspace.key, "laptop"), (n) => n.status === "offline"))
    }))

  it.scopedLive("a restart reuses the cached token; a stale cached token is re-minted after the 401", () =>
    Effect.gen(function*() {
      const { config, engine, workspace } = yield* setup
      const first = yield* Scope.make()
      const broker = yield* startBroker(config, first)
      yield* eventually("first connection", Effect.map(broker.node.status, (s) => s.connected))
      const { nodeId } = yield* broker.tokens.identity
      const cachePath = TokenStore.tokenCachePath(config.dataDir, nodeId)
      const minted = JSON.parse(readFileSync(cachePath, "utf8")).token
      yield* Scope.close(first, Exit.void)

      const second = yield* Scope.make()
      const again = yield* startBroker(config, second)
      yield* eventually("reconnected with the cached token", Effect.map(again.node.status, (s) => s.connected))
      assert.strictEqual((yield* again.node.status).remints, 0)
      assert.strictEqual(JSON.parse(readFileSync(cachePath, "utf8")).token, minted)
      yield* Scope.close(second, Exit.void)

      // A token the engine does not know (e.g. rotated by another enrolment): 401, remint, connect.
      mkdirSync(join(config.dataDir, "node-tokens"), { recursive: true })
      writeFileSync(cachePath, JSON.stringify({ node_id: nodeId, workspace_id: workspace.id, base_url: engine.url, token: "nt_live_000000000000000000000000000000000000000000000000" }))
      const third = yield* Scope.make()
      const stale = yield* startBroker(config, third)
      yield* eventually("connected after a remint", Effect.map(stale.node.status, (s) => s.connected))
      const status = yield* stale.node.status
      assert.strictEqual(status.remints, 1)
      const fresh = JSON.parse(readFileSync(cachePath, "utf8")).token
      assert.match(fresh, /^nt_live_/)
      assert.notStrictEqual(fresh, "nt_live_000000000000000000000000000000000000000000000000")
      yield* Scope.close(third, Exit.void)
    }), { timeout: 30_000 })
})
