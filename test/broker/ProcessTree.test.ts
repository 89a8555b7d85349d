import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { makeWith, processTagEnv } from "../../src/broker/ProcessTree.js"
import { eventually } from "../support/polling.js"
import { isAlive } from "../support/processes.js"

// A program that starts a helper in its own session (as codex does with its app-server), then exits:
// the helper is reparented away from it, and only its inherited environment still says whose it is.
const detachingProgram = (pidFile: string) =>
  `const { spawn } = require("node:child_process");` +
  `const fs = require("node:fs");` +
  `const helper = spawn("sleep", ["600"], { detached: true, stdio: "ignore" });` +
  `fs.writeFileSync(${JSON.stringify(pidFile)}, String(helper.pid));` +
  `helper.unref();`

describe("ProcessTree", () => {
  // Live clock: the reap polls on a Schedule, which the TestClock would never advance when the
  // helper is still alive at the first look (a loaded machine).
  it.live("finds and ends a detached helper by the tag its environment inherited", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "relay-tree-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const tree = yield* makeWith({ grace: "1 second" })
      const tag = yield* tree.newTag
      const pidFile = join(dir, "helper.pid")
      const parent = spawn("node", ["-e", detachingProgram(pidFile)], {
        env: { ...process.env, [processTagEnv]: tag },
        stdio: "ignore"
      })
      yield* Effect.async<void>((resume) => {
        parent.once("exit", () => resume(Effect.void))
      })
      const helper = Number(readFileSync(pidFile, "utf8"))
      yield* Effect.addFinalizer(() => Effect.sync(() => isAlive(helper) && process.kill(helper, "SIGKILL")))
      assert.isTrue(isAlive(helper), "the helper outlived its parent")
      // Another tag finds nothing.
      assert.deepStrictEqual(yield* tree.find(yield* tree.newTag), [])
      assert.deepStrictEqual(yield* tree.find(tag), [helper])
      assert.deepStrictEqual(yield* tree.reap(tag), [helper])
      yield* eventually("the helper is gone", Effect.sync(() => !isAlive(helper)))
      assert.deepStrictEqual(yield* tree.find(tag), [])
    }).pipe(Effect.scoped))
})
