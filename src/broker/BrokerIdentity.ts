import * as FileSystem from "@effect/platform/FileSystem"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as SynchronizedRef from "effect/SynchronizedRef"
import { createHash, randomBytes } from "node:crypto"
import { join } from "node:path"
import { writeFileAtomic } from "../lib/AtomicFile.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { EngineClient } from "./EngineClient.js"
import type { EngineHttpFailed } from "./errors.js"

// The broker's own engine identity, the sender of `POST /api/send` messages that do not come from
// one of this broker's agents. Registered once with the workspace key (`POST /v1/agents`, type
// `human`, as upstream does) and kept in `<stateDir>/broker-identity.json` (0600, atomic), scoped
// to the engine and the workspace key, so a restart reuses it.

export interface BrokerIdentityInfo {
  /** `broker-<8 hex>`; agents see it as "Dashboard". */
  readonly name: string
  readonly agentId: string
  readonly token: Redacted.Redacted<string>
}

export class BrokerIdentity extends Context.Tag("relay-broker/BrokerIdentity")<BrokerIdentity, {
  /** The identity, registering it on first use (concurrent callers share one registration). */
  readonly identity: Effect.Effect<BrokerIdentityInfo, EngineHttpFailed>
  /** Drops the cached token and gets a fresh one (after the engine refused it). */
  readonly refresh: Effect.Effect<BrokerIdentityInfo, EngineHttpFailed>
}>() {}

const Persisted = Schema.Struct({
  v: Schema.Literal(1),
  base_url: Schema.String,
  /** sha256 of the workspace key, first 16 hex chars: which workspace the token belongs to, without the key. */
  workspace_key_hash: Schema.String,
  name: Schema.String,
  agent_id: Schema.String,
  token: Schema.String
})

export const identityPath = (stateDir: string): string => join(stateDir, "broker-identity.json")

export const keyFingerprint = (key: Redacted.Redacted<string>): string =>
  createHash("sha256").update(Redacted.value(key)).digest("hex").slice(0, 16)

/** Retries of the startup registration (the embedded engine may still be starting). */
export const startupRetry = Schedule.exponential("250 millis", 2).pipe(
  Schedule.union(Schedule.spaced("10 seconds")),
  Schedule.intersect(Schedule.recurs(20))
)

export const make = Effect.gen(function*() {
  const config = yield* BrokerConfig
  const engine = yield* EngineClient
  const fs = yield* FileSystem.FileSystem
  const path = identityPath(config.stateDir)
  const fingerprint = keyFingerprint(config.workspaceKey)
  const decode = Schema.decodeUnknownOption(Schema.parseJson(Persisted))

  const load = Effect.gen(function*() {
    const text = yield* fs.readFileString(path).pipe(Effect.option)
    return Option.flatMap(text, decode).pipe(
      Option.filter((stored) => stored.base_url === config.baseUrl && stored.workspace_key_hash === fingerprint),
      Option.map((stored): BrokerIdentityInfo => ({
        name: stored.name,
        agentId: stored.agent_id,
        token: Redacted.make(stored.token)
      }))
    )
  })

  const save = (info: BrokerIdentityInfo) =>
    writeFileAtomic(path, JSON.stringify({
      v: 1,
      base_url: config.baseUrl,
      workspace_key_hash: fingerprint,
      name: info.name,
      agent_id: info.agentId,
      token: Redacted.value(info.token)
    }), { mode: 0o600 }).pipe(
      Effect.provideService(FileSystem.FileSystem, fs),
      Effect.catchAll((error) => Effect.logWarning("the broker identity is kept in memory only", error.message))
    )

  /** Registers `name`, or takes it over with a fresh token when it already exists. */
  const register = (name: string) =>
    engine.createAgent(config.workspaceKey, { name, type: "human" }).pipe(
      Effect.catchIf(
        (error) => error.status === 409 || error.code === "agent_already_exists",
        () => engine.rotateAgentToken(config.workspaceKey, name)
      ),
      Effect.map((created): BrokerIdentityInfo => ({ name: created.name, agentId: created.id, token: created.token })),
      Effect.tap(save)
    )

  const current = yield* SynchronizedRef.make<Option.Option<BrokerIdentityInfo>>(yield* load)

  const identity = SynchronizedRef.modifyEffect(current, (cached) =>
    Option.match(cached, {
      onSome: (info) => Effect.succeed([info, cached] as const),
      onNone: () =>
        Effect.map(
          register(`broker-${randomBytes(4).toString("hex")}`),
          (info) => [info, Option.some(info)] as const
        )
    })
  ).pipe(Effect.withSpan("BrokerIdentity.identity"))

  const refresh = SynchronizedRef.modifyEffect(current, (cached) => {
    const name = Option.match(cached, {
      onNone: () => `broker-${randomBytes(4).toString("hex")}`,
      onSome: (info) => info.name
    })
    return Effect.map(register(name), (info) => [info, Option.some(info)] as const)
  }).pipe(Effect.withSpan("BrokerIdentity.refresh"))

  return BrokerIdentity.of({ identity, refresh })
})

/** Registers at startup in the background (with retries); `identity` waits for it or registers itself. */
export const layer: Layer.Layer<BrokerIdentity, never, BrokerConfig | EngineClient | FileSystem.FileSystem> = Layer
  .scoped(
    BrokerIdentity,
    Effect.gen(function*() {
      const service = yield* make
      yield* service.identity.pipe(
        Effect.retry(startupRetry),
        Effect.tapError((error) => Effect.logWarning("the broker identity could not be registered yet", error.message)),
        Effect.ignore,
        Effect.annotateLogs({ service: "BrokerIdentity" }),
        Effect.forkScoped
      )
      return service
    })
  )
