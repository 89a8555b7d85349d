import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Inspectable, Option, Redacted } from "effect"
import { mkdtempSync, realpathSync, rmSync, symlinkSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import * as BrokerConfig from "../../src/broker/BrokerConfig.js"
import type { InvalidConfig } from "../../src/broker/errors.js"

const withEnv = (env: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

const complete = { RELAY_BASE_URL: "http://127.0.0.1:4000/", RELAY_WORKSPACE_KEY: "rk_live_abc", HOME: "/home/u" }

const failure = <A>(effect: Effect.Effect<A, InvalidConfig>) =>
  Effect.flip(effect).pipe(Effect.map((error) => error.message))

describe("BrokerConfig", () => {
  it.effect("reads the engine URL, key and defaults from the environment", () =>
    Effect.gen(function*() {
      const config = yield* BrokerConfig.config({ cwd: "/" }).pipe(withEnv(complete))
      assert.strictEqual(config.baseUrl, "http://127.0.0.1:4000")
      assert.strictEqual(Redacted.value(config.workspaceKey), "rk_live_abc")
      assert.strictEqual(config.nodeToken, undefined)
      assert.strictEqual(config.nodeName, hostname().trim() || "relay-node")
      assert.strictEqual(config.dataDir, "/home/u/.local/share/agent-relay")
      assert.strictEqual(config.stateDir, "/.agentworkforce/relay")
      assert.strictEqual(config.apiBind, "127.0.0.1")
      assert.strictEqual(config.apiPort, 0)
      assert.strictEqual(config.heartbeatInterval, 12_000)
      assert.strictEqual(config.requestTimeout, 30_000)
      assert.match(Redacted.value(config.brokerApiKey), /^br_[0-9a-f]{32}$/)
      assert.match(config.version, /^\d+\.\d+\.\d+/)
    }))

  it.effect("RELAYCAST_BASE_URL wins over RELAY_BASE_URL; the key variables are tried in order", () =>
    Effect.gen(function*() {
      const config = yield* BrokerConfig.config({ cwd: "/" }).pipe(withEnv({
        RELAY_BASE_URL: "http://a.example",
        RELAYCAST_BASE_URL: "https://b.example/base/",
        AGENT_RELAY_WORKSPACE_KEY: "rk_live_second",
        RELAY_API_KEY: "third",
        HOME: "/h"
      }))
      assert.strictEqual(config.baseUrl, "https://b.example/base")
      assert.strictEqual(Redacted.value(config.workspaceKey), "rk_live_second")
      const soft = yield* BrokerConfig.config({ cwd: "/" }).pipe(withEnv({ RELAY_BASE_URL: "http://a", RELAY_API_KEY: "anything", HOME: "/h" }))
      assert.strictEqual(Redacted.value(soft.workspaceKey), "anything")
    }))

  it.effect("flags win over the environment", () =>
    Effect.gen(function*() {
      const config = yield* BrokerConfig.config({
        cwd: "/",
        name: "  laptop ",
        stateDir: "state",
        apiPort: 4242,
        apiBind: "0.0.0.0",
        baseUrl: "http://flag.example",
        workspaceKey: "rk_flag"
      }).pipe(withEnv(complete))
      assert.strictEqual(config.nodeName, "laptop")
      assert.strictEqual(config.stateDir, "/state")
      assert.strictEqual(config.apiPort, 4242)
      assert.strictEqual(config.apiBind, "0.0.0.0")
      assert.strictEqual(config.baseUrl, "http://flag.example")
      assert.strictEqual(Redacted.value(config.workspaceKey), "rk_flag")
    }))

  it.effect("secrets are Redacted and never printed", () =>
    Effect.gen(function*() {
      const config = yield* BrokerConfig.config({ cwd: "/" }).pipe(withEnv({
        ...complete,
        RELAY_NODE_TOKEN: " nt_live_secret ",
        RELAY_BROKER_API_KEY: "br_secret"
      }))
      assert.strictEqual(Redacted.value(config.nodeToken!), "nt_live_secret")
      assert.strictEqual(Redacted.value(config.brokerApiKey), "br_secret")
      const printed = JSON.stringify(Inspectable.redact(config)) + String(config.workspaceKey) + Inspectable.format(config)
      assert.notInclude(printed, "secret")
      assert.notInclude(printed, "rk_live_abc")
    }))

  it.effect("the data dir follows AGENT_RELAY_DATA_DIR, then an absolute XDG_DATA_HOME, then HOME", () =>
    Effect.gen(function*() {
      const dataDir = (env: Record<string, string>) =>
        BrokerConfig.settings({ cwd: "/" }).pipe(withEnv(env), Effect.map((s) => s.dataDir))
      assert.strictEqual(yield* dataDir({ HOME: "/h", XDG_DATA_HOME: "/xdg" }), "/xdg/agent-relay")
      assert.strictEqual(yield* dataDir({ HOME: "/h", XDG_DATA_HOME: "relative" }), "/h/.local/share/agent-relay")
      assert.strictEqual(yield* dataDir({ HOME: "/h", XDG_DATA_HOME: "/xdg", AGENT_RELAY_DATA_DIR: "/d" }), "/d")
    }))

  it.effect("timings can be shortened through the environment", () =>
    Effect.gen(function*() {
      const config = yield* BrokerConfig.config({ cwd: "/" }).pipe(withEnv({
        ...complete,
        RELAY_BROKER_HEARTBEAT_MS: "50",
        RELAY_BROKER_REQUEST_TIMEOUT_MS: "200"
      }))
      assert.strictEqual(config.heartbeatInterval, 50)
      assert.strictEqual(config.requestTimeout, 200)
    }))

  it.effect("the working directory is canonical", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "broker-config-"))
      try {
        symlinkSync(dir, `${dir}-link`)
        const read = yield* BrokerConfig.settings({ cwd: `${dir}-link` }).pipe(withEnv({ HOME: "/h" }))
        assert.strictEqual(read.cwd, realpathSync(dir))
      } finally {
        rmSync(`${dir}-link`, { force: true })
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("settings tolerate a missing engine connection (embedded-engine mode), and complete fills it in", () =>
    Effect.gen(function*() {
      const read = yield* BrokerConfig.settings({ cwd: "/" }).pipe(withEnv({ HOME: "/h" }))
      assert.isTrue(Option.isNone(read.baseUrl))
      assert.isTrue(Option.isNone(read.workspaceKey))
      const full = BrokerConfig.complete(read, { baseUrl: "http://127.0.0.1:5555/", workspaceKey: Redacted.make("rk_x") })
      assert.strictEqual(full.baseUrl, "http://127.0.0.1:5555")
      assert.strictEqual(Redacted.value(full.workspaceKey), "rk_x")
    }))

  it.effect("missing or invalid values fail with one line naming the variable", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [Record<string, string>, BrokerConfig.BrokerFlags, string]> = [
        [{ RELAY_WORKSPACE_KEY: "rk_a" }, {}, "RELAY_BASE_URL: not set"],
        [{ RELAY_BASE_URL: "http://a" }, {}, "RELAY_WORKSPACE_KEY: not set"],
        [{ ...complete, RELAY_BASE_URL: "ftp://a" }, {}, "RELAY_BASE_URL: expected an http:// or https:// URL"],
        [{ ...complete, RELAYCAST_BASE_URL: "not a url" }, {}, "RELAYCAST_BASE_URL: not a URL"],
        [{ ...complete, RELAY_WORKSPACE_KEY: "at_live_wrong" }, {}, "RELAY_WORKSPACE_KEY: a workspace key starts with `rk_`"],
        [{ ...complete, RELAY_BROKER_HEARTBEAT_MS: "0" }, {}, "RELAY_BROKER_HEARTBEAT_MS: expected a positive"],
        [complete, { apiPort: 70000 }, "--api-port: expected a port number"]
      ]
      for (const [env, flags, expected] of cases) {
        const message = yield* failure(BrokerConfig.config({ cwd: "/", ...flags }).pipe(withEnv(env)))
        assert.include(message, expected)
        assert.notInclude(message, "\n")
        assert.notInclude(message, "at_live_wrong")
      }
    }))

  it.effect("layerFromFlags provides the tag; layer provides a fixed shape", () =>
    Effect.gen(function*() {
      const fromEnv = yield* BrokerConfig.BrokerConfig.pipe(
        Effect.provide(BrokerConfig.layerFromFlags({ cwd: "/", name: "n1" })),
        withEnv(complete)
      )
      assert.strictEqual(fromEnv.nodeName, "n1")
      const fixed = yield* BrokerConfig.BrokerConfig.pipe(Effect.provide(BrokerConfig.layer({ ...fromEnv, nodeName: "n2" })))
      assert.strictEqual(fixed.nodeName, "n2")
    }))
})
