import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Effect, Fiber, Layer } from "effect"
import { mkdirSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import {
  reapRecorders,
  api,
  type Broker,
  createEngineAgent,
  deadLetters,
  echoAgent,
  type Engine,
  engineCall,
  ensureBuilt,
  type NodeProxy,
  recorderAgent,
  spawnAgent,
  startBroker,
  startEngine,
  startProxy,
  stopChild,
  tempDir,
  waitFor,
  waitForScreen
} from "./deliveriesHarness.js"

// Deliveries end to end: real engine and broker processes, real agents in real terminals.

ensureBuilt()

class Setup extends Context.Tag("e2e/DeliveriesSetup")<Setup, {
  readonly home: string
  readonly engine: Engine
  readonly proxy: NodeProxy
  readonly broker: Broker
}>() {}

/** One engine, a proxy in front of it (to slip in frames the engine never sends) and one broker. */
const setup = Layer.scoped(
  Setup,
  Effect.gen(function*() {
    const home = yield* tempDir("relay-e2e-deliveries-")
    const engine = yield* startEngine(home)
    const proxy = yield* startProxy(engine.url)
    const broker = yield* startBroker({ home, baseUrl: proxy.url, workspaceKey: engine.workspaceKey })
    return { home, engine, proxy, broker }
  })
)

/** The files a recorder agent wrote, one per session: `<name>-<pid>.raw`. */
const recordings = (dir: string, name: string) =>
  readdirSync(dir)
    .filter((file) => file.startsWith(`${name}-`) && file.endsWith(".raw"))
    .map((file) => ({ file, bytes: readFileSync(join(dir, file)) }))


layer(setup, { excludeTestServices: true, timeout: 120_000 })("deliveries end to end", (it) => {
  it.effect("two agents: A pings B through the engine, B's terminal shows it, B answers pong, A's terminal shows it", () =>
    Effect.gen(function*() {
      const { broker, home } = yield* Setup
      yield* spawnAgent(broker, "ping-a", echoAgent, home)
      yield* spawnAgent(broker, "ping-b", echoAgent, home)
      yield* waitForScreen(broker, "ping-a", "ready as ping-a")
      yield* waitForScreen(broker, "ping-b", "ready as ping-b")
      const sent = yield* api(broker, "POST", "/api/send", { to: "ping-b", text: "ping", from: "ping-a" })
      assert.strictEqual(sent.status, 200, JSON.stringify(sent.body))
      assert.strictEqual(sent.body["from"], "ping-a")
      const messageId = sent.body["event_id"] as string
      yield* waitForScreen(broker, "ping-b", `read: Relay message from ping-a [`)
      yield* waitForScreen(broker, "ping-b", `${messageId}]: ping`)
      yield* waitForScreen(broker, "ping-b", "sent pong to ping-a")
      yield* waitForScreen(broker, "ping-a", /read: Relay message from ping-b \[[^\]]+\]: pong/)
    }))

  it.effect("a channel message reaches every member agent on the node except the sender", () =>
    Effect.gen(function*() {
      const { broker, home } = yield* Setup
      for (const name of ["chan-a", "chan-b", "chan-c"]) {
        yield* spawnAgent(broker, name, echoAgent, home)
        yield* waitForScreen(broker, name, `ready as ${name}`)
      }
      const sent = yield* api(broker, "POST", "/api/send", { to: "#general", text: "hello channel", from: "chan-a" })
      assert.strictEqual(sent.status, 200, JSON.stringify(sent.body))
      yield* waitForScreen(broker, "chan-b", "Relay message from chan-a in #general")
      yield* waitForScreen(broker, "chan-c", "Relay message from chan-a in #general")
      // A DM after it: per-agent order means that once it shows, a channel row for the sender
      // (which must not exist) would already have shown too.
      yield* api(broker, "POST", "/api/send", { to: "chan-a", text: "marker" })
      const aScreen = yield* waitForScreen(broker, "chan-a", "]: marker")
      assert.notInclude(aScreen, "hello channel")
    }))

  it.effect("hostile message bodies reach the terminal sanitised (the bytes written to the PTY)", () =>
    Effect.gen(function*() {
      const { broker, home } = yield* Setup
      const dir = join(home, "hostile")
      mkdirSync(dir, { recursive: true })
      yield* spawnAgent(broker, "hostile", recorderAgent, dir)
      yield* waitFor("the recorder's file", () => recordings(dir, "hostile")[0])
      const hostile = "A\x1b[201~B\x03C\x1b]0;owned\x07D\rE\u009b2JF\x7fG\r\nH"
      const sent = yield* api(broker, "POST", "/api/send", { to: "hostile", text: hostile })
      assert.strictEqual(sent.status, 200, JSON.stringify(sent.body))
      const bytes = yield* waitFor("the injection and its Enter", () => {
        const recording = recordings(dir, "hostile")[0]
        const text = recording?.bytes.toString("utf8") ?? ""
        return text.includes("Relay message from") && text.endsWith("\r") ? recording?.bytes : undefined
      })
      const text = bytes.toString("utf8")
      // Nothing could close a bracketed paste, press a key, set the title or move the cursor.
      assert.isFalse(bytes.includes(0x1b), "ESC reached the terminal")
      assert.isFalse(bytes.includes(0x03), "^C reached the terminal")
      assert.isFalse(bytes.includes(0x07), "BEL reached the terminal")
      assert.isFalse(bytes.includes(0x7f), "DEL reached the terminal")
      assert.isFalse(text.includes("\u009b"), "C1 CSI reached the terminal")
      // The only Enter is the broker's own, at the end.
      assert.strictEqual(text.indexOf("\r"), text.length - 1)
      assert.include(text, `]: A[201~BC]0;ownedD\nE2JFG\nH\r`)
    }))

  it.effect("an unknown recipient, an unsupported type and an undecodable payload end as dead letters, acked, with the reason in the API", () =>
    Effect.gen(function*() {
      const { broker, home, proxy } = yield* Setup
      const dir = join(home, "dead")
      mkdirSync(dir, { recursive: true })
      const spawned = yield* spawnAgent(broker, "dead-rec", recorderAgent, dir)
      yield* waitFor("the recorder's file", () => recordings(dir, "dead-rec")[0])
      const frame = (fields: Record<string, unknown>) =>
        JSON.stringify({
          v: 1,
          type: "deliver",
          agent: "dead-rec",
          agent_id: spawned.agent_id,
          delivery_id: `del_${String(fields["msg_id"])}`,
          seq: 0,
          mode: "wait",
          ...fields
        })
      const acksBefore = proxy.fromNode().filter((sent) => sent["type"] === "delivery.ack").length
      yield* proxy.inject(frame({
        agent: "ghost",
        agent_id: "agt_ghost",
        msg_id: "m_ghost",
        seq: 1,
        payload: { type: "dm.received", data: { text: "boo", agent_name: "x" } }
      }))
      yield* proxy.inject(frame({ msg_id: "m_mystery", payload: { type: "agent.mystery", data: {} } }))
      yield* proxy.inject(frame({ msg_id: "m_string", payload: "not an object" }))
      yield* proxy.inject(frame({ msg_id: "m_badmode", mode: "shout", payload: { type: "dm.received" } }))
      const letters = yield* waitFor("four dead letters", async () => {
        const all = await Effect.runPromise(deadLetters(broker))
        const ours = all.filter((letter) => ["m_ghost", "m_mystery", "m_string", "m_badmode"].includes(letter["msg_id"] as string))
        return ours.length === 4 ? ours : undefined
      })
      assert.deepStrictEqual(
        letters.map((letter) => [letter["msg_id"], letter["agent"], letter["reason"]])
          .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
        [
          ["m_badmode", "dead-rec", "undecodable"],
          ["m_ghost", "ghost", "unknown_agent"],
          ["m_mystery", "dead-rec", "unsupported_type"],
          ["m_string", "dead-rec", "undecodable"]
        ]
      )
      for (const letter of letters) assert.strictEqual(typeof letter["time"], "string")
      assert.deepStrictEqual(letters.find((letter) => letter["msg_id"] === "m_mystery")?.["payload"], {
        type: "agent.mystery",
        data: {}
      })
      // Each was acked.
      const acks = yield* waitFor("four acks", () => {
        const all = proxy.fromNode().filter((sent) => sent["type"] === "delivery.ack").slice(acksBefore)
        return all.length >= 4 ? all : undefined
      })
      assert.deepStrictEqual(acks.find((ack) => ack["agent"] === "ghost"), { type: "delivery.ack", v: 1, agent: "ghost", up_to_seq: 1 })
      assert.strictEqual(acks.filter((ack) => ack["agent"] === "dead-rec").length, 3)
      // Nothing reached the agent's terminal.
      assert.notInclude(recordings(dir, "dead-rec")[0]?.bytes.toString("utf8") ?? "", "Relay message")
      const report = yield* api(broker, "GET", "/api/node-delivery")
      const agents = report.body["agents"] as ReadonlyArray<Record<string, unknown>>
      const rec = agents.find((agent) => agent["agent"] === "dead-rec")
      assert.strictEqual((rec?.["counts"] as Record<string, number>)["dead_lettered"], 3)
    }))
})

describe("deliveries across a broker crash", () => {
  it.scopedLive("kill -9 while 200 messages stream to 5 agents: after a restart each is injected or dead-lettered, none twice into one session, and the engine's queue drains", () =>
    Effect.gen(function*() {
      const home = yield* tempDir("relay-e2e-restart-")
      const dir = join(home, "agents")
      mkdirSync(dir, { recursive: true })
      yield* Effect.addFinalizer(() => reapRecorders(dir))
      const engine = yield* startEngine(home)
      const names = ["r1", "r2", "r3", "r4", "r5"]
      const bodies = names.flatMap((name) => Array.from({ length: 40 }, (_, i) => `restart-${name}-${i}`))

      const first = yield* startBroker({ home, baseUrl: engine.url, workspaceKey: engine.workspaceKey })
      for (const name of names) yield* spawnAgent(first, name, recorderAgent, dir)
      yield* waitFor("five recorders", () => names.every((name) => recordings(dir, name).length === 1) ? true : undefined)
      const sender = yield* createEngineAgent(engine, "restart-sender")

      let sentCount = 0
      // Round-robin over the agents: the i-th message of each agent in turn.
      const order = Array.from({ length: 40 }, (_, i) => names.map((name) => ({ to: name, text: `restart-${name}-${i}` }))).flat()
      const stream = yield* Effect.forEach(order, ({ text, to }) =>
        engineCall(engine.url, "POST", "/v1/dm", { to, text }, sender).pipe(
          Effect.tap((response) => {
            sentCount++
            return response.status === 201 || response.status === 200
              ? Effect.void
              : Effect.fail(new Error(`send ${text}: ${response.status} ${JSON.stringify(response.body)}`))
          })
        ), { discard: true }).pipe(Effect.fork)

      yield* waitFor("60 messages sent", () => sentCount >= 60 ? true : undefined)
      yield* stopChild(first.child, "SIGKILL")
      yield* Fiber.join(stream)

      const second = yield* startBroker({ home, baseUrl: engine.url, workspaceKey: engine.workspaceKey })
      for (const name of names) yield* spawnAgent(second, name, recorderAgent, dir)
      yield* waitFor("five new sessions", () => names.every((name) => recordings(dir, name).length === 2) ? true : undefined)
      // Frames replayed before the agents were back were dead-lettered (unknown_agent): bring them in.
      const redelivered = yield* api(second, "POST", "/api/dead-letters/redeliver", { all: true })
      assert.strictEqual(redelivered.status, 200, JSON.stringify(redelivered.body))

      const deadBody = (letter: Record<string, unknown>) =>
        ((letter["payload"] as { data?: { text?: string } } | null)?.data?.text) ?? ""
      // An injection is the relay line then Enter. A terminal that was not in raw mode yet (the
      // agent had just started) turned that \r into \n; a line cut short by the crash has neither.
      const injectedCount = (text: string, body: string) => text.split(`]: ${body}\r`).length + text.split(`]: ${body}\n`).length - 2
      let missing: ReadonlyArray<string> = bodies
      const accounted = yield* waitFor("every message injected or dead-lettered", async () => {
        const letters = await Effect.runPromise(deadLetters(second))
        const dead = new Set(letters.map(deadBody))
        const sessions = names.flatMap((name) => recordings(dir, name)).map((recording) => recording.bytes.toString("utf8"))
        missing = bodies.filter((body) => !dead.has(body) && !sessions.some((text) => injectedCount(text, body) > 0))
        return missing.length === 0 ? { sessions, dead } : undefined
      }, 60).pipe(
        Effect.catchAll((error) =>
          Effect.gen(function*() {
            const report = yield* api(second, "GET", "/api/node-delivery")
            const letters = yield* deadLetters(second)
            return yield* Effect.fail(new Error([
              error.message,
              `missing (${missing.length}): ${missing.join(" ")}`,
              ...missing.flatMap((body) =>
                names.flatMap((name) => recordings(dir, name)).flatMap((recording) => {
                  const text = recording.bytes.toString("utf8")
                  const at = text.indexOf(body)
                  return at < 0 ? [] : [`${recording.file}: ${JSON.stringify(text.slice(Math.max(0, at - 120), at + 60))}`]
                })
              ),
              `dead letters: ${JSON.stringify(letters.map((letter) => [letter["agent"], letter["reason"], deadBody(letter)]))}`,
              `node-delivery: ${JSON.stringify(report.body)}`
            ].join("\n")))
          })
        )
      )

      for (const text of accounted.sessions) {
        for (const body of bodies) {
          assert.isAtMost(injectedCount(text, body), 1, `${body} injected twice into one session`)
        }
      }
      // The engine has nothing left to deliver to them.
      for (const name of names) {
        yield* waitFor(`${name}'s engine queue to drain`, async () => {
          const detail = await Effect.runPromise(engineCall(engine.url, "GET", `/v1/agents/${name}`, undefined, engine.workspaceKey))
          const pending = (detail.data as { pending_deliveries?: ReadonlyArray<unknown> } | undefined)?.pending_deliveries
          return pending !== undefined && pending.length === 0 ? true : undefined
        })
      }
    }), 240_000)
})
