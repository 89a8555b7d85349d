import { assert, describe, it } from "@effect/vitest"
import { failure } from "../../src/broker/http/responses.js"

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
