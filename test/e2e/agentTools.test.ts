import { assert, describe, it } from "@effect/vitest"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import { Effect } from "effect"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { launchScript } from "../support/processes.js"
import { cmdline, descendantsOf, environOf, http, mainJs, startDaemon, tempRoot, until } from "../support/toolsDaemon.js"

// The agent-relay tools with real processes: a daemon (`node dist/main.js up`, embedded engine) whose
// agents are stand-in harnesses (test/support/standInHarness.mjs, installed on PATH as claude, codex,
// gemini, opencode, cursor-agent). Each finds its server in its launch as the real CLI would and talks
// through the tools only. Build first: `npm run build`.

describe.skipIf(!existsSync(mainJs))("agent-relay tools in every harness (real processes)", () => {
  it.scopedLive("claude asks codex through send_dm; codex's answer arrives in claude's terminal", () =>
    Effect.gen(function*() {
      const daemon = yield* startDaemon(yield* tempRoot)
      const alice = yield* daemon.spawn("alice", "claude")
      assert.strictEqual(alice.status, 200, JSON.stringify(alice.body))
      assert.include(alice.body.warning, "agent-relay MCP tools over http")
      assert.strictEqual((yield* daemon.spawn("bob", "codex")).status, 200)
      yield* daemon.shows("alice", "[stand-in] tools 29")
      yield* daemon.shows("bob", "[stand-in] tools 29")

      yield* daemon.type("alice", "ASK bob what is 2+2")
      // bob saw the question in its terminal, answered with send_dm, and the answer reached alice's.
      yield* daemon.shows("bob", "seen alice dm what is 2+2")
      yield* daemon.shows("bob", "send_dm ok alice=injected")
      yield* daemon.shows("alice", "seen bob dm re: what is 2+2")
      const aliceScreen = yield* daemon.screen("alice")
      assert.include(aliceScreen, "send_dm ok bob=injected")
    }))

  it.scopedLive("gemini and opencode: a channel post is answered in its thread; files are merged, not clobbered", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const work = join(root, "work")
      mkdirSync(work, { recursive: true })
      writeFileSync(join(work, "opencode.json"), JSON.stringify({ $schema: "https://opencode.ai/config.json", theme: "dark" }))
      const daemon = yield* startDaemon(root)
      const gem = yield* daemon.spawn("gem", "gemini")
      assert.strictEqual(gem.status, 200, JSON.stringify(gem.body))
      assert.include(gem.body.warning, ".gemini/settings.json")
      const open = yield* daemon.spawn("open", "opencode")
      assert.strictEqual(open.status, 200, JSON.stringify(open.body))
      assert.include(open.body.warning, "merged into")
      const merged = JSON.parse(readFileSync(join(work, "opencode.json"), "utf8"))
      assert.strictEqual(merged.theme, "dark")
      assert.strictEqual(merged.mcp["agent-relay"].type, "remote")
      assert.notInclude(readFileSync(join(work, "opencode.json"), "utf8"), "at_live_")
      yield* daemon.shows("gem", "[stand-in] tools 29")
      // opencode runs as the agent `agent-relay` (--agent), whose tools map grants the server's tools.
      yield* daemon.shows("open", "[stand-in] tools 29 (agent agent-relay)")
      assert.deepStrictEqual(merged.agent["agent-relay"].tools, { "agent-relay_*": true })
      const spawned = (yield* daemon.call("GET", "/api/spawned")).body.agents.find((agent: any) => agent.name === "open")
      assert.includeOrderedMembers(spawned.args, ["--agent", "agent-relay"])

      yield* daemon.type("gem", "POST general standup in five")
      yield* daemon.shows("gem", "post_message ok")
      yield* daemon.shows("open", "seen gem general standup in five")
      yield* daemon.shows("open", "reply_to_thread ok")
      yield* daemon.shows("gem", "seen open general re: standup in five")
    }))

  it.scopedLive("no token in any argv: agents and their stdio tool servers (cursor-agent)", () =>
    Effect.gen(function*() {
      const daemon = yield* startDaemon(yield* tempRoot)
      const spawned = yield* daemon.spawn("cur", "cursor-agent")
      assert.strictEqual(spawned.status, 200, JSON.stringify(spawned.body))
      assert.include(spawned.body.warning, "over stdio")
      assert.strictEqual((yield* daemon.spawn("cla", "claude")).status, 200)
      yield* daemon.shows("cur", "[stand-in] tools 29")
      yield* daemon.shows("cla", "[stand-in] tools 29")
      const token = environOf(spawned.body.pid)["RELAY_AGENT_TOKEN"]!
      assert.match(token, /^at_live_/)
      const processes = [daemon.proc.child.pid!, ...descendantsOf(daemon.proc.child.pid!)]
      // The cursor stand-in runs `relay-broker mcp` as its child.
      assert.isTrue(processes.some((pid) => cmdline(pid).includes("main.js mcp")), processes.map(cmdline).join("\n"))
      for (const pid of processes) assert.notInclude(cmdline(pid), "at_live_", `pid ${pid}: ${cmdline(pid)}`)
    }))

  it.scopedLive("a broken tool server command fails the spawn readably and starts no agent", () =>
    Effect.gen(function*() {
      const daemon = yield* startDaemon(yield* tempRoot, { AGENT_RELAY_MCP_COMMAND: "/nonexistent/relay-broker mcp" })
      const answer = yield* daemon.spawn("cur", "cursor-agent")
      assert.strictEqual(answer.status, 500, JSON.stringify(answer.body))
      assert.include(answer.body.error, "agent-relay tool server")
      assert.include(answer.body.error, "/nonexistent/relay-broker")
      assert.deepStrictEqual((yield* daemon.call("GET", "/api/spawned")).body.agents, [])
      assert.isFalse(descendantsOf(daemon.proc.child.pid!).some((pid) => cmdline(pid).includes("standInHarness")))
    }))

  it.scopedLive("every tool through an SDK client on /mcp; results, and clear errors for bad arguments", () =>
    Effect.gen(function*() {
      const daemon = yield* startDaemon(yield* tempRoot, { AGENT_RELAY_NODE_HARNESSES: "claude,codex" })
      const spawned = yield* daemon.spawn("ann", "claude", { agentResultSchema: { type: "object", required: ["ok"], properties: { ok: { type: "boolean" } } } })
      assert.strictEqual(spawned.status, 200, JSON.stringify(spawned.body))
      assert.strictEqual((yield* daemon.spawn("ben", "codex")).status, 200)
      const env = environOf(spawned.body.pid)
      const client = new Client({ name: "tools-e2e", version: "1" })
      yield* Effect.acquireRelease(
        Effect.promise(() =>
          client.connect(new StreamableHTTPClientTransport(new URL(`${daemon.url}/mcp`), {
            requestInit: { headers: { authorization: `Bearer ${env["RELAY_AGENT_TOKEN"]}` } }
          }))
        ),
        () => Effect.promise(() => client.close())
      )
      const call = (name: string, args: Record<string, unknown> = {}) =>
        Effect.promise(() => client.callTool({ name, arguments: args })) as Effect.Effect<any>
      const ok = (name: string, args: Record<string, unknown> = {}) =>
        Effect.map(call(name, args), (result) => {
          assert.notStrictEqual(result.isError, true, `${name}: ${JSON.stringify(result)}`)
          return result
        })

      const listed = (yield* Effect.promise(() => client.listTools())).tools.map((tool) => tool.name)
      for (const name of ["send_dm", "post_message", "check_inbox", "list_agents", "query_nodes", "spawn", "get_message_delivery"]) {
        assert.include(listed, name)
      }
      assert.strictEqual((yield* Effect.promise(() => client.getPrompt({ name: "system" }))).messages.length, 1)

      const agents = (yield* ok("list_agents")).structuredContent.agents.map((agent: any) => agent.name)
      assert.includeMembers(agents, ["ann", "ben"])
      const nodes = (yield* ok("query_nodes")).structuredContent.nodes
      assert.isTrue(nodes.some((node: any) => node.name === "tools-e2e" && node.status === "online"))
      assert.strictEqual((yield* ok("register_agent", { name: "ann" })).structuredContent.registered_name, "ann")
      yield* ok("create_channel", { name: "ops", topic: "operations" })
      yield* ok("join_channel", { channel: "ops" })
      assert.isTrue((yield* ok("list_channels")).structuredContent.channels.some((channel: any) => channel.name === "ops"))
      const posted = (yield* ok("post_message", { channel: "general", text: "hello general" })).structuredContent
      assert.isArray(posted.delivery.recipients)
      const dm = (yield* ok("send_dm", { to: "ben", text: "hello ben" })).structuredContent
      assert.deepStrictEqual(dm.delivery.recipients.map((r: any) => [r.name, r.state]), [["ben", "injected"]])
      const delivery = (yield* ok("get_message_delivery", { message_id: dm.id })).structuredContent
      assert.include(["injected", "read"], delivery.recipients[0].state)
      assert.isArray((yield* ok("list_messages", { channel: "general" })).structuredContent.messages)
      yield* ok("reply_to_thread", { message_id: posted.id, text: "in the thread" })
      yield* ok("get_message_thread", { message_id: posted.id })
      assert.isArray((yield* ok("list_dms")).structuredContent.conversations)
      yield* ok("send_group_dm", { participants: ["ben"], text: "group hello" })
      assert.include((yield* ok("add_reaction", { message_id: posted.id, emoji: "+1" })).structuredContent.message, "👍")
      yield* ok("remove_reaction", { message_id: posted.id, emoji: "+1" })
      yield* ok("check_inbox")
      yield* ok("mark_message_read", { message_id: posted.id })
      assert.isArray((yield* ok("get_message_readers", { message_id: posted.id })).structuredContent.readers)
      assert.isArray((yield* ok("search_messages", { query: "hello" })).structuredContent.results)
      yield* ok("invite_to_channel", { channel: "ops", agent: "ben" })
      yield* ok("set_channel_topic", { channel: "ops", topic: "on call" })
      yield* ok("leave_channel", { channel: "ops" })
      yield* ok("archive_channel", { channel: "ops" })
      // Spawning goes through the engine, which places it on this node; ann may release what it spawned.
      assert.isObject((yield* ok("spawn", { name: "kid", cli: "claude", task: "help" })).structuredContent.invocation)
      yield* ok("add_agent", { name: "kid2", cli: "codex", task: "help too" })
      yield* until(daemon.proc, "kid and kid2 running", async () => {
        const names = (await http(`${daemon.url}/api/spawned`, "GET", { "x-api-key": daemon.key })).body.agents.map((a: any) => a.name)
        return names.includes("kid") && names.includes("kid2") ? true : undefined
      })
      yield* ok("remove_agent", { name: "kid2", reason: "done" })
      yield* ok("submit_result", { data: { ok: true } })
      const last = yield* daemon.call("GET", "/api/agent-result?name=ann")
      assert.deepStrictEqual(last.body.data, { ok: true })

      // Bad arguments, unknown names and forbidden acts are tool errors with a readable text.
      const errorText = (result: any) => {
        assert.strictEqual(result.isError, true, JSON.stringify(result))
        return result.content[0].text as string
      }
      assert.include(errorText(yield* call("send_dm", { to: 5 })), "to: expected a string")
      assert.include(errorText(yield* call("send_dm", { to: "nobody", text: "hi" })), "agent_not_found")
      assert.include(errorText(yield* call("post_message", { channel: "general", text: "x", mode: "loud" })), "mode")
      assert.include(errorText(yield* call("send_dm", { to: "ben", text: "hi", as: "ben" })), "Unknown agent identity")
      assert.include(errorText(yield* call("remove_agent", { name: "ben" })), "may release only itself")
      assert.include(errorText(yield* call("set_workspace_key", { workspace_key: "rk_live_x" })), "not available")
      assert.include(errorText(yield* call("submit_result", { data: { ok: "yes" } })), "does not match the schema")
      assert.include(errorText(yield* call("no_such_tool")), "not found")
      // The daemon is still fine.
      assert.strictEqual((yield* daemon.call("GET", "/health")).status, 200)
      // And the CLI shows the delivery of the DM.
      const shown = launchScript(mainJs, ["message", dm.id, "--state-dir", daemon.stateDir], process.env)
      assert.strictEqual(yield* Effect.promise(() => shown.exited), 0, shown.stderr.join("\n"))
      assert.include(shown.stdout.join("\n"), "ben")
    }))

  it.scopedLive("/mcp and the agent routes refuse anything but one of this daemon's agent tokens", () =>
    Effect.gen(function*() {
      const daemon = yield* startDaemon(yield* tempRoot)
      const post = (path: string, token: string) =>
        Effect.promise(() => http(`${daemon.url}${path}`, "POST", { authorization: `Bearer ${token}`, accept: "application/json, text/event-stream" }, {}))
      assert.strictEqual((yield* post("/mcp", daemon.key)).status, 401)
      assert.strictEqual((yield* post("/mcp", "at_live_0000")).status, 401)
      assert.strictEqual((yield* post("/api/agent/list-agents", daemon.key)).status, 401)
      assert.strictEqual((yield* post("/api/agent-result", "x")).status, 401)
    }))
})
