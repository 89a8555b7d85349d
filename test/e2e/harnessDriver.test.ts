import { HarnessDriverClient } from "@agent-relay/harness-driver"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { eventually } from "../support/polling.js"
import { mainJs, tempRoot } from "../support/daemonProcess.js"
import { freshMachineEnv, isAlive } from "../support/processes.js"

// harness-driver 9.1.6, the real client, launching relay-broker as its broker binary
// (`BROKER_BINARY_PATH`): `<bin> init --instance-name … --channels general`, then the session,
// a `cat` agent, a message, the list, the release and the shutdown, as its users write them.

const upstreamEnv = (root: string): Record<string, string> => {
  const env = freshMachineEnv(root, {
    HOME: join(root, "home"),
    BROKER_BINARY_PATH: mainJs,
    AGENT_RELAY_TELEMETRY_DISABLED: "1",
    DO_NOT_TRACK: "1",
    AGENT_RELAY_SKIP_UPDATE_CHECK: "1"
  })
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined))
}

const spawnClient = (cwd: string, env: Record<string, string>, stderr: Array<string>) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      HarnessDriverClient.spawn({ binaryPath: mainJs, cwd, env, channels: ["general"], onStderr: (line) => stderr.push(line) })
    ),
    (client) => Effect.promise(() => client.shutdown().catch(() => undefined))
  )

describe.skipIf(!existsSync(mainJs))("harness-driver 9.1.6 drives relay-broker", () => {
  it.scopedLive("the bin is executable; spawn(), session, a cat agent, send, list, release, shutdown", () =>
    Effect.gen(function*() {
      assert.strictEqual(statSync(mainJs).mode & 0o111, 0o111, "dist/main.js must be executable")
      const root = yield* tempRoot("relay-broker-hd-")
      const project = join(root, "project")
      mkdirSync(join(root, "home"), { recursive: true })
      mkdirSync(project, { recursive: true })
      const stderr: Array<string> = []
      const client = yield* spawnClient(project, upstreamEnv(root), stderr)
      const brokerPid = client.brokerPid!

      const session = yield* Effect.promise(() => client.getSession())
      assert.strictEqual(session.mode, "ephemeral")
      assert.strictEqual(session.protocol_version, 2)
      const renewal: unknown = yield* Effect.promise(() => client.renewLease())
      assert.deepStrictEqual(renewal, { renewed: true, expires_in_secs: 120, persist: false })

      const handle = yield* Effect.promise(() => client.spawnPty({ name: "catter", cli: "cat", channels: ["dev"], team: "blue" }))
      assert.strictEqual(handle.name, "catter")
      const agents = yield* Effect.promise(() => client.listAgents())
      const listed = agents.find((agent) => agent.name === "catter")
      assert.isDefined(listed)
      assert.deepStrictEqual([...(listed!.channels ?? [])].sort(), ["dev", "general"])

      const sent = yield* Effect.promise(() => client.sendMessage({ to: "catter", text: "hello from the driver", from: "tester" }))
      assert.isString(sent.event_id)
      assert.deepStrictEqual(sent.targets, ["catter"])
      yield* eventually(
        "cat echoes the message",
        Effect.promise(() => client.snapshot("catter")).pipe(Effect.map((snap) => String(snap.screen).includes("hello from the driver")))
      )

      const released: unknown = yield* Effect.promise(() => client.release("catter"))
      assert.deepStrictEqual(released, { success: true, name: "catter" })
      assert.deepStrictEqual(yield* Effect.promise(() => client.listAgents()), [])

      yield* Effect.promise(() => client.shutdown())
      yield* eventually("the broker exited", Effect.sync(() => !isAlive(brokerPid)))
      const errors = stderr.filter((line) => /level=(ERROR|FATAL)/.test(line))
      assert.deepStrictEqual(errors, [])
    }), 120_000)
})
