import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { configuredByArgs, mergeEntry, type Wiring, wiringFor } from "../../src/broker/mcpWiring.js"
// @ts-expect-error plain JS shared with the stand-in harnesses
import { serverFor } from "../support/mcpWiringParsers.mjs"
// @ts-expect-error plain JS shared with the stand-in harnesses
import { runMcpCommand } from "../support/standInMcpCommands.mjs"

// The wiring each harness gets round-trips: what the CLI would parse out of its launch (and of the
// files merged for it), with its own variable expansion and environment rules, is our server and the
// agent's token; and no token is ever written into an argument or a file.

const stdio = { command: "/usr/bin/node", args: ["--max-semi-space-size=1", "/opt/relay-broker/dist/main.js", "mcp"] }
const agentsDir = "/var/lib/relay-broker/mcp-agents"

/** The files merged, then the CLI's own `mcp add` (the stand-in's, which parses and writes as that CLI does). */
const apply = async (wiring: Wiring, cwd: string, home: string) => {
  for (const merge of wiring.files) {
    const existing = existsSync(merge.file) ? readFileSync(merge.file, "utf8") : undefined
    const outcome = mergeEntry(existing, merge)
    if (outcome._tag === "Written") {
      mkdirSync(dirname(merge.file), { recursive: true })
      writeFileSync(merge.file, outcome.text)
    }
  }
  for (const command of wiring.commands.slice(1)) await runMcpCommand(wiring.harness, command.args.slice(1), { cwd, home })
}

const harnesses = ["claude", "codex", "gemini", "opencode", "cursor-agent", "droid", "grok"] as const

describe("MCP wiring per harness", () => {
  it("round-trips for every harness: the CLI finds our server and the agent's token, which is in no argument or file", async () => {
    const root = mkdtempSync(join(tmpdir(), "relay-wiring-"))
    try {
      await FastCheck.assert(
        FastCheck.asyncProperty(
          FastCheck.constantFrom(...harnesses),
          FastCheck.hexaString({ minLength: 32, maxLength: 32 }),
          FastCheck.integer({ min: 1024, max: 65535 }),
          FastCheck.stringMatching(/^[a-z0-9 ._-]{1,12}$/),
          FastCheck.array(FastCheck.constantFrom("--verbose", "-m", "gpt", "--", "fix the bug", "a \"quoted\" arg"), { maxLength: 4 }),
          async (harness, hex, port, folder, userArgs) => {
            const token = `at_live_${hex}`
            const cwd = mkdtempSync(join(root, `${folder.trim() || "w"}-`))
            const home = join(cwd, "home")
            const httpUrl = `http://127.0.0.1:${port}/mcp`
            const wiring = wiringFor({ command: `/usr/local/bin/${harness}`, args: userArgs, cwd, home, httpUrl, stdio, agentsDir })
            assert.isDefined(wiring)
            await apply(wiring!, cwd, home)
            const env = { PATH: "/usr/bin", HOME: home, RELAY_AGENT_TOKEN: token, RELAY_AGENT_NAME: "w" }
            const server = serverFor(harness, { args: [...wiring!.args, ...userArgs], env, cwd, home })
            assert.isDefined(server, `${harness}: no agent-relay server found`)
            if (wiring!.transport === "http") {
              assert.strictEqual(server.transport, "http")
              assert.strictEqual(server.url, httpUrl)
              assert.strictEqual(server.headers.Authorization, `Bearer ${token}`)
            } else {
              assert.strictEqual(server.command, stdio.command)
              assert.deepStrictEqual(server.args, stdio.args)
              if (harness === "droid") {
                // The strictest reading of droid: no parent variable reaches the server; it finds its agent's file.
                assert.isUndefined(server.env.RELAY_AGENT_TOKEN)
                assert.strictEqual(server.env.AGENT_RELAY_AGENTS_DIR, agentsDir)
              } else {
                assert.strictEqual(server.env.RELAY_AGENT_TOKEN, token)
                assert.strictEqual(server.env.RELAY_AGENT_NAME, "w")
              }
            }
            for (const arg of [...wiring!.args, ...wiring!.commands.flatMap((c) => c.args)]) assert.notInclude(arg, token)
            for (const file of [...wiring!.files.map((m) => m.file), ...(wiring!.commandFile === undefined ? [] : [wiring!.commandFile.file])]) {
              assert.notInclude(readFileSync(file, "utf8"), token)
            }
          }
        ),
        { numRuns: 60 }
      )
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })

  it("droid and grok get their own `mcp add` with this installation's absolute command", () => {
    const droid = wiringFor({ command: "droid", args: [], cwd: "/w", home: "/h", httpUrl: "http://x/mcp", stdio, agentsDir })!
    assert.strictEqual(droid.transport, "stdio")
    assert.deepStrictEqual(droid.commands.at(-1)!.args, ["mcp", "add", "--env", `AGENT_RELAY_AGENTS_DIR=${agentsDir}`, "agent-relay", "--", stdio.command, ...stdio.args])
    assert.strictEqual(droid.commandFile?.file, "/h/.factory/mcp.json")
    const grok = wiringFor({ command: "grok", args: [], cwd: "/w", home: "/h", httpUrl: "http://x/mcp", stdio, agentsDir })!
    assert.deepStrictEqual(grok.commands.at(-1)!.args.slice(0, 7), ["mcp", "add", "agent-relay", "--transport", "stdio", "--command", stdio.command])
    assert.include(grok.commands.at(-1)!.args, "--args=--max-semi-space-size=1")
    assert.strictEqual(grok.commandFile?.file, "/w/.grok/settings.json")
  })

  it("opencode: an agent `agent-relay` that has the server's tools, selected with --agent unless the user chose one", () => {
    const wiring = wiringFor({ command: "opencode", args: [], cwd: "/w", home: "/h", httpUrl: "http://x/mcp", stdio, agentsDir })!
    assert.deepStrictEqual(wiring.args, ["--agent", "agent-relay"])
    assert.deepStrictEqual(wiring.files.map((f) => f.path), [["mcp", "agent-relay"], ["agent", "agent-relay"]])
    const own = wiringFor({ command: "opencode", args: ["--agent", "build"], cwd: "/w", home: "/h", httpUrl: "http://x/mcp", stdio, agentsDir })!
    assert.deepStrictEqual(own.args, [])
  })

  it("leaves the user's own agent-relay configuration alone", () => {
    const own = JSON.stringify({ mcpServers: { "agent-relay": { command: "mine" } } })
    assert.isTrue(configuredByArgs("claude", ["--mcp-config", own]))
    assert.isUndefined(wiringFor({ command: "claude", args: ["--mcp-config", own], cwd: "/w", home: "/h", httpUrl: "u", stdio, agentsDir }))
    assert.isUndefined(wiringFor({ command: "codex", args: ["-c", "mcp_servers.agent-relay.command=\"x\""], cwd: "/w", home: "/h", httpUrl: "u", stdio, agentsDir }))
    assert.isUndefined(wiringFor({ command: "aider", args: [], cwd: "/w", home: "/h", httpUrl: "u", stdio, agentsDir }))
    const merge = { file: "/w/opencode.json", path: ["mcp", "agent-relay"], entry: { type: "remote", url: "u" } }
    const kept = mergeEntry(JSON.stringify({ mcp: { "agent-relay": { type: "local", command: ["mine"] } } }), merge)
    assert.strictEqual(kept._tag, "Kept")
    const merged = mergeEntry(JSON.stringify({ theme: "dark", mcp: { other: { type: "local" } } }), merge)
    assert.strictEqual(merged._tag, "Written")
    if (merged._tag === "Written") {
      const parsed = JSON.parse(merged.text)
      assert.strictEqual(parsed.theme, "dark")
      assert.deepStrictEqual(Object.keys(parsed.mcp).sort(), ["agent-relay", "other"])
    }
    assert.strictEqual(mergeEntry("{ not json", merge)._tag, "Invalid")
  })
})
