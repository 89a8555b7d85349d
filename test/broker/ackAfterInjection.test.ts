import { FetchHttpClient, FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Redacted, Schedule } from "effect"
import { join } from "node:path"
import {
  AgentReadiness,
  AgentRegistry,
  AgentRoster,
  BrokerConfig,
  DeadLetters,
  Deliveries,
  DeliveryBook,
  EmbeddedEngine,
  EngineClient,
  EventLog,
  NodeControl,
  PtyHost,
  TokenStore
} from "../../src/index.js"
import { eventually, realSleep } from "../support/polling.js"

// "An ack means the bytes are in the terminal", against a real pty (node-pty running `cat`) and the
// embedded engine: while the injection has not returned, the engine's delivery row is not acked,
// even though the bytes are already readable in the terminal; once it returns, the row is acked.

interface Gate {
  /** Completed with the injected text once the real pty write returned. */
  readonly written: Deferred.Deferred<string>
  /** The injection returns only when this is completed. */
  readonly release: Deferred.Deferred<void>
}

/** The real PtyHost, with each inject held after its write until the test releases it. */
const gatedPtyHost = (gate: Gate) =>
  Layer.effect(
    PtyHost.PtyHost,
    Effect.map(PtyHost.PtyHost, (host) =>
      PtyHost.PtyHost.of({
        spawn: (options) =>
          Effect.map(host.spawn(options), (pty) => ({
            ...pty,
            inject: (text, mode) =>
              pty.inject(text, mode).pipe(
                Effect.zipRight(Deferred.succeed(gate.written, text)),
                Effect.zipRight(Deferred.await(gate.release))
              )
          }))
      }))
  ).pipe(Layer.provide(PtyHost.layer))

const brokerLayer = (config: BrokerConfig.BrokerConfigShape, ptyHost: Layer.Layer<PtyHost.PtyHost>) =>
  Deliveries.layer.pipe(
    Layer.provideMerge(AgentRegistry.layer),
    Layer.provideMerge(NodeControl.layer),
    Layer.provideMerge(Layer.mergeAll(TokenStore.layer, EngineClient.layer, DeliveryBook.layerMemory, DeadLetters.layerMemory, AgentReadiness.layer)),
    Layer.provideMerge(Layer.mergeAll(EventLog.layer, AgentRoster.layer, Deliveries.configLayer(), ptyHost)),
    Layer.provideMerge(BrokerConfig.layer(config)),
    Layer.provideMerge(Layer.merge(NodeContext.layer, FetchHttpClient.layer))
  )

/** The status of alice's delivery rows in the engine (its own view, `GET /v1/deliveries`). */
const rowStatuses = (url: string, token: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}/v1/deliveries?status=queued,delivered,acked,failed,dead_lettered`, {
      headers: { authorization: `Bearer ${token}` }
    })
    const body = await response.json() as { data: ReadonlyArray<{ status: string; message: { text: string } }> }
    return body.data.map((row) => [row.message.text, row.status] as const)
  })

describe("ack after injection (real pty, embedded engine)", () => {
  it.scopedLive("the engine's row is not acked while the injection has not returned, though the bytes are in the terminal", () =>
    Effect.gen(function*() {
      const dir = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "relay-ack-after-" })
      const engine = yield* EmbeddedEngine.start({ dataDir: join(dir, "engine"), port: 0 })
      const admin = yield* EngineClient.makeWith({ baseUrl: engine.url })
      const workspace = yield* admin.createWorkspace("ack-after-injection")
      const settings = yield* BrokerConfig.settings({ stateDir: join(dir, "state"), name: "ack-node" })
      const config = { ...BrokerConfig.complete(settings, { baseUrl: engine.url, workspaceKey: workspace.apiKey }), dataDir: dir }
      const gate: Gate = { written: yield* Deferred.make<string>(), release: yield* Deferred.make<void>() }

      yield* Effect.gen(function*() {
        const node = yield* NodeControl.NodeControl
        yield* node.status.pipe(Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (status) => status.connected }))
        const registry = yield* AgentRegistry.AgentRegistry
        yield* registry.spawn({ name: "alice", cli: "cat" })
        const alice = yield* registry.lookup("alice")
        const token = Redacted.value(alice.token)
        const client = yield* EngineClient.EngineClient
        const bob = yield* client.createAgent(workspace.apiKey, { name: "bob", type: "human" })
        yield* client.sendDm(bob.token, { to: "alice", text: "typed before acked" })

        const text = yield* Deferred.await(gate.written)
        assert.include(text, "typed before acked")
        yield* eventually("the bytes readable in alice's terminal", Effect.map(alice.pty.snapshot, (screen) => screen.includes("typed before acked")))
        // The injection has not returned: the row stays unacked (watched for a while, as the ack
        // would travel over the node socket).
        for (let look = 0; look < 10; look++) {
          assert.deepStrictEqual(yield* rowStatuses(engine.url, token), [["typed before acked", "delivered"]])
          yield* realSleep(50)
        }
        yield* Deferred.succeed(gate.release, undefined)
        yield* eventually("the row acked", Effect.map(rowStatuses(engine.url, token), (rows) => rows[0]?.[1] === "acked"))
      }).pipe(Effect.provide(brokerLayer(config, gatedPtyHost(gate))))
    }).pipe(Effect.provide(Layer.merge(NodeContext.layer, FetchHttpClient.layer))))
})
