import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { mkdir, unlink } from "node:fs/promises"
import { homedir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { AgentReadiness } from "../broker/AgentReadiness.js"
import { BrokerConfig } from "../broker/BrokerConfig.js"
import { SpawnFailed } from "../broker/errors.js"
import { EventLog } from "../broker/EventLog.js"
import { splitCommandLine } from "../broker/harness.js"
import { stdioVariables, wiringFor } from "../broker/mcpWiring.js"
import { writeFileAtomic } from "../lib/AtomicFile.js"
import { agentFileOf } from "./agentFiles.js"
import { applyWiring } from "./applyWiring.js"
import { stdioNodeFlags } from "./launch.js"
import { preflight } from "./preflight.js"
import { type Ledger, record, release, restore } from "./wiringLedger.js"

// The daemon's side of the agent-relay tools: which token belongs to which of its agents (the
// credential of `/mcp` and of the agent routes), the MCP wiring and preflight of each spawn, result
// contracts (`agentResultSchema`), who spawned whom through the tools, and the readiness report.

export interface PrepareSpec {
  readonly name: string
  readonly token: Redacted.Redacted<string>
  /** The harness program and the arguments it will get (the user's). */
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  /** The agent's environment as it stands (RELAY_* set). */
  readonly env: Readonly<Record<string, string>>
  readonly resultSchema?: unknown
}

export interface Prepared {
  /** Put before the harness's arguments. */
  readonly args: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
  /** What was written or run, for the spawn's `warning`; undefined when nothing. */
  readonly note: string | undefined
}

export interface AgentResult {
  readonly name: string
  readonly result_id: string
  readonly data: unknown
  readonly final: boolean
  readonly metadata?: unknown
  readonly submitted_at: string
}

export class AgentTools extends Context.Tag("relay-broker/AgentTools")<AgentTools, {
  /** The control API's URL, once it listens (ControlApi sets it). */
  readonly setApiUrl: (url: string) => Effect.Effect<void>
  readonly apiUrl: Effect.Effect<Option.Option<string>>
  /** Wires the agent-relay server into the harness and preflights it; fails the spawn when it is broken. */
  readonly prepare: (spec: PrepareSpec) => Effect.Effect<Prepared, SpawnFailed>
  /** The agent a token belongs to (constant-time comparison). */
  readonly agentOf: (token: string) => Effect.Effect<Option.Option<string>>
  readonly tokenOf: (name: string) => Effect.Effect<Option.Option<Redacted.Redacted<string>>>
  /** The agent's process started: a stdio-wired agent gets its 0600 file in the agents directory. */
  readonly started: (name: string, pid: number) => Effect.Effect<void>
  /** On release: the agent's tokens and result contract are dropped, its wiring files put back, its agent file removed. */
  readonly forget: (name: string) => Effect.Effect<void>
  /** The agent whose result token this is, with its schema. */
  readonly resultContractOf: (token: string) => Effect.Effect<Option.Option<{ readonly name: string; readonly schema: unknown }>>
  /** The agent's own result contract (token and schema), for the tools served at /mcp. */
  readonly resultContractFor: (name: string) => Effect.Effect<Option.Option<{ readonly token: string; readonly schema: unknown }>>
  readonly recordResult: (result: AgentResult) => Effect.Effect<void>
  readonly lastResult: (name: string) => Effect.Effect<Option.Option<AgentResult>>
  /** Remembers that `parent` spawned `child` through a tool; `mayRemove` allows releasing only those (and itself). */
  readonly recordSpawn: (parent: string, child: string) => Effect.Effect<void>
  readonly mayRemove: (caller: string, target: string) => Effect.Effect<boolean>
  /** An agent's harness initialised its tool server: the strongest sign that the agent is up. */
  readonly toolServerReady: (name: string, transport: "http" | "stdio") => Effect.Effect<void>
}>() {}

/** This installation's `relay-broker mcp`: `AGENT_RELAY_MCP_COMMAND` when set, else node + dist/main.js (absolute). */
export const stdioServerCommand = (env: NodeJS.ProcessEnv = process.env) => {
  const override = env["AGENT_RELAY_MCP_COMMAND"]?.trim()
  if (override !== undefined && override !== "") {
    const [command = override, ...args] = splitCommandLine(override)
    return { command, args }
  }
  return { command: process.execPath, args: [...stdioNodeFlags, fileURLToPath(new URL("../../dist/main.js", import.meta.url)), "mcp"] }
}

const digest = (value: string) => createHash("sha256").update(value).digest()
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b))

interface State {
  readonly tokens: ReadonlyMap<string, Redacted.Redacted<string>>
  readonly results: ReadonlyMap<string, { readonly token: string; readonly schema: unknown }>
  readonly lastResults: ReadonlyMap<string, AgentResult>
  readonly spawned: ReadonlyMap<string, ReadonlySet<string>>
  readonly ledger: Ledger
  /** Stdio-wired agents: the variables of their agent file, and the file once written. */
  readonly stdioAgents: ReadonlyMap<string, { readonly variables: Readonly<Record<string, string>>; readonly file?: string }>
}

export const make = Effect.gen(function*() {
  const config = yield* BrokerConfig
  const events = yield* EventLog
  const apiUrl = yield* Ref.make<string | undefined>(undefined)
  const state = yield* Ref.make<State>({
    tokens: new Map(),
    results: new Map(),
    lastResults: new Map(),
    spawned: new Map(),
    ledger: new Map(),
    stdioAgents: new Map()
  })
  const agentsDir = join(config.stateDir, "mcp-agents")

  const failed = (command: string, detail: string) => new SpawnFailed({ command, reason: "Failed", detail })

  const prepare = (spec: PrepareSpec) =>
    Effect.gen(function*() {
      yield* Ref.update(state, (s) => ({ ...s, tokens: new Map(s.tokens).set(spec.name, spec.token) }))
      const url = yield* Ref.get(apiUrl)
      const env: Record<string, string> = {}
      let resultNote: string | undefined
      if (spec.resultSchema !== undefined && spec.resultSchema !== null) {
        if (url === undefined) return yield* failed(spec.command, "agentResultSchema needs the control API, which is not listening")
        const token = `art_${randomBytes(24).toString("hex")}`
        yield* Ref.update(state, (s) => ({ ...s, results: new Map(s.results).set(spec.name, { token, schema: spec.resultSchema }) }))
        Object.assign(env, {
          AGENT_RELAY_RESULT_URL: `${url}/api/agent-result`,
          AGENT_RELAY_RESULT_TOKEN: token,
          AGENT_RELAY_RESULT_SCHEMA: JSON.stringify(spec.resultSchema)
        })
        resultNote = "submit_result offered (agentResultSchema)"
      }
      if (url === undefined) {
        yield* Effect.logWarning("no control API yet: the agent gets no agent-relay tools").pipe(Effect.annotateLogs({ agent: spec.name }))
        return { args: [], env, note: "no agent-relay MCP tools: the control API is not listening" } satisfies Prepared
      }
      env["AGENT_RELAY_DAEMON_URL"] = url
      const stdio = stdioServerCommand()
      const wiring = wiringFor({
        command: spec.command,
        args: spec.args,
        cwd: spec.cwd,
        home: spec.env["HOME"] ?? homedir(),
        httpUrl: `${url}/mcp`,
        stdio,
        agentsDir
      })
      if (wiring === undefined) return { args: [], env, note: resultNote } satisfies Prepared
      const fullEnv = { ...spec.env, ...env }
      const applied = yield* applyWiring(wiring, fullEnv, spec.cwd).pipe(Effect.mapError((error) => failed(spec.command, error.message)))
      yield* Ref.update(state, (s) => ({
        ...s,
        ledger: applied.changes.reduce((ledger, change) => record(ledger, spec.name, change), s.ledger),
        stdioAgents: wiring.transport === "stdio"
          ? new Map(s.stdioAgents).set(spec.name, {
            variables: Object.fromEntries(stdioVariables.flatMap((name) => (fullEnv[name] === undefined ? [] : [[name, fullEnv[name]!]])))
          })
          : s.stdioAgents
      }))
      const notes = applied.notes
      yield* preflight(
        wiring.transport === "http"
          ? { _tag: "http", url: `${url}/mcp`, token: Redacted.value(spec.token) }
          : { _tag: "stdio", command: stdio.command, args: stdio.args, env: fullEnv, cwd: spec.cwd }
      ).pipe(Effect.mapError((error) => failed(spec.command, error.message)))
      const note = [`agent-relay MCP tools over ${wiring.transport}`, ...notes, ...(resultNote === undefined ? [] : [resultNote])].join("; ")
      yield* Effect.logInfo("agent-relay tools wired").pipe(Effect.annotateLogs({ agent: spec.name, wiring: note }))
      return { args: wiring.args, env, note } satisfies Prepared
    }).pipe(
      Effect.tapError(() => forget(spec.name)),
      Effect.annotateLogs({ module: "AgentTools" })
    )

  const agentOf = (token: string) =>
    Effect.map(Ref.get(state), (s) => {
      for (const [name, candidate] of s.tokens) if (same(token, Redacted.value(candidate))) return Option.some(name)
      return Option.none<string>()
    })

  const tokenOf = (name: string) => Effect.map(Ref.get(state), (s) => Option.fromNullable(s.tokens.get(name)))

  const removeFile = (file: string | undefined) =>
    file === undefined ? Effect.void : Effect.promise(() => unlink(file).catch(() => undefined))

  const started = (name: string, pid: number) =>
    Effect.gen(function*() {
      const agent = (yield* Ref.get(state)).stdioAgents.get(name)
      if (agent === undefined) return
      const file = agentFileOf(agentsDir, pid)
      yield* Effect.promise(() => mkdir(agentsDir, { recursive: true, mode: 0o700 }))
      yield* writeFileAtomic(file, JSON.stringify(agent.variables), { mode: 0o600 }).pipe(
        Effect.catchAll((error) => Effect.logWarning("cannot write the agent's file for its tool server", error))
      )
      if (agent.file !== file) yield* removeFile(agent.file)
      yield* Ref.update(state, (s) => ({ ...s, stdioAgents: new Map(s.stdioAgents).set(name, { ...agent, file }) }))
    }).pipe(Effect.annotateLogs({ module: "AgentTools", agent: name }))

  const putBack = (records: Parameters<typeof restore>[0]) =>
    records.length === 0 ? Effect.void : Effect.flatMap(restore(records), (notes) =>
      Effect.logInfo("agent-relay wiring put back").pipe(Effect.annotateLogs({ module: "AgentTools", files: notes.join("; ") })))

  const forget = (name: string) =>
    Effect.gen(function*() {
      const { agentFile, restoreRecords } = yield* Ref.modify(state, (s) => {
        const tokens = new Map(s.tokens)
        tokens.delete(name)
        const results = new Map(s.results)
        results.delete(name)
        const stdioAgents = new Map(s.stdioAgents)
        stdioAgents.delete(name)
        const released = release(s.ledger, name)
        return [
          { agentFile: s.stdioAgents.get(name)?.file, restoreRecords: released.restore },
          { ...s, tokens, results, stdioAgents, ledger: released.ledger }
        ]
      })
      yield* removeFile(agentFile)
      yield* putBack(restoreRecords)
    })

  // The daemon stops: every file is put back, every agent file removed.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const s = yield* Ref.get(state)
      for (const agent of s.stdioAgents.values()) yield* removeFile(agent.file)
      yield* putBack([...s.ledger.values()])
    })
  )

  const resultContractOf = (token: string) =>
    Effect.map(Ref.get(state), (s) => {
      for (const [name, contract] of s.results) if (same(token, contract.token)) return Option.some({ name, schema: contract.schema })
      return Option.none<{ name: string; schema: unknown }>()
    })

  const recordResult = (result: AgentResult) =>
    Ref.update(state, (s) => ({ ...s, lastResults: new Map(s.lastResults).set(result.name, result) }))

  const lastResult = (name: string) => Effect.map(Ref.get(state), (s) => Option.fromNullable(s.lastResults.get(name)))

  const recordSpawn = (parent: string, child: string) =>
    Ref.update(state, (s) => ({
      ...s,
      spawned: new Map(s.spawned).set(parent, new Set(s.spawned.get(parent) ?? []).add(child))
    }))

  const mayRemove = (caller: string, target: string) =>
    Effect.map(Ref.get(state), (s) => caller === target || (s.spawned.get(caller)?.has(target) ?? false))

  // The readiness signal: read from the caller's context (the control API's routes have it), since
  // AgentReadiness is built beside this service, not below it.
  const toolServerReady = (name: string, transport: "http" | "stdio") =>
    Effect.gen(function*() {
      yield* events.publish("agent_tools_ready", { name, transport })
      const readiness = yield* Effect.serviceOption(AgentReadiness)
      if (Option.isSome(readiness)) yield* Effect.ignore(readiness.value.signal(name, `mcp-${transport}`))
      yield* Effect.logInfo("agent's tool server initialised").pipe(Effect.annotateLogs({ module: "AgentTools", agent: name, transport }))
    })

  yield* Effect.logDebug("agent tools ready").pipe(Effect.annotateLogs({ node: config.nodeName }))

  return AgentTools.of({
    setApiUrl: (url) => Ref.set(apiUrl, url),
    apiUrl: Effect.map(Ref.get(apiUrl), Option.fromNullable),
    prepare,
    agentOf,
    tokenOf,
    started,
    forget,
    resultContractOf,
    resultContractFor: (name) => Effect.map(Ref.get(state), (s) => Option.fromNullable(s.results.get(name))),
    recordResult,
    lastResult,
    recordSpawn,
    mayRemove,
    toolServerReady
  })
})

export const layer: Layer.Layer<AgentTools, never, BrokerConfig | EventLog> = Layer.scoped(AgentTools, make)
