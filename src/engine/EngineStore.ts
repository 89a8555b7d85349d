import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { EngineConfig } from "./EngineConfig.js"
import { EngineStartError } from "./EngineError.js"
import { migrations } from "./schema.js"

/**
 * The engine's SQLite database plus the one lock every engine operation runs under. Each HTTP
 * request, node frame, socket close and sweep takes the lock once (it is not reentrant), so its
 * reads, writes and the `deliver` frames it writes happen as one step: per-agent `seq` order on the
 * wire always matches commit order.
 */
export class EngineStore extends Context.Tag("relay-broker/engine/EngineStore")<EngineStore, {
  readonly sql: SqlClient.SqlClient
  /** Runs `effect` holding the engine lock. */
  readonly exclusive: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Runs `effect` in one SQLite transaction. */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) => Effect.Effect<A, E | SqlError, R>
}>() {}

export const databaseFile = (dataDir: string): string => join(dataDir, "engine.sqlite")

export const now: Effect.Effect<number> = Clock.currentTimeMillis

const migrate = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const rows = yield* sql.unsafe<{ user_version: number }>("PRAGMA user_version")
    const done = rows[0]?.user_version ?? 0
    for (let index = done; index < migrations.length; index++) {
      yield* sql.withTransaction(Effect.gen(function*() {
        for (const statement of migrations[index]!) yield* sql.unsafe(statement)
        yield* sql.unsafe(`PRAGMA user_version = ${index + 1}`)
      }))
    }
  })

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // WAL + NORMAL: a commit survives a process crash (the restart tests), not a power cut.
  yield* sql.unsafe("PRAGMA synchronous = NORMAL")
  yield* sql.unsafe("PRAGMA busy_timeout = 5000")
  yield* migrate(sql)
  const lock = yield* Effect.makeSemaphore(1)
  return EngineStore.of({
    sql,
    exclusive: (effect) => lock.withPermits(1)(effect),
    transaction: (effect) => sql.withTransaction(effect)
  })
})

/** Opens (or creates) `<dataDir>/engine.sqlite` and runs the migrations; closing the scope closes the file. */
export const layer: Layer.Layer<EngineStore, EngineStartError, EngineConfig> = Layer.unwrapEffect(
  Effect.gen(function*() {
    const config = yield* EngineConfig
    yield* Effect.try({
      try: () => mkdirSync(config.dataDir, { recursive: true }),
      catch: (cause) => new EngineStartError({ reason: "DataDir", detail: `cannot create ${config.dataDir}`, cause })
    })
    const filename = databaseFile(config.dataDir)
    return Layer.effect(EngineStore, make).pipe(
      Layer.provide(SqliteClient.layer({ filename })),
      Layer.catchAllCause((cause) =>
        Layer.fail(new EngineStartError({ reason: "Database", detail: `cannot open ${filename}: ${Cause.pretty(cause).split("\n")[0]}`, cause: Cause.squash(cause) }))
      )
    )
  })
)
