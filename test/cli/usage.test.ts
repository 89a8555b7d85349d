import { assert, beforeAll, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { join } from "node:path"
import { Effect } from "effect"
import { cleanEnv, cli, ensureBuilt, tempDir } from "./harness.js"

// The paths that need no daemon: help, bad usage (exit 2), and "no daemon" (exit 1, one line).

beforeAll(() => ensureBuilt(), 300_000)

const clientCommands: ReadonlyArray<ReadonlyArray<string>> = [
  ["agents"],
  ["spawn", "alice", "bash"],
  ["release", "alice"],
  ["send", "alice", "hello"],
  ["logs", "alice"],
  ["status"]
]

const lines = (text: string) => text.split("\n").filter((line) => line.trim() !== "")

/** A port on 127.0.0.1 that nothing listens on. */
const closedPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })
)

describe("relay-broker --help", () => {
  it.live("the root lists every command", () =>
    Effect.gen(function*() {
      const result = yield* cli(["--help"])
      assert.strictEqual(result.code, 0, result.stderr)
      for (const name of ["up", "engine", "agents", "spawn", "release", "send", "logs", "status"]) {
        assert.include(result.stdout, `- ${name}`)
      }
    }))

  it.live("no arguments at all shows the help", () =>
    Effect.gen(function*() {
      const result = yield* cli([])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "COMMANDS")
    }))

  it.live("up --help is up's own usage", () =>
    Effect.gen(function*() {
      const result = yield* cli(["up", "--help"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "relay-broker up")
      assert.include(result.stdout, "--state-dir")
    }))

  for (const name of ["engine", "agents", "spawn", "release", "send", "logs", "status"]) {
    it.live(`${name} --help describes ${name}`, () =>
      Effect.gen(function*() {
        const result = yield* cli([name, "--help"])
        assert.strictEqual(result.code, 0, result.stderr)
        assert.include(result.stdout, `$ ${name}`)
        assert.include(result.stdout, "DESCRIPTION")
      }))
  }
})

describe("bad usage exits 2", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, string]> = [
    ["an unknown command", ["frobnicate"], "Invalid subcommand"],
    ["spawn without its cli", ["spawn", "alice"], "Missing argument <cli>"],
    ["send without the text", ["send", "alice"], "Missing argument <text>"],
    ["release without a name", ["release"], "Missing argument <name>"],
    ["an unknown option", ["agents", "--colour"], "colour"],
    ["a stray argument", ["status", "extra"], "extra"],
    ["--url without a key", ["agents", "--url", "http://127.0.0.1:9"], "--url needs --api-key"],
    ["--url that is not a URL", ["status", "--url", "localhost:9", "--api-key", "k"], "--url must be an http(s) URL"],
    ["--api-key without --url", ["agents", "--api-key", "k"], "--api-key goes with --url"]
  ]
  for (const [title, args, says] of cases) {
    it.live(title, () =>
      Effect.gen(function*() {
        const result = yield* cli(args)
        assert.strictEqual(result.code, 2, `stdout: ${result.stdout}\nstderr: ${result.stderr}`)
        assert.include(result.stderr, says)
        assert.notInclude(result.stderr, "    at ", "no stack trace")
        assert.strictEqual(result.stdout, "")
      }))
  }
})

describe("no daemon exits 1 with one line naming where it looked", () => {
  for (const args of clientCommands) {
    it.scopedLive(`${args[0]} in a directory with no daemon`, () =>
      Effect.gen(function*() {
        const cwd = yield* tempDir("relay-cli-nodaemon-")
        const result = yield* cli(args, { cwd })
        assert.strictEqual(result.code, 1, result.stderr)
        assert.deepStrictEqual(lines(result.stderr), [
          `relay-broker ${args[0]}: no daemon running (no connection.json in ${join(cwd, ".agentworkforce", "relay")})`
        ])
        assert.strictEqual(result.stdout, "")
      }))
  }

  it.scopedLive("--state-dir is where it looks", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("relay-cli-nodaemon-")
      const stateDir = join(dir, "elsewhere")
      const result = yield* cli(["status", "--state-dir", stateDir])
      assert.strictEqual(result.code, 1)
      assert.deepStrictEqual(lines(result.stderr), [`relay-broker status: no daemon running (no connection.json in ${stateDir})`])
    }))

  it.scopedLive("AGENT_RELAY_STATE_DIR is where it looks when there is no --state-dir", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("relay-cli-nodaemon-")
      const result = yield* cli(["agents"], { env: cleanEnv({ AGENT_RELAY_STATE_DIR: dir }) })
      assert.strictEqual(result.code, 1)
      assert.include(result.stderr, `no connection.json in ${dir}`)
    }))

  it.scopedLive("a connection.json whose pid is gone", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempDir("relay-cli-stale-")
      const gone = spawnSync("node", ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" })
      const pid = Number(gone.stdout)
      const port = yield* closedPort
      writeFileSync(join(stateDir, "connection.json"), JSON.stringify({ url: `http://127.0.0.1:${port}`, port, api_key: "br_x", pid }))
      const result = yield* cli(["agents", "--state-dir", stateDir])
      assert.strictEqual(result.code, 1)
      assert.deepStrictEqual(lines(result.stderr), [
        `relay-broker agents: no daemon running (connection.json in ${stateDir} names pid ${pid}, which is not running)`
      ])
    }))

  it.scopedLive("a connection.json that is not JSON", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempDir("relay-cli-broken-")
      mkdirSync(stateDir, { recursive: true })
      writeFileSync(join(stateDir, "connection.json"), "{ half")
      const result = yield* cli(["status", "--state-dir", stateDir])
      assert.strictEqual(result.code, 1)
      assert.deepStrictEqual(lines(result.stderr), [
        `relay-broker status: no daemon running (${join(stateDir, "connection.json")} is not valid JSON)`
      ])
    }))

  it.live("--url where nothing listens", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const url = `http://127.0.0.1:${port}`
      const result = yield* cli(["agents", "--url", url, "--api-key", "br_x"])
      assert.strictEqual(result.code, 1)
      assert.deepStrictEqual(lines(result.stderr), [`relay-broker agents: no daemon running (nothing answers at ${url}, from ${url})`])
    }))

  it.live("RELAY_BROKER_URL and RELAY_BROKER_API_KEY stand for --url and --api-key", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const url = `http://127.0.0.1:${port}`
      const result = yield* cli(["status"], { env: cleanEnv({ RELAY_BROKER_URL: url, RELAY_BROKER_API_KEY: "br_x" }) })
      assert.strictEqual(result.code, 1)
      assert.include(result.stderr, `nothing answers at ${url}`)
    }))
})
