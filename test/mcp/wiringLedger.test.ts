import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { wiringFor } from "../../src/broker/mcpWiring.js"
import { applyWiring } from "../../src/mcp/applyWiring.js"
import { type Ledger, record, release, restore } from "../../src/mcp/wiringLedger.js"

// Releasing an agent puts back what its MCP wiring wrote: created files (and folders) are deleted,
// merged files get the user's bytes back, or, when touched since, lose only our entries; a file two
// agents share is put back when the last of them goes.

const stdio = { command: "/usr/bin/node", args: ["/opt/relay-broker/dist/main.js", "mcp"] }

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-ledger-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const wire = (ledger: Ledger, agent: string, command: string, cwd: string) =>
  Effect.gen(function*() {
    const wiring = wiringFor({ command, args: [], cwd, home: join(cwd, "home"), httpUrl: "http://127.0.0.1:1/mcp", stdio, agentsDir: "/x" })!
    const applied = yield* applyWiring(wiring, {}, cwd)
    return applied.changes.reduce((next, change) => record(next, agent, change), ledger)
  })

describe("wiring put back on release", () => {
  it.scoped("a merged file gets the user's bytes and mode back; a created file and its folder are deleted", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      // The user's own opencode.json, with formatting of its own.
      const users = `{"theme":"dark",   "mcp": {"other": {"type": "local", "command": ["x"]}}}\n`
      writeFileSync(join(cwd, "opencode.json"), users, { mode: 0o640 })
      let ledger = yield* wire(new Map(), "op", "opencode", cwd)
      ledger = yield* wire(ledger, "cur", "cursor-agent", cwd)
      const merged = JSON.parse(readFileSync(join(cwd, "opencode.json"), "utf8"))
      assert.deepStrictEqual(Object.keys(merged.mcp).sort(), ["agent-relay", "other"])
      assert.isDefined(merged.agent["agent-relay"])
      assert.isTrue(existsSync(join(cwd, ".cursor", "mcp.json")))

      const op = release(ledger, "op")
      yield* restore(op.restore)
      assert.strictEqual(readFileSync(join(cwd, "opencode.json"), "utf8"), users)
      assert.strictEqual(statSync(join(cwd, "opencode.json")).mode & 0o777, 0o640)
      const cur = release(op.ledger, "cur")
      yield* restore(cur.restore)
      assert.isFalse(existsSync(join(cwd, ".cursor")))
      assert.strictEqual(cur.ledger.size, 0)
    }))

  it.scoped("a file changed since keeps the change and loses only our entries; a shared file waits for its last agent", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      mkdirSync(join(cwd, ".cursor"))
      writeFileSync(join(cwd, ".cursor", "mcp.json"), JSON.stringify({ mcpServers: { mine: { command: "mine" } } }))
      let ledger = yield* wire(new Map(), "a", "cursor-agent", cwd)
      ledger = yield* wire(ledger, "b", "cursor-agent", cwd)
      const first = release(ledger, "a")
      assert.strictEqual(first.restore.length, 0, "b still uses the entry")
      // The user adds a server meanwhile.
      const file = join(cwd, ".cursor", "mcp.json")
      const now = JSON.parse(readFileSync(file, "utf8"))
      now.mcpServers.added = { command: "added" }
      writeFileSync(file, JSON.stringify(now))
      const last = release(first.ledger, "b")
      const notes = yield* restore(last.restore)
      assert.include(notes.join(), "took the agent-relay entries out")
      assert.deepStrictEqual(JSON.parse(readFileSync(file, "utf8")), { mcpServers: { mine: { command: "mine" }, added: { command: "added" } } })
    }))

  it.scoped("the user's own agent-relay entry is kept and never removed", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir
      const own = JSON.stringify({ mcpServers: { "agent-relay": { command: "my-own" } } })
      mkdirSync(join(cwd, ".cursor"))
      writeFileSync(join(cwd, ".cursor", "mcp.json"), own)
      const ledger = yield* wire(new Map(), "a", "cursor-agent", cwd)
      assert.strictEqual(ledger.size, 0)
      yield* restore(release(ledger, "a").restore)
      assert.strictEqual(readFileSync(join(cwd, ".cursor", "mcp.json"), "utf8"), own)
    }))
})
