import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { createHash, randomBytes } from "node:crypto"
import { join } from "node:path"
import { createFileAtomic, writeFileAtomic } from "../lib/AtomicFile.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { redactSecrets as redactCredentials } from "./EngineClient.js"
import { MintFailed } from "./errors.js"

export interface NodeIdentity {
  readonly nodeId: string
  readonly nodeName: string
  /** The workspace id the node belongs to (as the engine reports it for the workspace key). */
  readonly workspaceId: string
}

export class TokenStore extends Context.Tag("relay-broker/TokenStore")<TokenStore, {
  readonly identity: Effect.Effect<NodeIdentity, MintFailed>
  /** The node token: `RELAY_NODE_TOKEN`, else the scoped cache, else minted (and cached, 0600, atomically). */
  readonly token: Effect.Effect<Redacted.Redacted<string>, MintFailed>
  /** Drops the cache, mints again and persists. Called after an `Unauthorized`. */
  readonly remint: Effect.Effect<Redacted.Redacted<string>, MintFailed>
}>() {}

// ---------------------------------------------------------------------------------------------
// Pure parts (exported for tests and for other tools that share the upstream file layout)

/** `node_` + the first 32 hex chars of sha256(seed ‖ 0x00 ‖ cwd ‖ 0x00 ‖ workspace id). */
export const deriveNodeId = (seed: string, cwd: string, workspaceId: string): string =>
  `node_${createHash("sha256").update(`${seed}\0${cwd}\0${workspaceId}`, "utf8").digest("hex").slice(0, 32)}`

/** ASCII alphanumerics, `-` and `_` are kept; every other char becomes `_`; empty gives `node`. */
export const sanitizeNodeId = (nodeId: string): string => {
  const safe = nodeId.replace(/[^A-Za-z0-9_-]/g, "_")
  return safe === "" ? "node" : safe
}

export const machineIdPath = (dataDir: string): string => join(dataDir, "machine-id")

export const tokenCachePath = (dataDir: string, nodeId: string): string =>
  join(dataDir, "node-tokens", `${sanitizeNodeId(nodeId)}.json`)

/** Credentials (given and credential-shaped), bearer headers and `"token"` fields become `<redacted>`. */
export const redactSecrets = (text: string, secrets: ReadonlyArray<Redacted.Redacted<string>> = []): string =>
  redactCredentials(text, secrets)
    .replace(/\bBearer\s+[^\s"',}]+/gi, "Bearer <redacted>")
    .replace(/("token"\s*:\s*)"[^"]*"/g, "$1\"<redacted>\"")

/** The cache file's content, as upstream writes it: `base_url` is omitted when unknown. */
export const PersistedNodeToken = Schema.Struct({
  node_id: Schema.String,
  workspace_id: Schema.String,
  base_url: Schema.optionalWith(Schema.String, { exact: true }),
  token: Schema.String
})
export type PersistedNodeToken = typeof PersistedNodeToken.Type

const trimSlashes = (url: string) => url.replace(/\/+$/, "")

/**
 * The cached token, only if node id, workspace and base URL all match. A cache without `base_url`
 * is a miss too (stricter than upstream): a token minted by another engine would only 401.
 */
export const cachedTokenFor = (
  cached: PersistedNodeToken,
  scope: { readonly nodeId: string; readonly workspaceId: string; readonly baseUrl: string }
): Option.Option<string> =>
  cached.node_id === scope.nodeId &&
    cached.workspace_id === scope.workspaceId &&
    cached.base_url !== undefined && trimSlashes(cached.base_url) === trimSlashes(scope.baseUrl) &&
    cached.token.trim() !== ""
    ? Option.some(cached.token.trim())
    : Option.none()

// ---------------------------------------------------------------------------------------------
// HTTP

/** 5xx and network errors: 200, 400, 800 ms (4 attempts), as upstream's `mint_node_token`. */
export const mintRetrySchedule = Schedule.exponential("200 millis", 2).pipe(Schedule.intersect(Schedule.recurs(3)))

const requestTimeout = "15 seconds"
const maxBodyInError = 500

const isRetryable = (error: MintFailed) => error.reason === "ServerError" || error.reason === "Transport"

const Enveloped = <A, I>(data: Schema.Schema<A, I>) => Schema.Struct({ data })

const MintedNode = Enveloped(Schema.Struct({ token: Schema.String }))
// `GET /v1/workspace`: `{ok, data: {id, …}}`; a bare `{id, …}` is accepted too.
const WorkspaceInfo = Schema.Union(
  Enveloped(Schema.Struct({ id: Schema.String })),
  Schema.Struct({ id: Schema.String })
)

export const make = Effect.gen(function*() {
  const config = yield* BrokerConfig
  const client = yield* HttpClient.HttpClient
  const fs = yield* FileSystem.FileSystem
  const withFs = Effect.provideService(FileSystem.FileSystem, fs)
  const secrets = [config.workspaceKey, ...(config.nodeToken === undefined ? [] : [config.nodeToken])]
  const pinned = config.nodeToken !== undefined
  const version = `relay-broker/${config.version}`

  /** One HTTP call with the workspace key: the parsed JSON body of a 2xx, or a typed MintFailed. */
  const call = (operation: string, request: HttpClientRequest.HttpClientRequest) =>
    Effect.gen(function*() {
      const response = yield* client.execute(
        request.pipe(
          HttpClientRequest.prependUrl(config.baseUrl),
          HttpClientRequest.bearerToken(config.workspaceKey),
          HttpClientRequest.setHeader("x-relaycast-origin-client", "relay-broker"),
          HttpClientRequest.setHeader("x-relaycast-origin-version", config.version)
        )
      ).pipe(
        Effect.timeoutFail({
          duration: requestTimeout,
          onTimeout: () => new MintFailed({ reason: "Transport", body: `${operation}: no answer within ${requestTimeout}` })
        }),
        Effect.catchTag("RequestError", "ResponseError", (error) =>
          Effect.fail(new MintFailed({ reason: "Transport", body: redactSecrets(`${operation}: ${error.message}`, secrets) })))
      )
      const text = yield* response.text.pipe(Effect.orElseSucceed(() => ""))
      const body = redactSecrets(text, secrets).slice(0, maxBodyInError)
      const status = response.status
      if (status >= 500) return yield* new MintFailed({ status, reason: "ServerError", body: `${operation}: ${body}` })
      if (status < 200 || status >= 300) return yield* new MintFailed({ status, reason: "Rejected", body: `${operation}: ${body}` })
      return yield* Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: () => new MintFailed({ status, reason: "InvalidResponse", body: `${operation}: not JSON: ${body}` })
      })
    }).pipe(Effect.retry({ schedule: mintRetrySchedule, while: isRetryable }))

  const decodeBody = <A, I>(operation: string, schema: Schema.Schema<A, I>, json: unknown) =>
    Schema.decodeUnknown(schema)(json).pipe(
      Effect.mapError(() =>
        new MintFailed({
          reason: "InvalidResponse",
          body: `${operation}: unexpected answer: ${redactSecrets(JSON.stringify(json), secrets).slice(0, maxBodyInError)}`
        })
      )
    )

  const fetchWorkspaceId = Effect.gen(function*() {
    const json = yield* call("GET /v1/workspace", HttpClientRequest.get("/v1/workspace"))
    const info = yield* decodeBody("GET /v1/workspace", WorkspaceInfo, json)
    return "data" in info ? info.data.id : info.id
  })

  // ---- machine seed -------------------------------------------------------------------------

  const seedPath = machineIdPath(config.dataDir)
  const readSeed = fs.readFileString(seedPath).pipe(Effect.map((text) => text.trim()))

  const loadOrCreateSeed = Effect.gen(function*() {
    const existing = yield* readSeed.pipe(
      Effect.catchIf((error) => error._tag === "SystemError" && error.reason === "NotFound", () => Effect.succeed(""))
    )
    if (existing !== "") return existing
    const fresh = `node_${randomBytes(16).toString("hex")}\n`
    // Exclusive create: two brokers starting at once agree on one seed. An empty file is replaced.
    const created = yield* withFs(createFileAtomic(seedPath, fresh, { mode: 0o600 }))
    if (!created && (yield* readSeed) === "") yield* withFs(writeFileAtomic(seedPath, fresh, { mode: 0o600 }))
    return yield* readSeed
  }).pipe(
    Effect.catchAll((error) => {
      const ephemeral = `node_${randomBytes(16).toString("hex")}`
      return Effect.logWarning(`cannot read or create the machine seed ${seedPath} (${error.message}); using ${ephemeral} for this run only`)
        .pipe(Effect.as(ephemeral))
    })
  )

  // ---- identity (memoised once it succeeds) -------------------------------------------------

  const lock = yield* Effect.makeSemaphore(1)
  const identityRef = yield* Ref.make(Option.none<NodeIdentity>())
  const seedRef = yield* Ref.make(Option.none<string>())

  const seed = Effect.gen(function*() {
    const known = yield* Ref.get(seedRef)
    if (Option.isSome(known)) return known.value
    const loaded = yield* loadOrCreateSeed
    yield* Ref.set(seedRef, Option.some(loaded))
    return loaded
  })

  const identity = Effect.gen(function*() {
    const known = yield* Ref.get(identityRef)
    if (Option.isSome(known)) return known.value
    const workspaceId = yield* fetchWorkspaceId
    const machineSeed = yield* seed
    // Pinned (operator-enrolled) token: the engine knows the node by the seed itself.
    const nodeId = pinned ? machineSeed : deriveNodeId(machineSeed, config.cwd, workspaceId)
    const resolved: NodeIdentity = { nodeId, nodeName: config.nodeName, workspaceId }
    yield* Ref.set(identityRef, Option.some(resolved))
    return resolved
  })

  // ---- token ----------------------------------------------------------------------------------

  const current = yield* Ref.make(Option.none<Redacted.Redacted<string>>())

  const readCache = (id: NodeIdentity) =>
    fs.readFileString(tokenCachePath(config.dataDir, id.nodeId)).pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.parseJson(PersistedNodeToken))),
      Effect.map((cached) => cachedTokenFor(cached, { ...id, baseUrl: config.baseUrl })),
      Effect.orElseSucceed(() => Option.none<string>())
    )

  const persist = (id: NodeIdentity, token: string) => {
    const content: PersistedNodeToken = {
      node_id: id.nodeId,
      workspace_id: id.workspaceId,
      base_url: config.baseUrl,
      token
    }
    return withFs(writeFileAtomic(tokenCachePath(config.dataDir, id.nodeId), JSON.stringify(content), { mode: 0o600 })).pipe(
      Effect.catchAll((error) => Effect.logWarning(`could not cache the node token (it is still used): ${error.message}`))
    )
  }

  const mint = (id: NodeIdentity) =>
    Effect.gen(function*() {
      const json = yield* call(
        "POST /v1/nodes",
        HttpClientRequest.post("/v1/nodes").pipe(
          HttpClientRequest.bodyUnsafeJson({ node_id: id.nodeId, name: id.nodeName, kind: "ws", role: "broker", version })
        )
      )
      const minted = (yield* decodeBody("POST /v1/nodes", MintedNode, json)).data.token.trim()
      if (minted === "") return yield* new MintFailed({ reason: "InvalidResponse", body: "POST /v1/nodes: empty token" })
      yield* persist(id, minted)
      yield* Effect.logInfo(`minted a node token for ${id.nodeId}`)
      return Redacted.make(minted)
    })

  const resolve = Effect.gen(function*() {
    if (config.nodeToken !== undefined) return config.nodeToken
    const id = yield* identity
    const cached = yield* readCache(id)
    if (Option.isSome(cached)) return Redacted.make(cached.value)
    return yield* mint(id)
  })

  const token = lock.withPermits(1)(
    Effect.gen(function*() {
      const known = yield* Ref.get(current)
      if (Option.isSome(known)) return known.value
      const resolved = yield* resolve
      yield* Ref.set(current, Option.some(resolved))
      return resolved
    })
  ).pipe(Effect.withSpan("TokenStore.token"))

  const remint = lock.withPermits(1)(
    Effect.gen(function*() {
      const id = yield* identity
      yield* fs.remove(tokenCachePath(config.dataDir, id.nodeId)).pipe(Effect.ignore)
      yield* Ref.set(current, Option.none())
      const minted = yield* mint(id)
      yield* Ref.set(current, Option.some(minted))
      return minted
    })
  ).pipe(Effect.withSpan("TokenStore.remint"))

  const annotate = Effect.annotateLogs({ module: "TokenStore" })
  return TokenStore.of({
    identity: identity.pipe(Effect.withSpan("TokenStore.identity"), annotate),
    token: annotate(token),
    remint: annotate(remint)
  })
})

/** Needs BrokerConfig, an HttpClient (e.g. `FetchHttpClient.layer`) and a FileSystem (`NodeFileSystem.layer`). */
export const layer: Layer.Layer<TokenStore, never, BrokerConfig | HttpClient.HttpClient | FileSystem.FileSystem> = Layer
  .effect(TokenStore, make)

/** A fixed token and identity (tests, or an operator who manages tokens elsewhere). `remint` returns the same token. */
export const layerStatic = (options: { readonly identity: NodeIdentity; readonly token: Redacted.Redacted<string> }) =>
  Layer.succeed(
    TokenStore,
    TokenStore.of({
      identity: Effect.succeed(options.identity),
      token: Effect.succeed(options.token),
      remint: Effect.succeed(options.token)
    })
  )
