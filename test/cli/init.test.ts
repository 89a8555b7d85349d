import { assert, describe, it } from "@effect/vitest"
import { parseArgs } from "../../src/cli/init.js"

// `relay-broker init` takes exactly what upstream's launchers pass.

describe("relay-broker init arguments", () => {
  it("harness-driver 9.1.6 spawn(): ephemeral, its channels, a temporary state dir", () => {
    const parsed = parseArgs(["init", "--instance-name", "proj", "--channels", "general,dev"].slice(1), {})
    assert.deepStrictEqual(parsed, {
      flags: { apiPort: 0, name: "proj" },
      session: { mode: "ephemeral", channels: ["general", "dev"] },
      temporaryState: true
    })
  })

  it("agent-relay 9.1.6 `local up`: persistent, workspace key, API port", () => {
    const parsed = parseArgs(
      ["--instance-name", "proj", "--workspace-key", "rk_live_x", "--channels", "general", "--persist", "--api-port", "3889"],
      {}
    )
    assert.deepStrictEqual(parsed, {
      flags: { apiPort: 3889, name: "proj", workspaceKey: "rk_live_x" },
      session: { mode: "persist", channels: ["general"] },
      temporaryState: false
    })
  })

  it("--api-bind, --state-dir and the environment's state dir and broker name", () => {
    assert.deepStrictEqual(parseArgs(["--api-bind", "0.0.0.0", "--state-dir", "/s", "--channels="], {}), {
      flags: { apiPort: 0, stateDir: "/s", apiBind: "0.0.0.0" },
      session: { mode: "ephemeral", channels: [] },
      temporaryState: false
    })
    assert.deepStrictEqual(parseArgs([], { AGENT_RELAY_STATE_DIR: "/e", AGENT_RELAY_BROKER_NAME: "named" }), {
      flags: { apiPort: 0, stateDir: "/e", name: "named" },
      session: { mode: "ephemeral", channels: [] },
      temporaryState: false
    })
  })

  it("bad arguments are named", () => {
    assert.deepStrictEqual(parseArgs(["--api-port", "x"], {}), { error: "--api-port: expected a port number 0-65535, got 'x'" })
    assert.deepStrictEqual(parseArgs(["--frobnicate"], {}), { error: "unknown argument '--frobnicate'" })
    assert.deepStrictEqual(parseArgs(["--instance-name"], {}), { error: "--instance-name needs a value" })
    assert.strictEqual(parseArgs(["--help"], {}), "help")
  })
})
