// The tool server's HTTP calls: the engine's `/v1` API with the agent's own token, and the daemon's
// agent routes with the same token, over node:http (src/http/plainExchange.ts: no fetch, no Effect).
// Answers are `{ok, data}` envelopes; `data` comes back with camelCase keys and request bodies go out
// snake_case, as upstream's @relaycast/sdk does (so tool results have upstream's shapes).

import { exchange, type PlainAnswer } from "../http/plainExchange.js"

export class RelayCallError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number | undefined
  ) {
    super(message)
    this.name = "RelayCallError"
  }
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  Object.prototype.toString.call(value) === "[object Object]"

export const camelizeKeys = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(camelizeKeys)
  if (!isPlainObject(value)) return value
  const out: Record<string, unknown> = {}
  for (const [key, inner] of Object.entries(value)) out[key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = camelizeKeys(inner)
  return out
}

export const decamelizeKeys = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(decamelizeKeys)
  if (!isPlainObject(value)) return value
  const out: Record<string, unknown> = {}
  for (const [key, inner] of Object.entries(value)) out[key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = decamelizeKeys(inner)
  return out
}

export type Method = "GET" | "POST" | "PATCH" | "DELETE"

export interface CallOptions {
  readonly body?: unknown
  readonly query?: { readonly [key: string]: string | number | boolean | undefined }
  readonly headers?: { readonly [key: string]: string }
}

export interface RelayHttp {
  /** `data` of the answer, camelCased; `undefined` for 204. Fails with RelayCallError. */
  readonly call: (method: Method, path: string, options?: CallOptions) => Promise<unknown>
}

const describeFailure = (status: number, text: string): RelayCallError => {
  let code = `http_${status}`
  let message = text.trim() === "" ? `HTTP ${status}` : text.trim().slice(0, 300)
  try {
    const body = JSON.parse(text) as Record<string, unknown>
    const error = body["error"]
    if (isPlainObject(error)) {
      if (typeof error["code"] === "string") code = error["code"]
      if (typeof error["message"] === "string") message = error["message"]
    } else {
      if (typeof body["code"] === "string") code = body["code"]
      if (typeof body["message"] === "string") message = body["message"]
      else if (typeof error === "string") message = error
    }
  } catch {
    // not JSON: the text is the message
  }
  return new RelayCallError(code, message, status)
}

export const makeRelayHttp = (options: {
  readonly baseUrl: string
  readonly token: string
  readonly timeoutMs?: number
  /** Extra headers on every request (e.g. an idempotency key is per call instead). */
  readonly headers?: { readonly [key: string]: string }
}): RelayHttp => {
  const base = options.baseUrl.replace(/\/+$/, "")
  const timeoutMs = options.timeoutMs ?? 15_000
  const call = async (method: Method, path: string, callOptions: CallOptions = {}): Promise<unknown> => {
    const url = new URL(`${base}${path}`)
    for (const [key, value] of Object.entries(callOptions.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value))
    }
    const hasBody = callOptions.body !== undefined && method !== "GET"
    let answer: PlainAnswer
    try {
      answer = await exchange(url, {
        method,
        signal: AbortSignal.timeout(timeoutMs),
        headers: {
          authorization: `Bearer ${options.token}`,
          accept: "application/json",
          ...(hasBody ? { "content-type": "application/json" } : {}),
          ...options.headers,
          ...callOptions.headers
        },
        ...(hasBody ? { body: JSON.stringify(decamelizeKeys(callOptions.body)) } : {})
      })
    } catch (error) {
      const detail = (error as Error).name === "TimeoutError"
        ? `no answer within ${timeoutMs} ms`
        : (error as NodeJS.ErrnoException).code ?? (error as Error).message
      throw new RelayCallError("transport_error", `${method} ${path} at ${base}: ${detail}`, undefined)
    }
    const { status, text } = answer
    if (status === 204) return undefined
    if (status < 200 || status > 299) throw describeFailure(status, text)
    let body: unknown
    try {
      body = text.trim() === "" ? {} : JSON.parse(text)
    } catch {
      throw new RelayCallError("invalid_response", `${method} ${path}: the answer is not JSON`, status)
    }
    if (isPlainObject(body) && body["ok"] === false) throw describeFailure(status, text)
    return camelizeKeys(isPlainObject(body) && "ok" in body ? body["data"] : body)
  }
  return { call }
}
