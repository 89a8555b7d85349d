import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { AgentIdleness, type CurrentState } from "../AgentIdleness.js"
import { type AgentInfo, AgentRegistry, type RestartingAgent, type SpawnSpec } from "../AgentRegistry.js"
import { joinSpawnChannels, membershipOf, type Memberships } from "./channelRoutes.js"
import type { PtyClosed, SpawnFailed } from "../errors.js"
import { InputBody, ResizeBody, SnapshotFormat, SpawnBody } from "./bodies.js"
import { agentNotFound, BadRequest, badRequest, decodeBody, failure, json, queryParam } from "./responses.js"

// The agent routes of the control API: spawn, list, release, raw input, resize, snapshot.

/** The terminal size of each agent as last set through the API (PtyHost starts terminals at 80×24). */
export type TerminalSizes = Ref.Ref<ReadonlyMap<string, { readonly rows: number; readonly cols: number }>>

/** An agent that produced output or took input this recently counts as working rather than idle. */
const workingWindowMs = 10_000

const nameParam = Effect.map(HttpRouter.params, (params) => params["name"] ?? "")

const spawnSpecOf = (body: SpawnBody): SpawnSpec => ({
  name: body.name,
  // Upstream's default harness.
  cli: body.cli ?? "claude",
  ...(body.args == null ? {} : { args: body.args }),
  ...(body.cwd == null ? {} : { cwd: body.cwd }),
  ...(body.task == null ? {} : { task: body.task }),
  ...(body.channels == null ? {} : { channels: body.channels }),
  ...(body.model == null ? {} : { model: body.model }),
  ...(body.team == null || body.team.trim() === "" ? {} : { team: body.team }),
  ...(body.env == null ? {} : { env: body.env }),
  ...((body.agentResultSchema ?? body.agent_result_schema) == null
    ? {}
    : { resultSchema: body.agentResultSchema ?? body.agent_result_schema }),
  ...restartPolicyOf(body)
})

/** null fields count as absent (AgentSupervisor fills in its defaults). */
const restartPolicyOf = (body: SpawnBody): Pick<SpawnSpec, "restartPolicy"> => {
  const policy = body.restartPolicy ?? body.restart_policy
  if (policy == null) return {}
  return {
    restartPolicy: Object.fromEntries(Object.entries(policy).filter(([, value]) => value != null))
  }
}

/**
 * A program or directory that does not exist (or cannot run) is the caller's to fix; an installation
 * without terminals stays so; only a terminal that could not be started this time may pass.
 */
export const spawnFailure = (error: SpawnFailed, spec: Pick<SpawnSpec, "name" | "cli" | "cwd">) => {
  switch (error.reason) {
    case "NotFound":
      return failure(400, "cli_not_found", error.message, { name: spec.name, cli: spec.cli })
    case "NotExecutable":
      return failure(400, "cli_not_executable", error.message, { name: spec.name, cli: spec.cli })
    case "InvalidCwd":
      return failure(400, "invalid_cwd", error.message, { name: spec.name, cwd: spec.cwd ?? null })
    case "Unavailable":
      return failure(500, "spawn_failed", error.message, { name: spec.name, retryable: false })
    case "Failed":
      return failure(500, "spawn_failed", error.message, { name: spec.name, retryable: true })
  }
}

const spawn = Effect.gen(function*() {
  const body = yield* decodeBody(SpawnBody)
  if (body.transport === "headless" || body.runtime === "headless") {
    return failure(409, "unsupported_runtime", "this broker runs agents in terminals only: spawn with transport \"pty\"", {
      name: body.name
    })
  }
  const registry = yield* AgentRegistry
  const spec = spawnSpecOf(body)
  const agent = yield* registry.spawn(spec).pipe(
    Effect.catchTags({
      InvalidAgentName: (error) => Effect.fail(failure(400, "invalid_agent_name", error.message, { name: spec.name })),
      NameTaken: (error) => Effect.fail(failure(409, "name_taken", error.message, { name: spec.name })),
      // The engine away or slow can pass; a refusal stays a refusal.
      BindFailed: (error) =>
        Effect.fail(failure(502, "bind_failed", error.message, { name: spec.name, retryable: error.reason !== "Rejected" })),
      SpawnFailed: (error) => Effect.fail(spawnFailure(error, spec))
    })
  )
  yield* configureLifecycle(agent.name, body)
  const joined = yield* joinSpawnChannels(agent.name, spec.channels ?? [])
  const warnings = [agent.warning, ...joined.failures.map((line) => `could not join ${line}`)].filter((line) => line !== undefined)
  return json({
    success: true,
    name: agent.name,
    agent_id: agent.agentId,
    runtime: "pty",
    cli: agent.cli,
    model: spec.model ?? null,
    sessionId: null,
    pid: agent.pid,
    pre_registered: true,
    channels: joined.channels,
    warning: warnings.length === 0 ? null : warnings.join("; ")
  })
}).pipe(
  Effect.catchTag("BadRequest", (error) => Effect.succeed(badRequest(error))),
  Effect.merge
)

/** idleThresholdSecs, spawnMode and exitAfterTask go to AgentIdleness, when it runs. */
const configureLifecycle = (name: string, body: SpawnBody) =>
  Effect.flatMap(Effect.serviceOption(AgentIdleness), (idleness) =>
    Option.isNone(idleness) ? Effect.void : idleness.value.configure(name, {
      ...(body.idleThresholdSecs == null ? {} : { idleThresholdSecs: body.idleThresholdSecs }),
      ...(body.spawnMode == null ? {} : { spawnMode: body.spawnMode }),
      ...(body.exitAfterTask == null ? {} : { exitAfterTask: body.exitAfterTask })
    }))

const currentStateOf = (agent: AgentInfo, now: number) =>
  Effect.flatMap(Effect.serviceOption(AgentIdleness), (idleness): Effect.Effect<CurrentState> =>
    Option.isSome(idleness)
      ? idleness.value.stateOf(agent)
      : Effect.succeed(agent.status === "running" && now - agent.lastActivityAt < workingWindowMs ? "working" : "idle"))

const agentView = (agent: AgentInfo, now: number, memberships: Memberships, currentState: CurrentState) => ({
  name: agent.name,
  agent_id: agent.agentId,
  runtime: "pty",
  provider: agent.cli,
  cli: agent.cli,
  args: agent.args,
  cwd: agent.cwd,
  model: agent.model ?? null,
  sessionId: null,
  team: agent.team ?? null,
  channels: memberships.get(agent.name) ?? [],
  parent: null,
  pid: agent.pid,
  workerPid: agent.pid,
  status: agent.status,
  started_at: new Date(agent.startedAt).toISOString(),
  last_activity_ms: agent.lastActivityAt,
  last_activity_at: new Date(agent.lastActivityAt).toISOString(),
  context_budget_pct: null,
  current_state: currentState,
  ...readinessView(agent)
})

/** Whether the agent can take keys yet, and how that was decided (`signal`, `screen`, `timeout`, `immediate`). */
const readinessView = (agent: AgentInfo) => {
  const readiness = agent.readiness
  return {
    readiness: readiness?.state ?? null,
    readiness_source: readiness?.state === "ready" ? readiness.decidedBy : null,
    ready_at: readiness?.state === "ready" ? new Date(readiness.at).toISOString() : null,
    readiness_warning: readiness?.state === "ready" ? readiness.warning ?? null : null,
    blocked_screen: readiness?.state === "blocked" ? readiness.screen : null
  }
}

/**
 * An agent in its restart cooldown: still bound, no process. `status` and `current_state` say
 * `restarting`; `restart_count` is the restart under way, `next_restart_at` when it is due.
 */
const restartingView = (agent: RestartingAgent, now: number, memberships: Memberships) => ({
  ...agentView(agent.info, now, memberships, "idle"),
  pid: null,
  workerPid: null,
  status: "restarting",
  current_state: "restarting",
  restart_count: agent.restartCount,
  next_restart_at: new Date(agent.restartAt).toISOString(),
  readiness: null,
  readiness_source: null,
  ready_at: null,
  readiness_warning: null,
  blocked_screen: null
})

/** Every agent of this broker (running, or restarting) in the shape of `GET /api/spawned`; also used by `/api/status`. */
export const agentViews = Effect.gen(function*() {
  const registry = yield* AgentRegistry
  const agents = yield* registry.list
  const restarting = yield* registry.restarting
  const now = yield* Clock.currentTimeMillis
  const memberships = yield* membershipOf([...agents, ...restarting.map((agent) => agent.info)].map((agent) => agent.name))
  const running = yield* Effect.forEach(agents, (agent) =>
    Effect.map(currentStateOf(agent, now), (state) => agentView(agent, now, memberships, state)))
  return [...running, ...restarting.map((agent) => restartingView(agent, now, memberships))]
})

const list = Effect.map(agentViews, (agents) => json({ agents }))

const release = Effect.gen(function*() {
  const name = yield* nameParam
  const registry = yield* AgentRegistry
  return yield* registry.release(name).pipe(
    Effect.as(json({ success: true, name })),
    Effect.catchTag("UnknownWorker", () => Effect.succeed(agentNotFound(name)))
  )
})

/** The live agent's terminal, or the 404 to answer. */
const terminalOf = (name: string) =>
  AgentRegistry.pipe(
    Effect.flatMap((registry) => registry.lookup(name)),
    Effect.mapError(() => agentNotFound(name))
  )

const closed = (name: string) => (error: PtyClosed) =>
  Effect.fail(failure(409, "agent_exited", `${name}: ${error.message}`, { name }))

const input = Effect.gen(function*() {
  const name = yield* nameParam
  const agent = yield* terminalOf(name)
  const body = yield* decodeBody(InputBody).pipe(Effect.mapError(badRequest))
  yield* agent.pty.write(body.data).pipe(Effect.catchTag("PtyClosed", closed(name)))
  return json({ name, bytes_written: Buffer.byteLength(body.data, "utf8") })
}).pipe(Effect.merge)

const resize = (sizes: TerminalSizes) =>
  Effect.gen(function*() {
    const name = yield* nameParam
    const agent = yield* terminalOf(name)
    const body = yield* decodeBody(ResizeBody).pipe(Effect.mapError(badRequest))
    yield* agent.pty.resize(body.cols, body.rows).pipe(Effect.catchTag("PtyClosed", closed(name)))
    yield* Ref.update(sizes, (current) => new Map(current).set(name, { rows: body.rows, cols: body.cols }))
    return json({ success: true, name, rows: body.rows, cols: body.cols })
  }).pipe(Effect.merge)

const snapshot = Effect.gen(function*() {
    const name = yield* nameParam
    const request = yield* HttpServerRequest.HttpServerRequest
    const format = yield* Schema.decodeUnknown(SnapshotFormat)(queryParam(request.url, "format") ?? "plain").pipe(
      Effect.mapError(() => badRequest(new BadRequest({ message: "format: expected \"plain\" or \"ansi\"" })))
    )
    const agent = yield* terminalOf(name)
    const view = yield* agent.pty.screen
    // `plain`: the scrollback then the screen, as text; `ansi`: the screen as a terminal would replay it.
    const screen = format === "ansi" ? yield* agent.pty.ansi : yield* agent.pty.snapshot
    return json({
      name,
      format,
      rows: view.rows,
      cols: view.cols,
      // The emulator's cursor, within the visible screen.
      cursor: [view.cursor[0], view.cursor[1]],
      screen: format === "ansi" ? Buffer.from(screen, "utf8").toString("base64") : screen
    })
  }).pipe(Effect.merge)

export const agentRoutes = (sizes: TerminalSizes) =>
  HttpRouter.empty.pipe(
    HttpRouter.post("/api/spawn", spawn),
    HttpRouter.get("/api/spawned", list),
    HttpRouter.del("/api/spawned/:name", release),
    HttpRouter.get("/api/spawned/:name/snapshot", snapshot),
    HttpRouter.post("/api/input/:name", input),
    HttpRouter.post("/api/resize/:name", resize(sizes))
  )
