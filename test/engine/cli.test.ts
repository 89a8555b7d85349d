import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { parseArgs } from "../../src/cli/engine.js"
import { cleanEnv, ensureBuilt, root } from "../cli/harness.js"
import { connectNode, createAgent, createWorkspace, data, enrollNode, registerAgent, tempDir } from "./support.js"

// `relay-broker engine`: its arguments, and the built command as a process (stdout line, SQLite file,
// the RELAY_ENGINE_DELIVER_LOG bench hook, clean stop on SIGTERM).

interface Running {
  readonly url: string
  readonly stdout: () => string
  readonly stop: (signal: NodeJS.Signals) => Promise<number | null>
}

const startProcess = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.async<Running>((resume) => {
      const child = spawn(process.execPath, [join(root, "dist", "main.js"), "engine", ...args], { env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)))
      child.stderr.on("data", (chunk) => (stderr += chunk))
      child.stdout.on("data", (chunk) => {
        stdout += chunk
        const match = /engine listening on (http:\/\/\S+)\n/.exec(stdout)
        if (match !== null) {
          resume(Effect.succeed({
            url: match[1]!,
            stdout: () => stdout,
            stop: (signal) => {
              child.kill(signal)
              return exited
            }
          }))
        }
      })
      child.once("exit", (code) => resume(Effect.dieMessage(`engine exited (${code}) before listening: ${stderr}`)))
    }),
    (running) => Effect.promise(() => running.stop("SIGKILL"))
  )

const runToExit = (args: ReadonlyArray<string>) =>
  Effect.async<{ code: number | null; stderr: string }>((resume) => {
    const child = spawn(process.execPath, [join(root, "dist", "main.js"), "engine", ...args], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.once("exit", (code) => resume(Effect.succeed({ code, stderr })))
  })

describe("relay-broker engine", () => {
  it("parses --port, --data and --host", () => {
    assert.deepStrictEqual(parseArgs(["--port", "4000", "--data", "/tmp/x"]), { port: 4000, dataDir: "/tmp/x", host: "127.0.0.1" })
    assert.deepStrictEqual(parseArgs(["--data=/d", "--host", "0.0.0.0"]), { port: 0, dataDir: "/d", host: "0.0.0.0" })
    assert.strictEqual(parseArgs(["--port", "4000"]), "--data <dir> is required")
    assert.strictEqual(parseArgs(["--port", "70000", "--data", "/d"]), "invalid --port '70000'")
    assert.strictEqual(parseArgs(["--verbose"]), "unknown argument '--verbose'")
  })

  it.scopedLive("prints its address, keeps SQLite in --data, logs deliver frames for the bench and stops on SIGTERM", () =>
    Effect.gen(function*() {
      yield* Effect.sync(ensureBuilt)
      const dir = yield* tempDir
      const log = join(dir, "deliver.log")
      const engine = yield* startProcess(["--port", "0", "--data", dir], { RELAY_ENGINE_DELIVER_LOG: log })
      assert.match(engine.stdout(), /^engine listening on http:\/\/127\.0\.0\.1:\d+\n$/)
      assert.isTrue(existsSync(join(dir, "engine.sqlite")))
      const ws = yield* createWorkspace(engine.url)
      const alice = yield* createAgent(ws, "alice")
      const node = yield* enrollNode(ws, "n1")
      const client = yield* connectNode(engine.url, node)
      yield* registerAgent(client, "bob")
      const sent = yield* data(engine.url, "POST", "/v1/dm", { token: alice.token, body: { to: "bob", text: "hi" } })
      yield* client.waitFor((f) => f.type === "deliver")
      const lines = readFileSync(log, "utf8").trim().split("\n").map((line) => JSON.parse(line))
      assert.strictEqual(lines.length, 1)
      assert.deepStrictEqual(Object.keys(lines[0]), ["msg_id", "agent", "seq", "t"])
      assert.deepStrictEqual([lines[0].msg_id, lines[0].agent, lines[0].seq], [sent.id, "bob", 1])
      assert.isAbove(lines[0].t, 1_600_000_000_000)
      const code = yield* Effect.promise(() => engine.stop("SIGTERM"))
      assert.strictEqual(code, 0)
      assert.strictEqual(engine.stdout().split("\n").filter((line) => line !== "").length, 1)
    }))

  it.scopedLive("bad arguments exit 2; a taken port exits 1 with a clear message", () =>
    Effect.gen(function*() {
      yield* Effect.sync(ensureBuilt)
      const usage = yield* runToExit(["--port", "1"])
      assert.strictEqual(usage.code, 2)
      assert.match(usage.stderr, /--data <dir> is required/)
      const dir = yield* tempDir
      const first = yield* startProcess(["--port", "0", "--data", dir], {})
      const port = new URL(first.url).port
      const clash = yield* runToExit(["--port", port, "--data", join(dir, "other")])
      assert.strictEqual(clash.code, 1)
      assert.match(clash.stderr, /could not start \(Listen\)/)
    }))
})
