import { assert, describe, it } from "@effect/vitest"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import { Effect } from "effect"
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { freshMachineEnv, launchScript, type LaunchedScript, stopChild } from "../support/processes.js"

// The agent-relay tools with real processes: a daemon (`node dist/main.js up`, embedded engine) whose
// agents are stand-in harnesses (test/support/standInHarness.mjs, installed on PATH as claude, codex,
// gemini, opencode, cursor-agent). Each finds its server in its launch as the real CLI would and talks
// through the tools only. Build first: `npm run build`.

const mainJs = fileURLToPath(new URL("../../dist/main.js", import.meta.url))
const standIn = fileURLToPath(new URL("../support/standInHarness.mjs", import.meta.url))

const until = <A>(proc: LaunchedScript, what: string, check: () => A | undefined | Promise<A | undefined>): Effect.Effect<A> =>
  Effect.promise(async () => {
    for (let i = 0; i < 1_200; i++) {
      const value = await check()
      if (value !== undefined) return value
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
        throw new Error(`the daemon exited while waiting for ${what}:\n${proc.stderr.join("\n")}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`never happened: ${what}`)
  })

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-broker-tools-"))),
  (root) => Effect.sync(() => rmSync(root, { recursive: true, force: true }))
)

const http = async (url: string, method: string, headers: Record<string, string>, body?: unknown) => {
  const response = await fetch(url, {
    method,
    headers: { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  return { status: response.status, body: text === "" ? null : JSON.parse(text) }
}

/** A PATH directory whose claude, codex, gemini, opencode and cursor-agent are the stand-in. */
const standInBin = (root: string) => {
  const bin = join(root, "bin")
  mkdirSync(bin, { recursive: true })
  for (const harness of ["claude", "codex", "gemini", "opencode", "cursor-agent"]) {
    writeFileSync(join(bin, harness), `#!/bin/sh\nexec "${process.execPath}" "${standIn}" ${harness} "$@"\n`)
    chmodSync(join(bin, harness), 0o755)
  }
  return bin
}

const startDaemon = (root: string, extraEnv: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const stateDir = join(root, "state")
    const home = join(root, "home")
    const work = join(root, "work")
    mkdirSync(home, { recursive: true })
    mkdirSync(work, { recursive: true })
    const env = freshMachineEnv(root, {
      PATH: `${standInBin(root)}:${process.env["PATH"] ?? ""}`,
      HOME: home,
      AGENT_RELAY_NODE_HARNESSES: "",
      ...extraEnv
    })
    const proc = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const launched = launchScript(mainJs, ["up", "--state-dir", stateDir, "--api-port", "0", "--name", "tools-e2e"], env)
        return launched
      }),
      (launched) => stopChild(launched.child)
    )
    const url = yield* until(proc, "API listening", () => proc.stdout.map((line) => /API listening on (\S+)$/.exec(line)?.[1]).find(Boolean))
    const key: string = JSON.parse(readFileSync(join(stateDir, "connection.json"), "utf8")).api_key
    const call = (method: string, path: string, body?: unknown) =>
      Effect.promise(() => http(`${url}${path}`, method, { "x-api-key": key }, body))
    yield* until(proc, "node online", async () => (await http(`${url}/health`, "GET", {})).body.nodeConnected === true ? true : undefined)
    const spawn = (name: string, cli: string, extra: Record<string, unknown> = {}) => call("POST", "/api/spawn", { name, cli, cwd: work, ...extra })
    const screen = (name: string) =>
      Effect.promise(async () => (await http(`${url}/api/spawned/${name}/snapshot`, "GET", { "x-api-key": key })).body?.screen ?? "")
    const shows = (name: string, text: string) =>
      until(proc, `${name} shows ${JSON.stringify(text)}`, async () => {
        const answer = await http(`${url}/api/spawned/${name}/snapshot`, "GET", { "x-api-key": key })
        return typeof answer.body?.screen === "string" && answer.body.screen.includes(text) ? answer.body.screen as string : undefined
      })
    const type = (name: string, text: string) => call("POST", `/api/input/${name}`, { data: `${text}\r` })
    return { proc, url, key, stateDir, home, work, call, spawn, screen, shows, type }
  })

const environOf = (pid: number): Record<string, string> =>
  Object.fromEntries(readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean).map((entry) => {
    const eq = entry.indexOf("=")
    return [entry.slice(0, eq), entry.slice(eq + 1)]
  }))

const descendantsOf = (pid: number): ReadonlyArray<number> => {
  const parents = new Map<number, number>()
  for (const entry of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]))
    } catch {
      // gone
    }
  }
  const found: Array<number> = []
  const visit = (parent: number) => {
    for (const [child, of] of parents) {
      if (of === parent) {
        found.push(child)
        visit(child)
      }
    }
  }
  visit(pid)
  return found
}

const cmdline = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
  } catch {
    return ""
  }
}

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
      yield* daemon.shows("open", "[stand-in] tools 29")

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
