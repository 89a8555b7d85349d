import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { stopChild } from "../support/processes.js"
import { cmdline, descendantsOf, environOf, mainJs, startDaemon, tempRoot, until } from "../support/toolsDaemon.js"

// The three harnesses served by the stdio `relay-broker mcp`, each a stand-in that reads its wiring
// as that CLI does (test/support/mcpWiringParsers.mjs): cursor-agent (`<cwd>/.cursor/mcp.json`, its
// `${env:NAME}` references), droid (`droid mcp add` → `~/.factory/mcp.json`; the server gets none of
// the agent's variables, it finds its agent's 0600 file) and grok (`grok mcp add` →
// `<cwd>/.grok/settings.json`, which connects at once; the whole parent environment). A claude
// stand-in asks each a question; each answers with send_dm; the answers arrive in claude's terminal.
// Releasing them puts every file back.

describe.skipIf(!existsSync(mainJs))("agent-relay tools over stdio: cursor, droid, grok (real processes)", () => {
  it.scopedLive("claude asks droid, grok and cursor; their send_dm answers arrive in its terminal; release puts the files back", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const work = join(root, "work")
      const home = join(root, "home")
      // The user's own configuration, which must survive byte for byte.
      const factory = `{\n  "mcpServers": { "mine": { "type": "stdio", "command": "my-server", "args": [] } }\n}\n`
      const grokSettings = `{"model":"grok-4"}`
      mkdirSync(join(home, ".factory"), { recursive: true })
      writeFileSync(join(home, ".factory", "mcp.json"), factory)
      mkdirSync(join(work, ".grok"), { recursive: true })
      writeFileSync(join(work, ".grok", "settings.json"), grokSettings, { mode: 0o600 })
      const daemon = yield* startDaemon(root)

      assert.strictEqual((yield* daemon.spawn("alice", "claude")).status, 200)
      const spawned: Record<string, any> = {}
      for (const [name, cli] of [["dro", "droid"], ["gro", "grok"], ["cur", "cursor-agent"]] as const) {
        const answer = yield* daemon.spawn(name, cli)
        assert.strictEqual(answer.status, 200, JSON.stringify(answer.body))
        assert.include(answer.body.warning, "agent-relay MCP tools over stdio")
        spawned[name] = answer.body
      }
      assert.include(spawned["dro"].warning, "droid mcp add --env AGENT_RELAY_AGENTS_DIR=")
      assert.include(spawned["gro"].warning, "grok mcp add agent-relay --transport stdio")
      assert.include(spawned["cur"].warning, "created")
      for (const name of ["alice", "dro", "gro", "cur"]) yield* daemon.shows(name, "[stand-in] tools 29")

      // droid's server got none of the agent's variables: it read its agent's 0600 file.
      const agentsDir = join(daemon.stateDir, "mcp-agents")
      const droidServer = descendantsOf(spawned["dro"].pid).find((pid) => cmdline(pid).includes("main.js mcp"))
      assert.isDefined(droidServer)
      const droidServerEnv = environOf(droidServer!)
      assert.isUndefined(droidServerEnv["RELAY_AGENT_TOKEN"])
      assert.strictEqual(droidServerEnv["AGENT_RELAY_AGENTS_DIR"], agentsDir)
      const agentFile = join(agentsDir, `${spawned["dro"].pid}.json`)
      assert.strictEqual(statSync(agentFile).mode & 0o777, 0o600)
      assert.strictEqual(JSON.parse(readFileSync(agentFile, "utf8")).RELAY_AGENT_NAME, "dro")

      for (const [name, question] of [["dro", "droid q1"], ["gro", "grok q2"], ["cur", "cursor q3"]] as const) {
        yield* daemon.type("alice", `ASK ${name} ${question}`)
        yield* daemon.shows(name, `seen alice dm ${question}`)
        yield* daemon.shows(name, "send_dm ok alice=injected")
        yield* daemon.shows("alice", `seen ${name} dm re: ${question}`)
      }

      // No token in any process's arguments, agents and tool servers alike.
      const processes = [daemon.proc.child.pid!, ...descendantsOf(daemon.proc.child.pid!)]
      assert.isAtLeast(processes.filter((pid) => cmdline(pid).includes("main.js mcp")).length, 3)
      for (const pid of processes) assert.notInclude(cmdline(pid), "at_live_", `pid ${pid}: ${cmdline(pid)}`)

      // Release: every file is back as the user had it; created ones are gone; so are the agent files.
      for (const name of ["dro", "gro", "cur"]) assert.strictEqual((yield* daemon.call("DELETE", `/api/spawned/${name}`)).status, 200)
      yield* until(daemon.proc, "the files put back", () =>
        readFileSync(join(home, ".factory", "mcp.json"), "utf8") === factory &&
          readFileSync(join(work, ".grok", "settings.json"), "utf8") === grokSettings &&
          !existsSync(join(work, ".cursor")) &&
          readdirSync(agentsDir).length === 0
          ? true
          : undefined)
      assert.strictEqual(statSync(join(work, ".grok", "settings.json")).mode & 0o777, 0o600)
    }))

  it.scopedLive("a daemon stopped with SIGTERM puts the files of its running agents back", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const work = join(root, "work")
      mkdirSync(work, { recursive: true })
      const users = `{ "theme": "dark" }`
      writeFileSync(join(work, "opencode.json"), users)
      const daemon = yield* startDaemon(root)
      assert.strictEqual((yield* daemon.spawn("op", "opencode")).status, 200)
      assert.strictEqual((yield* daemon.spawn("cur", "cursor-agent")).status, 200)
      yield* daemon.shows("op", "[stand-in] tools 29")
      yield* daemon.shows("cur", "[stand-in] tools 29")
      assert.notStrictEqual(readFileSync(join(work, "opencode.json"), "utf8"), users)
      assert.strictEqual(readdirSync(join(daemon.stateDir, "mcp-agents")).length, 1)

      yield* stopChild(daemon.proc.child)
      assert.strictEqual(daemon.proc.child.exitCode, 0, daemon.proc.stderr.join("\n"))
      assert.strictEqual(readFileSync(join(work, "opencode.json"), "utf8"), users)
      assert.isFalse(existsSync(join(work, ".cursor")))
      assert.deepStrictEqual(readdirSync(join(daemon.stateDir, "mcp-agents")), [])
    }))
})
