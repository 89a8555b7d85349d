import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import { AgentRegistry } from "../AgentRegistry.js"
import { BrokerIdentity } from "../BrokerIdentity.js"
import { EngineClient } from "../EngineClient.js"
import type { BindFailed, InvalidAgentName, NameTaken, SpawnFailed } from "../errors.js"
import { EventLog } from "../EventLog.js"
import { type HandlerOutcome, type Sidecar, SidecarHandlers } from "../SidecarHandlers.js"
import type { FleetCapability } from "../../wire/frames.js"
import type { Json } from "../../wire/Json.js"
import { untilClosing } from "./Connections.js"
import { joinSpawnChannels } from "./channelRoutes.js"
import { BadRequest, badRequest, engineFailureStatus } from "./responses.js"

// `GET /api/fleet/ws`: the fleet sidecar protocol of agent-relay 9.1.6 (control-api §3.6), which
// `agent-relay local up` speaks to run its implicit local fleet node. Envelope
// `{v:2, type, request_id, payload}`; every request is answered `{type:"ok", request_id,
// payload:{result}}` or `{type:"error", request_id, payload:{code, message, retryable}}`, in order.
// The broker's durable events go to the client as `{v:2, type:"event", payload:<event>}`.
// The handlers it registers are advertised to the engine, and an engine `action.invoke` of one is
// sent to it as `{v:2, type:"invoke_handler", payload:{invocation_id, name, input}}` (SidecarHandlers);
// its `handler_result` is the action's result.

type Frame = { readonly v?: unknown; readonly type?: unknown; readonly request_id?: unknown; readonly payload?: unknown }

class FleetError extends Error {
  constructor(readonly code: string, message: string, readonly retryable = false) {
    super(message)
  }
}

const record = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : {}

const text = (value: unknown): string | undefined => typeof value === "string" && value.trim() !== "" ? value : undefined

const decoder = new TextDecoder()

export interface FleetNode {
  readonly name: string
  readonly handlers: ReadonlyArray<string>
}

/** The control API's codes for the same failures (`POST /api/spawn`). */
const spawnErrorCode = (error: InvalidAgentName | NameTaken | BindFailed | SpawnFailed): string => {
  switch (error._tag) {
    case "NameTaken":
      return "name_taken"
    case "InvalidAgentName":
      return "invalid_agent_name"
    case "BindFailed":
      return "bind_failed"
    case "SpawnFailed":
      return error.reason === "NotFound"
        ? "cli_not_found"
        : error.reason === "NotExecutable"
        ? "cli_not_executable"
        : error.reason === "InvalidCwd"
        ? "invalid_cwd"
        : "spawn_failed"
  }
}

/** `spawn_agent {agent:{name, cli, args?, cwd?, model?, team?, channels?}, initial_task?}`. */
const spawnAgent = (payload: Record<string, unknown>) =>
  Effect.gen(function*() {
    const agent = record(payload["agent"])
    const name = text(agent["name"])
    if (name === undefined) return yield* Effect.fail(new FleetError("invalid_request", "agent.name is required"))
    // AgentSpec.runtime is "pty" or "headless", never a program; upstream's default harness is claude.
    const cli = text(agent["cli"]) ?? "claude"
    const args = Array.isArray(agent["args"]) ? agent["args"].filter((arg): arg is string => typeof arg === "string") : []
    const channels = Array.isArray(agent["channels"])
      ? agent["channels"].filter((channel): channel is string => typeof channel === "string")
      : []
    const task = text(payload["initial_task"]) ?? text(agent["task"])
    const spawned = yield* (yield* AgentRegistry).spawn({
      name,
      cli,
      args,
      channels,
      ...(text(agent["cwd"]) === undefined ? {} : { cwd: text(agent["cwd"])! }),
      ...(text(agent["model"]) === undefined ? {} : { model: text(agent["model"])! }),
      ...(text(agent["team"]) === undefined ? {} : { team: text(agent["team"])! }),
      ...(task === undefined ? {} : { task }),
      ...(text(payload["invocation_id"]) === undefined ? {} : { invocationId: text(payload["invocation_id"])! })
    }).pipe(
      Effect.mapError((error) =>
        new FleetError(
          spawnErrorCode(error),
          error.message,
          // The engine away or slow, or a terminal that could not start this time, can pass.
          (error._tag === "BindFailed" && error.reason !== "Rejected") || (error._tag === "SpawnFailed" && error.reason === "Failed")
        )
      )
    )
    const joined = yield* joinSpawnChannels(name, channels)
    return { name: spawned.name, runtime: "pty", cli: spawned.cli, pid: spawned.pid, channels: joined.channels }
  })

/** `send_message {to, text, from?, thread_id?, mode?}`: from a local agent when `from` is one, else from the broker. */
const sendMessage = (payload: Record<string, unknown>) =>
  Effect.gen(function*() {
    const to = text(payload["to"])
    const body = text(payload["text"])
    if (to === undefined || body === undefined) return yield* Effect.fail(new FleetError("invalid_request", "to and text are required"))
    const engineService = yield* Effect.serviceOption(EngineClient)
    const identity = yield* Effect.serviceOption(BrokerIdentity)
    if (Option.isNone(engineService) || Option.isNone(identity)) {
      return yield* Effect.fail(new FleetError("unsupported_operation", "messaging is not composed into this broker"))
    }
    const engine = engineService.value
    const from = text(payload["from"])
    const local = from === undefined ? Option.none() : yield* Effect.option((yield* AgentRegistry).lookup(from))
    const token = Option.isSome(local) ? local.value.token : (yield* identity.value.identity).token
    const threadId = text(payload["thread_id"])
    const mode: { readonly mode?: "wait" | "steer" } = payload["mode"] === "steer" || payload["mode"] === "wait"
      ? { mode: payload["mode"] }
      : {}
    const sent = threadId !== undefined
      ? yield* engine.replyInThread(token, { threadId, text: body })
      : to.startsWith("#")
      ? yield* engine.postToChannel(token, { channel: to.slice(1), text: body, ...mode })
      : yield* engine.sendDm(token, { to, text: body, ...mode })
    return { event_id: sent.id, targets: to.startsWith("#") ? [] : [to] }
  }).pipe(
    Effect.catchTag("EngineHttpFailed", (error) =>
      Effect.fail(new FleetError(error.code ?? "relay_error", error.message, engineFailureStatus(error.status).retryable)))
  )

/** The manifest's `capabilities[{name, kind?, metadata?}]`, as advertised to the engine. */
const manifestCapabilities = (manifest: Record<string, unknown>): ReadonlyArray<FleetCapability> =>
  (Array.isArray(manifest["capabilities"]) ? manifest["capabilities"] : []).flatMap((entry): Array<FleetCapability> => {
    const capability = record(entry)
    const name = text(capability["name"])
    if (name === undefined) return []
    const kind = text(capability["kind"])
    const metadata = capability["metadata"]
    return [{
      name,
      ...(kind === undefined ? {} : { kind }),
      ...(typeof metadata === "object" && metadata !== null && !Array.isArray(metadata)
        ? { metadata: metadata as { readonly [key: string]: Json } }
        : {})
    }]
  })

/** `handler_result {invocation_id, output|error}`: exactly one of the two, as upstream requires. */
const handlerResult = (payload: Record<string, unknown>, sidecar: Sidecar) =>
  Effect.gen(function*() {
    const invocationId = text(payload["invocation_id"])
    const hasOutput = "output" in payload
    const error = payload["error"]
    if (invocationId === undefined) return yield* Effect.fail(new FleetError("invalid_request", "handler_result needs invocation_id"))
    if (hasOutput === (error !== undefined)) {
      return yield* Effect.fail(new FleetError("invalid_request", "handler_result must include exactly one of output or error"))
    }
    const outcome: HandlerOutcome = hasOutput
      ? { output: (payload["output"] ?? null) as Json }
      : { error: typeof error === "string" ? error : JSON.stringify(error) }
    yield* sidecar.complete(invocationId, outcome).pipe(
      Effect.mapError((refused) => new FleetError(refused.code, refused.message))
    )
    return { accepted: true }
  })

const handle = (frame: Frame, node: Ref.Ref<FleetNode | undefined>, sidecar: Sidecar | undefined) =>
  Effect.gen(function*() {
    const payload = record(frame.payload)
    switch (frame.type) {
      case "hello":
        return { protocol_version: 2, server: "relay-broker" }
      case "register_node": {
        const manifest = record(payload["manifest"])
        const name = text(manifest["name"]) ?? "local-node"
        yield* Ref.set(node, { name, handlers: [] })
        if (sidecar !== undefined) yield* sidecar.registerNode({ name, capabilities: manifestCapabilities(manifest) })
        yield* Effect.logInfo(`fleet node "${name}" registered`)
        return { node: name, registered: true }
      }
      case "register_handlers": {
        const names = Array.isArray(payload["names"]) ? payload["names"].filter((name): name is string => typeof name === "string") : []
        yield* Ref.update(node, (current) => ({ name: current?.name ?? "local-node", handlers: names }))
        if (sidecar !== undefined) yield* sidecar.registerHandlers(names)
        return { registered: names }
      }
      case "handler_result":
        if (sidecar === undefined) {
          return yield* Effect.fail(new FleetError("unknown_invocation", "handler_result did not match an in-flight invocation"))
        }
        return yield* handlerResult(payload, sidecar)
      case "spawn_agent":
        return yield* spawnAgent(payload)
      case "send_message":
        return yield* sendMessage(payload)
      case "deregister_node": {
        const current = yield* Ref.getAndSet(node, undefined)
        if (current !== undefined) yield* Effect.logInfo(`fleet node "${current.name}" deregistered`)
        if (sidecar !== undefined) yield* sidecar.registerHandlers([])
        return { deregistered: current !== undefined }
      }
      default:
        return yield* Effect.fail(
          new FleetError("unsupported_operation", `the fleet request '${String(frame.type)}' is not supported by this broker`)
        )
    }
  })

export const fleetRoute = Effect.gen(function*() {
  const events = yield* EventLog
  const subscription = yield* events.subscribe()
  const socket = yield* HttpServerRequest.upgrade
  const write = yield* socket.writer
  const node = yield* Ref.make<FleetNode | undefined>(undefined)
  const frames = yield* Queue.unbounded<string | Uint8Array>()
  const handlers = yield* Effect.serviceOption(SidecarHandlers)
  const sidecar = Option.isNone(handlers) ? undefined : yield* Effect.acquireRelease(
    handlers.value.connect({ send: (frame) => write(frame).pipe(Effect.ignore) }),
    (sidecar) => sidecar.close
  )
  const receive = yield* socket.runRaw((frame) => {
    frames.unsafeOffer(frame)
  }).pipe(Effect.ignore, Effect.forkScoped)

  const answer = Effect.forever(Effect.gen(function*() {
    const raw = yield* Queue.take(frames)
    let frame: Frame
    try {
      frame = record(JSON.parse(typeof raw === "string" ? raw : decoder.decode(raw))) as Frame
    } catch {
      return yield* write(JSON.stringify({
        v: 2,
        type: "error",
        payload: { code: "invalid_frame", message: "not a JSON frame", retryable: false }
      }))
    }
    const requestId = frame.request_id ?? null
    const reply = yield* handle(frame, node, sidecar).pipe(
      Effect.map((result) => ({ v: 2, type: "ok", request_id: requestId, payload: { result } })),
      Effect.catchAll((error: FleetError) =>
        Effect.succeed({
          v: 2,
          type: "error",
          request_id: requestId,
          payload: { code: error.code, message: error.message, retryable: error.retryable }
        })
      )
    )
    yield* write(JSON.stringify(reply))
  }))
  const forward = subscription.events.pipe(
    Stream.filter((event) => event.seq !== undefined),
    Stream.runForEach((event) => write(JSON.stringify({ v: 2, type: "event", payload: event })))
  )
  yield* untilClosing(Effect.raceFirst(Effect.raceFirst(answer, forward), Fiber.join(receive))).pipe(Effect.ignore)
  const left = yield* Ref.get(node)
  if (left !== undefined) yield* Effect.logInfo(`fleet node "${left.name}" disconnected`)
  return HttpServerResponse.empty()
}).pipe(
  Effect.scoped,
  Effect.catchTags({
    RequestError: (error) =>
      Effect.succeed(badRequest(new BadRequest({ message: `websocket upgrade required: ${error.message}` })))
  }),
  Effect.annotateLogs({ module: "FleetSidecar" })
)

export const fleetRoutes = HttpRouter.empty.pipe(HttpRouter.get("/api/fleet/ws", fleetRoute))
