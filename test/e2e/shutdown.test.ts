import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import WebSocket from "ws"
import { api, mainJs, type RunningDaemon, startDaemon, tempRoot, until } from "../support/daemonProcess.js"
import { freshMachineEnv, isAlive } from "../support/processes.js"

// Stopping is always prompt: SIGTERM, SIGINT and POST /api/shutdown end the daemon whatever clients
// are connected (open /ws streams are closed, agents released, connection.json removed).

/**
 * The bound that matters to upstream clients: `agent-relay local down` and harness-driver's shutdown()
 * wait 5 s, then give up or SIGKILL. On a quiet machine the daemon stops in 0.3-0.9 s; the bound is
 * the clients' so that a loaded machine does not fail the test (the bug it guards against is a
 * daemon that never stops).
 */
const promptMillis = 5_000

/** A `/ws` event client that stays connected until the daemon closes it. */
const eventClient = (daemon: RunningDaemon) =>
  Effect.promise(() =>
    new Promise<{ readonly closed: Promise<number> }>((resolve, reject) => {
      const socket = new WebSocket(`${daemon.url.replace(/^http/, "ws")}/ws`, { headers: { "x-api-key": daemon.apiKey } })
      const closed = new Promise<number>((done) => socket.once("close", (code) => done(code)))
      socket.once("open", () => resolve({ closed }))
      socket.once("error", reject)
    })
  )

const stopWith = (how: "SIGTERM" | "SIGINT" | "api") =>
  Effect.gen(function*() {
    const root = yield* tempRoot("relay-broker-stop-")
    const stateDir = join(root, "state")
    const daemon = yield* startDaemon(["up", "--state-dir", stateDir, "--api-port", "0"], stateDir, freshMachineEnv(root))
    yield* Effect.promise(() => until(daemon, () => daemon.stderr.some((line) => line.includes("connected to ws://")) || undefined))
    const spawned = yield* api(daemon.url, daemon.apiKey, "POST", "/api/spawn", { name: "sleeper", cli: "cat" })
    assert.strictEqual(spawned.status, 200, JSON.stringify(spawned.body))
    const clients = [yield* eventClient(daemon), yield* eventClient(daemon)]

    const started = Date.now()
    if (how === "api") {
      const answer = yield* api(daemon.url, daemon.apiKey, "POST", "/api/shutdown")
      assert.deepStrictEqual(answer.body, { status: "shutting_down" })
    } else {
      daemon.child.kill(how)
    }
    const code = yield* Effect.promise(() => daemon.exited)
    const took = Date.now() - started
    assert.strictEqual(code, 0, daemon.stderr.join("\n"))
    assert.isBelow(took, promptMillis, `stopping took ${took} ms`)
    assert.isFalse(existsSync(join(stateDir, "connection.json")))
    assert.isFalse(isAlive(spawned.body.pid), "the agent outlived the daemon")
    for (const client of clients) yield* Effect.promise(() => client.closed)
    assert.isTrue(daemon.stderr.some((line) => line.includes("message=stopped")), daemon.stderr.join("\n"))
  })

describe.skipIf(!existsSync(mainJs))("stopping with clients connected", () => {
  it.scopedLive("SIGTERM with two /ws clients: exit 0, promptly", () => stopWith("SIGTERM"), 30_000)
  it.scopedLive("SIGINT with two /ws clients: exit 0, promptly", () => stopWith("SIGINT"), 30_000)
  it.scopedLive("POST /api/shutdown with two /ws clients: exit 0, promptly", () => stopWith("api"), 30_000)
})
