// A small JSON-over-HTTP client with keep-alive (loopback only), cheaper per request than fetch.
import http from "node:http"

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })

export class HttpError extends Error {
  constructor(method, url, status, body) {
    super(`${method} ${new URL(url).pathname} → ${status}: ${typeof body === "string" ? body.slice(0, 300) : JSON.stringify(body).slice(0, 300)}`)
    this.status = status
    this.body = body
  }
}

/** `{status, body}` for any status; body is parsed JSON when it parses, else text. */
export const request = (method, url, { body, headers = {}, timeoutMs = 10000 } = {}) =>
  new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: {
          accept: "application/json",
          ...(payload === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }),
          ...headers
        },
        timeout: timeoutMs
      },
      (res) => {
        const chunks = []
        res.on("data", (chunk) => chunks.push(chunk))
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          let parsed = text
          try {
            parsed = text.length > 0 ? JSON.parse(text) : undefined
          } catch {
            // Not JSON: keep the text.
          }
          resolve({ status: res.statusCode ?? 0, body: parsed })
        })
        res.on("error", reject)
      }
    )
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: timed out after ${timeoutMs} ms`)))
    req.on("error", reject)
    if (payload !== undefined) req.write(payload)
    req.end()
  })

/** Like `request`, but a non-2xx status is an HttpError. */
export const requestOk = async (method, url, options) => {
  const response = await request(method, url, options)
  if (response.status < 200 || response.status >= 300) throw new HttpError(method, url, response.status, response.body)
  return response.body
}

export const bearer = (token) => ({ authorization: `Bearer ${token}` })

export const closeHttp = () => agent.destroy()
