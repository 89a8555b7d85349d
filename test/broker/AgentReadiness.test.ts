import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Schedule } from "effect"
import * as AgentReadiness from "../../src/broker/AgentReadiness.js"
import * as EventLog from "../../src/broker/EventLog.js"
import { layer as ptyLayer, PtyHost } from "../../src/broker/PtyHost.js"
import { readinessProfile } from "../../src/broker/readinessTable.js"
import { standinTui } from "../support/standins.js"

// AgentReadiness over real terminals: the stand-in TUI read as claude, and line programs.

const services = (options: AgentReadiness.AgentReadinessOptions = {}) =>
  Layer.mergeAll(ptyLayer, AgentReadiness.layerWith(options)).pipe(Layer.provideMerge(EventLog.layer))

const env = (extra: Record<string, string>) => {
  const base: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) base[key] = value
  return { ...base, STANDIN_DIR: process.env.TMPDIR ?? "/tmp", ...extra }
}

const spawnStandin = (name: string, extra: Record<string, string>) =>
  Effect.gen(function*() {
    const host = yield* PtyHost
    const readiness = yield* AgentReadiness.AgentReadiness
    const pty = yield* host.spawn({ command: process.execPath, args: [standinTui], env: env({ RELAY_AGENT_NAME: name, ...extra }) })
    const handle = yield* readiness.track({ name, cli: "claude", pty, profile: readinessProfile("claude") })
    yield* handle.start
    return { pty, handle }
  })

const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, until: (value: A) => boolean) =>
  Effect.repeat(effect, { schedule: Schedule.spaced("20 millis"), until }).pipe(
    Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("never happened") })
  )

describe("AgentReadiness", () => {
  it.scopedLive("the agent's own signal makes a starting TUI ready, decided by signal, with worker_ready", () =>
    Effect.gen(function*() {
      const readiness = yield* AgentReadiness.AgentReadiness
      const { handle, pty } = yield* spawnStandin("sig1", { STANDIN_MODE: "never-ready", STANDIN_DEAF_MS: "100" })
      assert.strictEqual(handle.peek().state, "starting")
      const after = yield* readiness.signal("sig1", "mcp")
      assert.strictEqual(after.state, "ready")
      const ready = yield* handle.awaitReady
      assert.strictEqual(ready.decidedBy, "signal")
      // A second signal changes nothing.
      assert.deepStrictEqual(yield* readiness.signal("sig1"), ready)
      const events = yield* (yield* EventLog.EventLog).recent
      const announced = events.filter((event) => event.kind === "worker_ready")
      assert.strictEqual(announced.length, 1)
      assert.deepInclude(announced[0], { name: "sig1", runtime: "pty", cli: "claude", pid: pty.pid, readiness: "signal" })
      const unknown = yield* Effect.exit(readiness.signal("nobody"))
      assert.isTrue(Exit.isFailure(unknown))
    }).pipe(Effect.provide(services({ timeout: "60 seconds" }))))

  it.scopedLive("the screen decides once the prompt shows; a line program is ready at once", () =>
    Effect.gen(function*() {
      const readiness = yield* AgentReadiness.AgentReadiness
      const { handle } = yield* spawnStandin("scr1", { STANDIN_DEAF_MS: "300" })
      assert.strictEqual((yield* handle.awaitReady).decidedBy, "screen")
      const host = yield* PtyHost
      const cat = yield* host.spawn({ command: "cat", args: [], env: env({}) })
      const line = yield* readiness.track({ name: "cat1", cli: "cat", pty: cat, profile: readinessProfile("cat") })
      assert.strictEqual(line.peek().state, "starting")
      yield* line.start
      assert.deepInclude(line.peek(), { state: "ready", decidedBy: "immediate" })
      assert.deepInclude(Option.getOrThrow(yield* readiness.get("cat1")), { state: "ready" })
    }).pipe(Effect.provide(services())))

  it.scopedLive("a blocked agent stays blocked past the timeout; waiting for it fails when its process ends", () =>
    Effect.gen(function*() {
      const { handle, pty } = yield* spawnStandin("blk1", { STANDIN_MODE: "sign-in" })
      yield* eventually(Effect.sync(handle.peek), (state) => state.state === "blocked")
      assert.deepInclude(handle.peek(), { state: "blocked", screen: "Select login method:" })
      const waiting = yield* Effect.fork(handle.awaitReady)
      // Past the timeout, still blocked: the timeout never lets a blocked agent through.
      yield* Effect.sleep("2500 millis")
      assert.strictEqual(handle.peek().state, "blocked")
      yield* pty.kill()
      const exit = yield* waiting.await
      assert.isTrue(Exit.isFailure(exit))
    }).pipe(Effect.provide(services({ timeout: "2 seconds" }))))
})
