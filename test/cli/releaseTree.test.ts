import { assert, beforeAll, describe, it } from "@effect/vitest"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Duration, Effect, Schedule } from "effect"
import { isAlive } from "../support/processes.js"
import { cli, daemon, ensureBuilt, tempDir } from "./harness.js"

// Releasing an agent, and stopping the daemon, end every process the agent started, including a
// helper it detached into its own session (as codex does with `codex app-server`).

beforeAll(() => ensureBuilt(), 300_000)

const helperScript = (pidFile: string) =>
  `node -e 'const h = require("node:child_process").spawn("sleep", ["600"], { detached: true, stdio: "ignore" });` +
  ` require("node:fs").writeFileSync(${JSON.stringify(pidFile)}, String(h.pid)); h.unref()'; exec cat`

const within = <A, E, R>(check: Effect.Effect<A, E, R>) =>
  check.pipe(Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.upTo(Duration.minutes(1)))))

const helperPid = (pidFile: string) =>
  within(Effect.suspend(() =>
    existsSync(pidFile) && readFileSync(pidFile, "utf8").trim() !== ""
      ? Effect.succeed(Number(readFileSync(pidFile, "utf8")))
      : Effect.fail(new Error("the agent has not started its helper yet"))
  ))

const gone = (pid: number) =>
  within(Effect.suspend(() => isAlive(pid) ? Effect.fail(new Error(`pid ${pid} still runs`)) : Effect.void))

describe("release leaves nothing behind", () => {
  it.live("release ends a helper the agent detached into its own session; so does stopping the daemon", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("relay-release-tree-")
      const helpers: Array<number> = []
      yield* Effect.addFinalizer(() => Effect.sync(() => helpers.forEach((pid) => isAlive(pid) && process.kill(pid, "SIGKILL"))))
      yield* Effect.scoped(Effect.gen(function*() {
        const running = yield* daemon
        const spawnHelperAgent = (name: string) =>
          Effect.gen(function*() {
            const pidFile = join(dir, `${name}.pid`)
            const spawned = yield* cli(["spawn", "--state-dir", running.stateDir, name, "sh", "--", "-c", helperScript(pidFile)])
            assert.strictEqual(spawned.code, 0, spawned.stderr)
            const pid = yield* helperPid(pidFile)
            helpers.push(pid)
            assert.isTrue(isAlive(pid))
            return pid
          })
        const released = yield* spawnHelperAgent("detacher")
        const result = yield* cli(["release", "--state-dir", running.stateDir, "detacher"])
        assert.strictEqual(result.code, 0, result.stderr)
        yield* gone(released)
        // Stopping the daemon (the scope closes: SIGTERM) reaches a helper too.
        helpers.push(yield* spawnHelperAgent("stayer"))
      }))
      yield* gone(helpers[1]!)
    }).pipe(Effect.scoped), 240_000)
})
