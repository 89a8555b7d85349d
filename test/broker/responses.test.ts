import { assert, describe, it } from "@effect/vitest"
import { spawnFailure } from "../../src/broker/http/agentRoutes.js"
import { failure } from "../../src/broker/http/responses.js"
import { SpawnFailed } from "../../src/broker/errors.js"

// `retryable` is true only where the same request can succeed later.

const bodyOf = (status: number, extra?: Record<string, unknown>) => {
  const response = failure(status, "code", "message", extra)
  const body = response.body
  if (body._tag !== "Uint8Array") throw new Error(`unexpected body ${body._tag}`)
  return JSON.parse(new TextDecoder().decode(body.body)) as Record<string, unknown>
}

describe("control API error bodies", () => {
  it("4xx and 501 are not retryable; other 5xx are; a caller's own word wins", () => {
    assert.strictEqual(bodyOf(400)["retryable"], false)
    assert.strictEqual(bodyOf(413)["retryable"], false)
    assert.strictEqual(bodyOf(501)["retryable"], false)
    assert.strictEqual(bodyOf(502)["retryable"], true)
    assert.strictEqual(bodyOf(503)["retryable"], true)
    assert.strictEqual(bodyOf(503, { retryable: false })["retryable"], false)
    assert.strictEqual(bodyOf(502, { retryable: false })["retryable"], false)
  })
})

describe("spawn failures", () => {
  const table = [
    { reason: "NotFound", status: 400, code: "cli_not_found", retryable: false },
    { reason: "NotExecutable", status: 400, code: "cli_not_executable", retryable: false },
    { reason: "InvalidCwd", status: 400, code: "invalid_cwd", retryable: false },
    // node-pty or the emulator cannot be loaded here: the same spawn fails the same way until it is fixed.
    { reason: "Unavailable", status: 500, code: "spawn_failed", retryable: false },
    // The terminal could not start this time (out of ptys or processes): it may start later.
    { reason: "Failed", status: 500, code: "spawn_failed", retryable: true }
  ] as const
  for (const row of table) {
    it(`${row.reason}: ${row.status} ${row.code}, retryable ${row.retryable}`, () => {
      const response = spawnFailure(new SpawnFailed({ command: "x", reason: row.reason, detail: "d" }), { name: "w", cli: "x" })
      const body = response.body
      if (body._tag !== "Uint8Array") throw new Error(`unexpected body ${body._tag}`)
      const parsed = JSON.parse(new TextDecoder().decode(body.body))
      assert.deepStrictEqual([response.status, parsed.code, parsed.retryable], [row.status, row.code, row.retryable])
    })
  }
})
