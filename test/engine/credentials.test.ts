import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { createRequire } from "node:module"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { databaseFile } from "../../src/engine/EngineStore.js"
import { connectNode, createAgent, createWorkspace, data, enrollNode, registerAgent, startEngine } from "./support.js"

// The engine keeps credentials as sha256 hashes only: read the SQLite file itself (and its WAL),
// not the API, for every secret it handed out.

/** The part of better-sqlite3 (the engine's driver) this test uses; the package ships no types. */
interface ReadonlyDatabase {
  prepare(sql: string): { all(): Array<unknown> }
  close(): void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new(
  file: string,
  options: { readonly readonly: boolean; readonly fileMustExist: boolean }
) => ReadonlyDatabase

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")

/** Every string value of every row of every table. */
const allValues = (file: string): ReadonlyArray<string> => {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as ReadonlyArray<{ name: string }>
    return tables.flatMap(({ name }) =>
      (db.prepare(`SELECT * FROM "${name}"`).all() as ReadonlyArray<Record<string, unknown>>).flatMap((row) =>
        Object.values(row).flatMap((value) => typeof value === "string" ? [value] : [])))
  } finally {
    db.close()
  }
}

describe("engine credentials at rest", () => {
  it.scopedLive("workspace keys, agent tokens (created, rotated, node-registered) and node tokens are stored as sha256 only", () =>
    Effect.gen(function*() {
      const engine = yield* startEngine()
      const ws = yield* createWorkspace(engine.url, "secrets")
      const alice = yield* createAgent(ws, "alice")
      const rotated = yield* data(ws.url, "POST", "/v1/agents/alice/rotate-token", { token: ws.key })
      const node = yield* enrollNode(ws, "box")
      const client = yield* connectNode(engine.url, node)
      const bound = yield* registerAgent(client, "bob")
      const secrets = {
        workspaceKey: ws.key,
        aliceFirstToken: alice.token,
        aliceRotatedToken: rotated.token as string,
        nodeToken: node.token,
        bobToken: bound.token
      }
      for (const [what, secret] of Object.entries(secrets)) {
        assert.isTrue(typeof secret === "string" && secret.length >= 16, `${what} was handed out`)
      }

      const file = databaseFile(engine.dataDir)
      const values = allValues(file)
      for (const [what, secret] of Object.entries(secrets)) {
        assert.isFalse(values.some((value) => value.includes(secret)), `${what} in plain text in a column`)
      }
      // The current credentials are there as hashes (the rotated-away one is gone entirely).
      for (const what of ["workspaceKey", "aliceRotatedToken", "nodeToken", "bobToken"] as const) {
        assert.include(values, sha256(secrets[what]), `${what} stored as its sha256`)
      }
      // Nor in the file's bytes: the database, its WAL and anything else in the data dir.
      for (const name of readdirSync(engine.dataDir)) {
        const bytes = readFileSync(join(engine.dataDir, name))
        for (const [what, secret] of Object.entries(secrets)) {
          assert.strictEqual(bytes.indexOf(secret), -1, `${what} in the bytes of ${name}`)
        }
      }
    }))
})
