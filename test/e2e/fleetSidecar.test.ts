import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { pathToFileURL } from "node:url"
import WebSocket from "ws"
import { api, mainJs, startDaemon, tempRoot, until } from "../support/daemonProcess.js"
import { eventually } from "../support/polling.js"
import { freshMachineEnv } from "../support/processes.js"

// A fleet sidecar's action handler, end to end: the real agent-relay 9.1.6 sidecar client
// (`serveFleetSidecar`, what `agent-relay local up` runs) with a node defined by the real
// @agent-relay/fleet 9.1.6 library connects to a real daemon; the daemon advertises its handlers to
// the embedded engine; an agent invokes the action through the engine; the daemon sends the sidecar
// `invoke_handler`, and its answer (or its error, or its disconnecting) is the invocation's result.

const require = createRequire(import.meta.url)
const agentRelayDist = join(dirname(require.resolve("agent-relay/package.json")), "dist")

/** The CLI's own module (not in the package's exports, so loaded by path). */
const loadSidecarClient = () =>
  Effect.promise(() => import(pathToFileURL(join(agentRelayDist, "cli", "lib", "fleet-sidecar.js")).href))

const loadFleet = () => Effect.promise(() => import(require.resolve("@agent-relay/fleet")))

/** `{ok, data}` of one engine call. */
const engine = (baseUrl: string, token: string, method: string, path: string, body?: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    return { status: response.status, body: await response.json() as any }
  })

describe.skipIf(!existsSync(mainJs))("fleet sidecar handlers", () => {
  it.scopedLive("an engine action registered by a connected sidecar is answered by it; its error and its disconnect end the invocation", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot("relay-broker-sidecar-")
      const stateDir = join(root, "state")
      const daemon = yield* startDaemon(
        ["init", "--instance-name", "sidecar", "--channels", "general", "--persist", "--state-dir", stateDir],
        stateDir,
        freshMachineEnv(root, { AGENT_RELAY_NODE_HARNESSES: "" })
      )
      yield* Effect.promise(() => until(daemon, () => daemon.stderr.some((line) => line.includes("connected to ws://")) || undefined))
      const baseUrl = (yield* api(daemon.url, daemon.apiKey, "GET", "/api/session")).body.relay_base_url as string
      const workspaceKey = (yield* api(daemon.url, daemon.apiKey, "GET", "/api/config")).body.workspaceKey as string
      const caller = (yield* engine(baseUrl, workspaceKey, "POST", "/v1/agents", { name: "caller" })).body.data.token as string

      const { action, defineNode } = yield* loadFleet()
      const { serveFleetSidecar } = yield* loadSidecarClient()
      let stallStarted = false
      const definition = defineNode({
        name: "test-node",
        capabilities: {
          summarize: action({}, async (input: any, ctx: any) => ({ summary: String(input.text).toUpperCase(), invocation: ctx.invocationId })),
          explode: async () => {
            throw new Error("the handler blew up")
          },
          stall: async () => {
            stallStarted = true
            return new Promise(() => {})
          }
        }
      })
      const warnings: Array<string> = []
      const controller = new AbortController()
      const served = serveFleetSidecar({
        connection: { url: daemon.url, apiKey: daemon.apiKey },
        definition,
        signal: controller.signal,
        reconnect: false,
        warn: (line: string) => warnings.push(line)
      }) as Promise<void>
      yield* Effect.addFinalizer(() => Effect.promise(() => (controller.abort(), served.catch(() => undefined))))

      // The daemon advertises the sidecar's handlers: the engine now has the actions, on this node.
      yield* eventually("the engine knows the sidecar's actions", Effect.map(engine(baseUrl, workspaceKey, "GET", "/v1/actions"), (answer) => {
        const names = (answer.body.data as Array<any>).filter((row) => row.handler_node_id !== null).map((row) => row.name)
        return ["summarize", "explode", "stall"].every((name) => names.includes(name))
      }))

      const invokeAndSettle = (name: string, input: unknown, whileWaiting: Effect.Effect<void> = Effect.void) =>
        Effect.gen(function*() {
          const started = yield* engine(baseUrl, caller, "POST", `/v1/actions/${name}/invoke`, { input })
          assert.strictEqual(started.status, 201, JSON.stringify(started.body))
          const id = started.body.data.invocation_id as string
          yield* whileWaiting
          let detail: any
          yield* eventually(`${name} settles`, Effect.map(engine(baseUrl, caller, "GET", `/v1/actions/${name}/invocations/${id}`), (answer) => {
            detail = answer.body.data
            return detail.status === "completed" || detail.status === "failed"
          }))
          return { id, detail }
        })

      const summarized = yield* invokeAndSettle("summarize", { text: "hello" })
      assert.strictEqual(summarized.detail.status, "completed")
      assert.deepStrictEqual(summarized.detail.output, { summary: "HELLO", invocation: summarized.id })

      const exploded = yield* invokeAndSettle("explode", {})
      assert.deepStrictEqual([exploded.detail.status, exploded.detail.error], ["failed", "the handler blew up"])

      // A handler that never answers, then its sidecar goes away: the invocation fails at once, clearly.
      const stalled = yield* invokeAndSettle("stall", {}, Effect.gen(function*() {
        yield* eventually("the stall handler runs", Effect.sync(() => stallStarted))
        controller.abort()
        yield* Effect.promise(() => served)
      }))
      assert.strictEqual(stalled.detail.status, "failed")
      assert.match(stalled.detail.error, /^handler_unavailable: the fleet sidecar 'test-node' disconnected/)
      assert.deepStrictEqual(warnings, [])

      // Upstream's frames, raw: spawn_agent keeps the team and reports a missing program as the caller's
      // error; a handler_result nobody waits for, or with both output and error, is refused.
      const raw = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(`${daemon.url.replace(/^http/, "ws")}/api/fleet/ws`, { headers: { "x-api-key": daemon.apiKey } })
            ws.once("open", () => resolve(ws))
            ws.once("error", reject)
          })
        ),
        (ws) => Effect.sync(() => ws.terminate())
      )
      const answers = new Map<string, any>()
      raw.on("message", (data) => {
        const frame = JSON.parse(data.toString())
        if (typeof frame.request_id === "string") answers.set(frame.request_id, frame)
      })
      const request = (id: string, type: string, payload: unknown) =>
        Effect.gen(function*() {
          raw.send(JSON.stringify({ v: 2, type, request_id: id, payload }))
          yield* eventually(`the answer to ${type}`, Effect.sync(() => answers.has(id)))
          return answers.get(id)
        })
      assert.strictEqual((yield* request("r1", "hello", { client_name: "@agent-relay/fleet", client_version: "8.6.0" })).type, "ok")
      const spawned = yield* request("r2", "spawn_agent", {
        agent: { name: "fleet-w", runtime: "pty", cli: "cat", team: "red" },
        skip_relay_prompt: true
      })
      assert.deepStrictEqual([spawned.type, spawned.payload.result.name], ["ok", "fleet-w"])
      const listed = (yield* api(daemon.url, daemon.apiKey, "GET", "/api/spawned")).body.agents.find((agent: any) => agent.name === "fleet-w")
      assert.strictEqual(listed.team, "red")
      const missing = yield* request("r3", "spawn_agent", { agent: { name: "fleet-x", runtime: "pty", cli: "no-such-cli-xyz" } })
      assert.deepStrictEqual([missing.type, missing.payload.code, missing.payload.retryable], ["error", "cli_not_found", false])
      const stray = yield* request("r4", "handler_result", { invocation_id: "inv_nobody", output: 1 })
      assert.deepStrictEqual([stray.type, stray.payload.code], ["error", "unknown_invocation"])
      const both = yield* request("r5", "handler_result", { invocation_id: "inv_nobody", output: 1, error: "x" })
      assert.deepStrictEqual([both.type, both.payload.code, both.payload.message], [
        "error",
        "invalid_request",
        "handler_result must include exactly one of output or error"
      ])
    }))
})
