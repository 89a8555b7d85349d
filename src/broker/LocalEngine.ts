import * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import { userInfo } from "node:os"
import { join } from "node:path"
import { writeFileAtomic } from "../lib/AtomicFile.js"
import type { BrokerSettings } from "./BrokerConfig.js"
import * as EngineClient from "./EngineClient.js"
import { type EngineHttpFailed, PersistFailed } from "./errors.js"

// The engine the daemon talks to. With RELAY_BASE_URL it is that engine; without it, the embedded
// engine runs in this process on a free loopback port, with its data under the state dir. Without a
// workspace key, a local workspace is created once and its key kept in `<state dir>/workspace.json`
// (0600, written atomically), so a restart reuses it.

export interface EngineConnection {
  readonly baseUrl: string
  readonly workspaceKey: Redacted.Redacted<string>
  /** True when this process runs the engine (it stops with the scope). */
  readonly embedded: boolean
}

/** Starts the embedded engine for the lifetime of the scope (src/engine: `EmbeddedEngine.start`). */
export type StartEmbeddedEngine<E, R> = (options: {
  readonly dataDir: string
  readonly port: number
}) => Effect.Effect<{ readonly url: string; readonly port: number }, E, Scope.Scope | R>

export const workspaceFileName = "workspace.json"
export const engineDataDirName = "engine"

/** What `workspace.json` holds. `engine` is "embedded" or the base URL the key belongs to. */
const WorkspaceFile = Schema.Struct({
  engine: Schema.String,
  workspace_id: Schema.String,
  api_key: Schema.String
})
const WorkspaceFileJson = Schema.parseJson(WorkspaceFile)

/** Upstream's name for an auto-created workspace: `relay-<sha256(user:cwd)[..8]>`. */
export const workspaceNameFor = (cwd: string): string => {
  let user = process.env["USER"] ?? process.env["USERNAME"] ?? ""
  if (user === "") {
    try {
      user = userInfo().username
    } catch {
      user = "user"
    }
  }
  return `relay-${createHash("sha256").update(`${user}:${cwd}`).digest("hex").slice(0, 8)}`
}

/** The key recorded for `engine`, if any (an unreadable or foreign file is ignored). */
const readRecorded = (path: string, engine: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(path).pipe(Effect.option)
    if (Option.isNone(text)) return Option.none<typeof WorkspaceFile.Type>()
    return Schema.decodeUnknownOption(WorkspaceFileJson)(text.value).pipe(
      Option.filter((recorded) => recorded.engine === engine)
    )
  })

/** A recorded key that the engine still knows, or a new workspace (recorded before it is used). */
const ensureWorkspace = (settings: BrokerSettings, baseUrl: string, engine: string) =>
  Effect.gen(function*() {
    const client = yield* EngineClient.makeWith({ baseUrl })
    const path = join(settings.stateDir, workspaceFileName)
    const recorded = yield* readRecorded(path, engine)
    if (Option.isSome(recorded)) {
      const key = Redacted.make(recorded.value.api_key)
      const known = yield* client.getWorkspace(key).pipe(
        Effect.as(true),
        // The engine forgot it (e.g. its data was wiped): make a new one. Anything else is a real failure.
        Effect.catchIf((error) => error.status === 401 || error.status === 403 || error.status === 404, () =>
          Effect.as(Effect.logWarning("the recorded workspace is unknown to the engine; creating a new one"), false))
      )
      if (known) {
        yield* Effect.logInfo("reusing the local workspace").pipe(Effect.annotateLogs({ workspace: recorded.value.workspace_id }))
        return key
      }
    }
    const created = yield* client.createWorkspace(workspaceNameFor(settings.cwd))
    const content = JSON.stringify({
      engine,
      workspace_id: created.workspaceId,
      api_key: Redacted.value(created.apiKey)
    }, null, 2) + "\n"
    yield* writeFileAtomic(path, content, { mode: 0o600 }).pipe(
      Effect.mapError((error) => new PersistFailed({ path, detail: error.message }))
    )
    yield* Effect.logInfo("created a local workspace").pipe(Effect.annotateLogs({ workspace: created.workspaceId }))
    return created.apiKey
  })

/**
 * The engine connection for these settings: the configured engine, or the embedded one started in
 * this scope; the configured workspace key, or a local workspace's.
 */
export const connect = <E, R>(
  settings: BrokerSettings,
  startEmbedded: StartEmbeddedEngine<E, R>
): Effect.Effect<
  EngineConnection,
  E | EngineHttpFailed | PersistFailed,
  Scope.Scope | R | FileSystem.FileSystem | HttpClient.HttpClient
> =>
  Effect.gen(function*() {
    if (Option.isSome(settings.baseUrl)) {
      const baseUrl = settings.baseUrl.value
      const workspaceKey = Option.isSome(settings.workspaceKey)
        ? settings.workspaceKey.value
        : yield* ensureWorkspace(settings, baseUrl, baseUrl)
      return { baseUrl, workspaceKey, embedded: false }
    }
    const started = yield* startEmbedded({ dataDir: join(settings.stateDir, engineDataDirName), port: 0 })
    yield* Effect.logInfo("embedded engine started").pipe(Effect.annotateLogs({ url: started.url }))
    // A configured key belongs to some other engine: the embedded one only knows its own workspaces.
    if (Option.isSome(settings.workspaceKey)) {
      yield* Effect.logWarning("a workspace key is set but RELAY_BASE_URL is not: using a local workspace of the embedded engine")
    }
    const workspaceKey = yield* ensureWorkspace(settings, started.url, "embedded")
    return { baseUrl: started.url, workspaceKey, embedded: true }
  }).pipe(Effect.annotateLogs({ module: "LocalEngine" }))
