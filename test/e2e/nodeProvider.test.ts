import { assert, describe, it } from "@effect/vitest"
import { NodeProviderClient } from "@relaycast/sdk"
import { Effect } from "effect"
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import WebSocket from "ws"
import { freshMachineEnv, launchScript, type LaunchedScript, stopChild } from "../support/processes.js"

// `NodeProviderClient` of @relaycast/sdk 6.0.2 against the embedded engine, on the same node as a
// relay-broker daemon (they share its node token): it registers an action capability, answers an
// invocation made through the engine's HTTP API, posts as a node, and asks for a `node.spawn` that
// the daemon carries out. Build first: `npm run build`.

const mainJs = fileURLToPath(new URL("../../dist/main.js", import.meta.url))

// The SDK uses the global WebSocket (Node ≥ 22); on Node 20 the `ws` client stands in for it.
if ((globalThis as { WebSocket?: unknown }).WebSocket === undefined) {
  ;(globalThis as { WebSocket?: unknown }).WebSocket = WebSocket
}

const started = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv) =>
  Effect.acquireRelease(Effect.sync(() => launchScript(mainJs, args, env)), (proc) => stopChild(proc.child, "SIGKILL"))

const until = <A>(proc: LaunchedScript, what: string, check: () => A | undefined | Promise<A | undefined>): Effect.Effect<A> =>
  Effect.promise(async () => {
    for (let attempt = 0; attempt < 1200; attempt++) {
      const value = await check()
      if (value !== undefined) return value
      if (proc.child.exitCode !== null) throw new Error(`the process exited while waiting for ${what}:\n${proc.stderr.join("\n")}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`never happened: ${what}`)
  })

const http = async (url: string, method: string, token: string | undefined, body?: unknown) => {
  const response = await fetch(url, {
    method,
    headers: { "content-type": "application/json", ...(token === undefined ? {} : { authorization: `Bearer ${token}`, "x-api-key": token }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  return { status: response.status, body: text === "" ? null : JSON.parse(text) }
}

const findTokenFile = (dir: string): string | undefined => {
  if (!existsSync(dir)) return undefined
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      const found = findTokenFile(path)
      if (found !== undefined) return found
    } else if (dir.endsWith("node-tokens") && entry.name.endsWith(".json")) return path
  }
  return undefined
}

describe.skipIf(!existsSync(mainJs))("NodeProviderClient (@relaycast/sdk 6.0.2) on a relay-broker node", () => {
  it.scopedLive("registers an action, answers an HTTP invocation, posts as the node, and gets a node.spawn carried out by the daemon", () =>
    Effect.gen(function*() {
      const root = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "relay-provider-e2e-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const bin = join(root, "bin")
      mkdirSync(bin, { recursive: true })
      writeFileSync(join(bin, "claude"), "#!/bin/sh\nexec cat\n")
      chmodSync(join(bin, "claude"), 0o755)
      const engine = yield* started(["engine", "--port", "0", "--data", join(root, "engine")], freshMachineEnv(root))
      const engineUrl = yield* until(engine, "the engine", () => /engine listening on (\S+)$/.exec(engine.stdout[0] ?? "")?.[1])
      const stateDir = join(root, "state")
      const daemon = yield* started(
        ["up", "--state-dir", stateDir, "--api-port", "0", "--name", "provider-node"],
        freshMachineEnv(root, { RELAY_BASE_URL: engineUrl, PATH: `${bin}:${process.env["PATH"] ?? ""}` })
      )
      const api = yield* until(daemon, "the daemon's API", () => /API listening on (\S+)$/.exec(daemon.stdout[0] ?? "")?.[1])
      const apiKey: string = JSON.parse(readFileSync(join(stateDir, "connection.json"), "utf8")).api_key
      yield* until(daemon, "the node connection", async () => (await http(`${api}/health`, "GET", undefined)).body?.nodeConnected === true ? true : undefined)
      const session = (yield* Effect.promise(() => http(`${api}/api/session`, "GET", apiKey))).body
      const key: string = session.workspace_key
      const [node] = (yield* Effect.promise(() => http(`${engineUrl}/v1/nodes`, "GET", key))).body.data
      const tokenFile = findTokenFile(root)
      assert.isDefined(tokenFile, "the daemon's cached node token")
      const nodeToken: string = JSON.parse(readFileSync(tokenFile!, "utf8")).token

      const invocations: Array<unknown> = []
      const client = new NodeProviderClient({
        baseUrl: engineUrl,
        nodeToken,
        nodeId: node.id,
        nodeName: node.name,
        provider: { name: "tools" },
        heartbeatIntervalMs: 1_000,
        capabilities: {
          summarize: async (input, ctx) => {
            invocations.push(input)
            await ctx.sendMessage({ to: "general", from: "tools-bot", text: `summarized ${JSON.stringify(input)}` })
            return { summary: "short", invocation: ctx.invocationId }
          },
          delegate: async (_input, ctx) => ctx.spawnAgent({ name: "sdk-spawned", cli: "claude", task: "hello from the provider" })
        }
      })
      yield* Effect.addFinalizer(() => Effect.promise(() => client.stop()))
      void client.serve().catch(() => undefined)
      const registered: any = yield* Effect.promise(() => client.whenRegistered())
      assert.deepStrictEqual(registered.provider.name, "tools")
      assert.deepStrictEqual(registered.accepted_capabilities.map((c: any) => [c.name, c.kind, c.accepted]), [
        ["summarize", "action", true],
        ["delegate", "action", true]
      ])

      // The daemon's socket was not superseded: both providers are on the one node.
      const shared = (yield* Effect.promise(() => http(`${engineUrl}/v1/nodes/${node.name}`, "GET", key))).body.data
      assert.deepStrictEqual(shared.providers.map((p: any) => [p.name, p.status]).sort(), [["broker", "online"], ["tools", "online"]])
      assert.isTrue((yield* Effect.promise(() => http(`${api}/health`, "GET", undefined))).body.nodeConnected)

      const caller = (yield* Effect.promise(() => http(`${engineUrl}/v1/agents`, "POST", key, { name: "caller" }))).body.data
      const invoke = (action: string, input: unknown) =>
        Effect.promise(() => http(`${engineUrl}/v1/actions/${action}/invoke`, "POST", caller.token, { input }))
      const finished = (action: string, id: string) =>
        until(daemon, `${action} completes`, async () => {
          const detail = (await http(`${engineUrl}/v1/actions/${action}/invocations/${id}`, "GET", key)).body.data
          return detail.status === "completed" || detail.status === "failed" ? detail : undefined
        })

      const summarize = yield* invoke("summarize", { text: "a long text" })
      assert.strictEqual(summarize.status, 201)
      const summarized = yield* finished("summarize", summarize.body.data.invocation_id)
      assert.strictEqual(summarized.status, "completed")
      assert.deepStrictEqual(summarized.output, { summary: "short", invocation: summarize.body.data.invocation_id })
      assert.deepStrictEqual(invocations, [{ text: "a long text" }])
      const history = (yield* Effect.promise(() => http(`${engineUrl}/v1/channels/general/messages`, "GET", key))).body.data
      assert.isTrue(history.some((m: any) => m.agent_name === "tools-bot" && m.text.startsWith("summarized")))

      const delegate = yield* invoke("delegate", {})
      const delegated = yield* finished("delegate", delegate.body.data.invocation_id)
      assert.strictEqual(delegated.status, "completed", JSON.stringify(delegated))
      assert.strictEqual(delegated.output.action_name, "spawn")
      assert.strictEqual(delegated.output.dispatched_node_id, node.id)
      const spawned = yield* until(daemon, "the daemon runs sdk-spawned", async () => {
        const list = (await http(`${api}/api/spawned`, "GET", apiKey)).body
        return list?.agents?.some((agent: any) => agent.name === "sdk-spawned") === true ? list : undefined
      })
      assert.isTrue(spawned.agents.some((agent: any) => agent.name === "sdk-spawned"))
      const spawnInvocation = yield* finished("spawn", delegated.output.invocation_id)
      assert.strictEqual(spawnInvocation.status, "completed")

      // stop(): node.deregister with the provider removes only it.
      yield* Effect.promise(() => client.stop())
      const after = yield* until(daemon, "the tools provider is gone", async () => {
        const detail = (await http(`${engineUrl}/v1/nodes/${node.name}`, "GET", key)).body.data
        return detail.providers.some((p: any) => p.name === "tools") ? undefined : detail
      })
      assert.deepStrictEqual(after.providers.map((p: any) => [p.name, p.status]), [["broker", "online"]])
      assert.strictEqual(after.status, "online")
    }))
})
