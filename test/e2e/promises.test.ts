import { assert, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { mkdirSync, readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import {
  api,
  type Broker,
  deadLetters,
  type Engine,
  type NodeProxy,
  recorderAgent,
  spawnAgent,
  startBroker,
  startEngine,
  startProxy,
  tempDir,
  waitFor
} from "./deliveriesHarness.js"

// README promises checked on real processes: the engine, a proxy in front of it (to send frames
// the engine never would), the broker, and a recorder agent in a real terminal.

class Setup extends Context.Tag("e2e/PromisesSetup")<Setup, {
  readonly home: string
  readonly engine: Engine
  readonly proxy: NodeProxy
  readonly broker: Broker
}>() {}

const setup = Layer.scoped(
  Setup,
  Effect.gen(function*() {
    const home = yield* tempDir("relay-e2e-promises-")
    const engine = yield* startEngine(home)
    const proxy = yield* startProxy(engine.url)
    const broker = yield* startBroker({ home, baseUrl: proxy.url, workspaceKey: engine.workspaceKey })
    return { home, engine, proxy, broker }
  })
)

/** What the recorder session of `name` in `dir` read from its terminal. */
const recorded = (dir: string, name: string): string => {
  const file = readdirSync(dir).find((entry) => entry.startsWith(`${name}-`) && entry.endsWith(".raw"))
  return file === undefined ? "" : readFileSync(join(dir, file), "utf8")
}

/** Every file under `dir`, recursively. */
const filesUnder = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry)
    return statSync(path).isDirectory() ? filesUnder(path) : [path]
  })

layer(setup, { excludeTestServices: true, timeout: 120_000 })("README promises end to end", (it) => {
  it.effect("a seq gap is held, then surfaced in order after the grace period, with a missing_upstream dead letter", () =>
    Effect.gen(function*() {
      const { broker, home, proxy } = yield* Setup
      const dir = join(home, "gap")
      mkdirSync(dir, { recursive: true })
      const spawned = yield* spawnAgent(broker, "gap-rec", recorderAgent, dir)
      yield* waitFor("the recorder running", () => readdirSync(dir).length > 0 ? true : undefined)
      const frame = (seq: number) =>
        JSON.stringify({
          v: 1,
          type: "deliver",
          agent: "gap-rec",
          agent_id: spawned.agent_id,
          delivery_id: `del_gap_${seq}`,
          msg_id: `m_gap_${seq}`,
          seq,
          mode: "wait",
          payload: { type: "dm.received", data: { text: `gap message ${seq}`, agent_name: "tester" } }
        })
      // seq 1 sets the cursor; 4 and 3 arrive with 2 missing (4 first).
      yield* proxy.inject(frame(1))
      yield* waitFor("seq 1 typed", () => recorded(dir, "gap-rec").includes("gap message 1") ? true : undefined)
      yield* proxy.inject(frame(4))
      yield* proxy.inject(frame(3))
      const text = yield* waitFor("seqs 3 and 4 typed", () => {
        const now = recorded(dir, "gap-rec")
        return now.includes("gap message 3") && now.includes("gap message 4") ? now : undefined
      })
      assert.isBelow(text.indexOf("gap message 3"), text.indexOf("gap message 4"), "surfaced in seq order")
      const letters = (yield* deadLetters(broker)).filter((letter) => letter["agent"] === "gap-rec")
      assert.deepStrictEqual(letters.map((letter) => [letter["reason"], letter["gap"]]), [["missing_upstream", { from: 2, to: 2 }]])
      const acks = yield* waitFor("the ack up to seq 4", () => {
        const all = proxy.fromNode().filter((sent) => sent["type"] === "delivery.ack" && sent["agent"] === "gap-rec")
        return all.some((ack) => ack["up_to_seq"] === 4) ? all : undefined
      })
      // Nothing past seq 1 was acked while 3 and 4 were held.
      assert.deepStrictEqual(acks.map((ack) => ack["up_to_seq"]).filter((seq) => seq !== 1), [3, 4])
      const report = yield* api(broker, "GET", "/api/node-delivery")
      const agent = (report.body["agents"] as ReadonlyArray<Record<string, any>>).find((entry) => entry["agent"] === "gap-rec")
      assert.deepStrictEqual([agent?.["cursor"], agent?.["held"], agent?.["last_gap"]], [4, [], { from: 2, to: 2 }])
      assert.strictEqual(agent?.["counts"]["gaps"], 1)
    }))

  it.effect("a spawned agent's environment holds none of the broker's secrets (/proc/<pid>/environ)", () =>
    Effect.gen(function*() {
      const { broker, engine, home } = yield* Setup
      const dir = join(home, "env")
      mkdirSync(dir, { recursive: true })
      const spawned = yield* spawnAgent(broker, "env-rec", recorderAgent, dir)
      yield* waitFor("the recorder running", () => readdirSync(dir).length > 0 ? true : undefined)
      const environ = readFileSync(`/proc/${spawned.pid}/environ`, "utf8").split("\0").filter((entry) => entry !== "")
      const vars = new Map(environ.map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)]))
      // Read from the right process: it has its own identity.
      assert.strictEqual(vars.get("RELAY_AGENT_NAME"), "env-rec")
      assert.match(vars.get("RELAY_AGENT_TOKEN") ?? "", /^at_live_/)
      // The node token the broker minted and cached (mode 0600 somewhere under its home).
      const nodeTokens = filesUnder(home)
        .filter((path) => !path.startsWith(join(home, "engine")))
        .flatMap((path) => [...readFileSync(path, "latin1").matchAll(/nt_live_[A-Za-z0-9_-]+/g)].map((match) => match[0]))
      assert.isAbove(nodeTokens.length, 0, "found the broker's node token")
      const secrets = [engine.workspaceKey, broker.apiKey, ...nodeTokens]
      const joined = environ.join("\n")
      for (const secret of secrets) assert.notInclude(joined, secret)
      for (const name of ["RELAY_WORKSPACE_KEY", "RELAY_API_KEY", "RELAY_BROKER_API_KEY", "RELAY_NODE_TOKEN"]) {
        assert.isFalse(vars.has(name), `${name} in the agent's environment`)
      }
    }))
})
