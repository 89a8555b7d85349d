// relay-broker's layers in your own Effect program, with your own PtyHost: this one runs no
// terminals, it records what would have been typed into them. It starts an embedded engine, brings
// a node up on it, binds an agent, sends it a DM and prints what the agent would have seen.
// In your project, import from "relay-broker" (and "relay-broker/engine") instead of ../src.
import { FetchHttpClient, FileSystem } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Deferred, Effect, Layer, Queue, Schedule, Stream } from "effect"
import { join } from "node:path"
import {
  AgentReadiness, AgentRegistry, AgentRoster, BrokerConfig, DeadLetters, Deliveries, DeliveryBook, EmbeddedEngine, EngineClient,
  EventLog, NodeControl, PtyHost, TerminalScreen, TokenStore
} from "../src/index.js"

/** A PtyHost whose "terminals" put every injected message on `seen`. */
const recordingPtyHost = (seen: Queue.Enqueue<{ readonly agent: string; readonly text: string }>) => {
  let nextPid = 1
  return Layer.succeed(PtyHost.PtyHost, PtyHost.PtyHost.of({
    spawn: (options) =>
      Effect.gen(function*() {
        const exit = yield* Deferred.make<PtyHost.PtyExit>()
        const stop = Deferred.succeed(exit, { code: 0, signal: null })
        yield* Effect.addFinalizer(() => stop)
        const agent = options.env["RELAY_AGENT_NAME"] ?? options.command
        return {
          pid: nextPid++,
          write: () => Effect.void,
          inject: (text) => Queue.offer(seen, { agent, text }),
          resize: () => Effect.void,
          snapshot: Effect.succeed(""),
          screen: Effect.succeed(TerminalScreen.plainView("")),
          ansi: Effect.succeed(""),
          withKeyboard: (use) => use(() => Effect.void),
          output: Stream.never,
          exited: Deferred.await(exit),
          kill: () => Effect.asVoid(stop)
        }
      })
  }))
}

/** The broker's node-side services over a given config and PtyHost (no local API, state in memory). */
const brokerLayer = (config: BrokerConfig.BrokerConfigShape, ptyHost: Layer.Layer<PtyHost.PtyHost>) =>
  Deliveries.layer.pipe(
    Layer.provideMerge(AgentRegistry.layer),
    Layer.provideMerge(NodeControl.layer),
    Layer.provideMerge(
      Layer.mergeAll(TokenStore.layer, EngineClient.layer, DeliveryBook.layerMemory, DeadLetters.layerMemory, AgentReadiness.layer)
    ),
    Layer.provideMerge(Layer.mergeAll(EventLog.layer, AgentRoster.layer, Deliveries.configLayer(), ptyHost)),
    Layer.provideMerge(BrokerConfig.layer(config)),
    Layer.provideMerge(Layer.merge(NodeContext.layer, FetchHttpClient.layer))
  )

export const program = Effect.gen(function*() {
  const dir = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "relay-custom-host-" })
  const engine = yield* EmbeddedEngine.start({ dataDir: join(dir, "engine"), port: 0 })
  const admin = yield* EngineClient.makeWith({ baseUrl: engine.url })
  const workspace = yield* admin.createWorkspace("custom-host")
  const settings = yield* BrokerConfig.settings({ stateDir: join(dir, "state"), name: "custom-host" })
  const config = { ...BrokerConfig.complete(settings, { baseUrl: engine.url, workspaceKey: workspace.apiKey }), dataDir: dir }

  const seen = yield* Queue.unbounded<{ readonly agent: string; readonly text: string }>()
  return yield* Effect.gen(function*() {
    const node = yield* NodeControl.NodeControl
    yield* node.status.pipe(Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (status) => status.connected }))
    const registry = yield* AgentRegistry.AgentRegistry
    const alice = yield* registry.spawn({ name: "alice", cli: "my-harness" })
    yield* Console.log(`node "${config.nodeName}" is up; bound ${alice.name} (agent id ${alice.agentId})`)

    const client = yield* EngineClient.EngineClient
    const bob = yield* client.createAgent(workspace.apiKey, { name: "bob", type: "human" })
    yield* client.sendDm(bob.token, { to: "alice", text: "Hello alice, please review PR 42." })

    const message = yield* Queue.take(seen)
    yield* Console.log(`${message.agent} would have seen:\n${message.text}`)
    return message
  }).pipe(Effect.provide(brokerLayer(config, recordingPtyHost(seen))))
}).pipe(Effect.scoped, Effect.provide(Layer.merge(NodeContext.layer, FetchHttpClient.layer)))

if (import.meta.url === `file://${process.argv[1]}`) NodeRuntime.runMain(program)
