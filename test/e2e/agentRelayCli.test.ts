import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync } from "node:fs"
import { createServer } from "node:net"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { api, mainJs, tempRoot } from "../support/daemonProcess.js"
import { eventually } from "../support/polling.js"
import { freshMachineEnv, isAlive, launchScript, stopChild } from "../support/processes.js"

// The agent-relay 9.1.6 CLI, the real one, with relay-broker as its broker (`AGENT_RELAY_BIN`):
// local up, local agent spawn, local agent list, message dm send, local agent release, local down.
// Offline: telemetry and the update check are off, HOME is a temp dir, the engine is the embedded one.

const require = createRequire(import.meta.url)
const cliJs = join(dirname(require.resolve("agent-relay/package.json")), "dist", "cli", "index.js")

const freePort = () =>
  Effect.promise(() =>
    new Promise<number>((resolve) => {
      const server = createServer()
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as { port: number }).port
        server.close(() => resolve(port))
      })
    })
  )

/** One CLI command to its end: exit code and output. */
const run = (args: ReadonlyArray<string>, cwd: string, env: NodeJS.ProcessEnv) =>
  Effect.promise(() =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [cliJs, ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (chunk) => (stdout += chunk))
      child.stderr.on("data", (chunk) => (stderr += chunk))
      child.once("exit", (code) => resolve({ code, stdout, stderr }))
    })
  )

/** Lines that report a failure (the broker logs at INFO/WARN on stderr; ERROR is a failure). */
const errorLines = (lines: ReadonlyArray<string>) =>
  lines.filter((line) => /level=ERROR|level=FATAL|\berror\b|disconnected|failed|skipped/i.test(line))

describe.skipIf(!existsSync(mainJs))("agent-relay 9.1.6 CLI drives relay-broker", () => {
  it.scopedLive("local up, agent spawn, agent list, message dm send, agent release, local down: all clean", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot("relay-broker-cli-")
      const project = join(root, "project")
      mkdirSync(project, { recursive: true })
      mkdirSync(join(root, "home"), { recursive: true })
      const env = freshMachineEnv(root, {
        HOME: join(root, "home"),
        AGENT_RELAY_BIN: mainJs,
        AGENT_RELAY_TELEMETRY_DISABLED: "1",
        DO_NOT_TRACK: "1",
        AGENT_RELAY_SKIP_UPDATE_CHECK: "1",
        AGENT_RELAY_BROKER_PORT: String((yield* freePort()) - 1)
      })
      delete env["BROKER_BINARY_PATH"]

      const up = launchScript(cliJs, ["local", "up"], env, project)
      yield* Effect.addFinalizer(() => stopChild(up.child, "SIGKILL"))
      yield* eventually("`local up` reports the broker started", Effect.sync(() => up.stdout.includes("Broker started.")))
      const stateDir = join(project, ".agentworkforce", "relay")
      const connection = JSON.parse(readFileSync(join(stateDir, "connection.json"), "utf8"))
      // The implicit local fleet node registers over /api/fleet/ws.
      yield* eventually(
        "the fleet node is connected",
        Effect.sync(() => {
          try {
            return JSON.parse(readFileSync(join(stateDir, "fleet-node.json"), "utf8")).connected === true
          } catch {
            return false
          }
        })
      )

      const spawned = yield* run(["local", "agent", "spawn", "cat", "--name", "catter"], project, env)
      assert.strictEqual(spawned.code, 0, spawned.stderr)
      assert.match(spawned.stdout, /Spawned catter/)
      const listed = yield* run(["local", "agent", "list"], project, env)
      assert.strictEqual(listed.code, 0, listed.stderr)
      const agents = JSON.parse(listed.stdout)
      assert.deepStrictEqual(agents.map((agent: any) => [agent.name, agent.channels]), [["catter", ["general"]]])

      // `message dm send` talks to the engine (relaycast) as an agent: register one, then send.
      const session = (yield* api(connection.url, connection.api_key, "GET", "/api/session")).body
      const engine = ["--base-url", session.relay_base_url, "--workspace-key", session.workspace_key]
      const registered = yield* run(["agent", "register", "tester", ...engine], project, env)
      assert.strictEqual(registered.code, 0, registered.stderr)
      const token = JSON.parse(registered.stdout).token
      const sent = yield* run(["message", "dm", "send", "catter", "hello from the cli", ...engine, "--token", token], project, env)
      assert.strictEqual(sent.code, 0, sent.stderr)
      yield* eventually(
        "catter shows the message",
        Effect.map(
          api(connection.url, connection.api_key, "GET", "/api/spawned/catter/snapshot"),
          (answer) => String(answer.body.screen).includes("hello from the cli")
        )
      )

      const released = yield* run(["local", "agent", "release", "catter"], project, env)
      assert.strictEqual(released.code, 0, released.stderr)
      const down = yield* run(["local", "down"], project, env)
      assert.strictEqual(down.code, 0, down.stderr)
      assert.match(down.stdout, /Stopped/)
      assert.isFalse(isAlive(connection.pid))
      assert.isFalse(existsSync(join(stateDir, "connection.json")))

      const commands = [spawned, listed, registered, sent, released, down]
      assert.deepStrictEqual(commands.flatMap((command) => errorLines(command.stderr.split("\n"))), [])
      // `local up` stays up after its broker is stopped (upstream's CLI does that with any broker, and
      // its sidecar then retries): what it logged until the broker stopped must be clean.
      const upLog = [...up.stdout, ...up.stderr]
      const beforeStop = upLog.slice(0, upLog.findIndex((line) => line.includes("ECONNREFUSED")) >>> 0)
      assert.deepStrictEqual(errorLines(beforeStop), [])
    }), 180_000)
})
