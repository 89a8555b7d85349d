import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { createServer, type IncomingMessage, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { makeRelayHttp, RelayCallError } from "../../src/mcp/relayHttp.js"

// The tool server's HTTP client (node:http, no fetch) against a real local server: envelopes
// unwrapped and camelCased, bodies snake_cased, and every failure a RelayCallError with a code.

let server: Server
let base = ""
const seen: Array<{ method: string; url: string; auth: string | undefined; body: string }> = []

const readBody = (request: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let text = ""
    request.on("data", (chunk) => (text += chunk))
    request.on("end", () => resolve(text))
  })

beforeAll(async () => {
  server = createServer(async (request, response) => {
    seen.push({ method: request.method!, url: request.url!, auth: request.headers.authorization, body: await readBody(request) })
    const reply = (status: number, text: string) => response.writeHead(status, { "content-type": "application/json" }).end(text)
    if (request.url!.startsWith("/ok")) return reply(200, JSON.stringify({ ok: true, data: { message_id: "m1", read_by: [{ agent_name: "a" }] } }))
    if (request.url === "/gone") return reply(404, JSON.stringify({ ok: false, error: { code: "agent_not_found", message: "Agent \"x\" not found" } }))
    if (request.url === "/refused") return reply(200, JSON.stringify({ ok: false, error: { code: "forbidden", message: "no" } }))
    if (request.url === "/html") return reply(200, "<html>")
    if (request.url === "/empty") return response.writeHead(204).end()
    // /slow: never answers
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(() => {
  server.closeAllConnections()
  server.close()
})

const failure = async (promise: Promise<unknown>): Promise<RelayCallError> => {
  try {
    await promise
  } catch (error) {
    assert.instanceOf(error, RelayCallError)
    return error as RelayCallError
  }
  throw new Error("expected a RelayCallError")
}

describe("relayHttp (node:http)", () => {
  it("unwraps the envelope, camelCases the answer, snake_cases the body, sends the token and the query", async () => {
    const relay = makeRelayHttp({ baseUrl: `${base}/`, token: "at_live_x" })
    const data = await relay.call("POST", "/ok", { body: { replyTo: "m0", textBody: "hi" }, query: { limit: 5, skip: undefined } })
    assert.deepStrictEqual(data, { messageId: "m1", readBy: [{ agentName: "a" }] })
    const last = seen.at(-1)!
    assert.strictEqual(last.url, "/ok?limit=5")
    assert.strictEqual(last.auth, "Bearer at_live_x")
    assert.deepStrictEqual(JSON.parse(last.body), { reply_to: "m0", text_body: "hi" })
    assert.strictEqual(await relay.call("DELETE", "/empty"), undefined)
  })

  it("every failure is a RelayCallError: the engine's code, a refused envelope, not JSON, no server, no answer in time", async () => {
    const relay = makeRelayHttp({ baseUrl: base, token: "t", timeoutMs: 300 })
    const gone = await failure(relay.call("GET", "/gone"))
    assert.deepStrictEqual([gone.code, gone.message, gone.status], ["agent_not_found", "Agent \"x\" not found", 404])
    assert.strictEqual((await failure(relay.call("GET", "/refused"))).code, "forbidden")
    assert.strictEqual((await failure(relay.call("GET", "/html"))).code, "invalid_response")
    const slow = await failure(relay.call("GET", "/slow"))
    assert.strictEqual(slow.code, "transport_error")
    assert.include(slow.message, "no answer within 300 ms")
    const closed = makeRelayHttp({ baseUrl: "http://127.0.0.1:9", token: "t" })
    const refused = await failure(closed.call("GET", "/v1/inbox"))
    assert.strictEqual(refused.code, "transport_error")
    assert.include(refused.message, "ECONNREFUSED")
  })
})
