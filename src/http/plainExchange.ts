// One HTTP request over node:http(s), to its status and body text. The CLI client commands and the
// agent tool server use it instead of Node's fetch, which loads a second HTTP stack with a
// WebAssembly parser (about 40 MB and 150 ms in a process that makes a handful of requests).
// node:http(s) load on the first request, so a process that makes none (a tool server that was only
// initialised, a command that fails before calling) does not pay for them.

export interface PlainRequest {
  readonly method: string
  readonly headers?: { readonly [key: string]: string }
  /** Sent as is; give `content-type` in `headers`. */
  readonly body?: string
  readonly signal?: AbortSignal
}

export interface PlainAnswer {
  readonly status: number
  readonly text: string
}

/** Rejects with the transport error (`code` ECONNREFUSED, …), or the signal's reason once it aborts. */
export const exchange = async (url: URL, request: PlainRequest): Promise<PlainAnswer> => {
  const transport = url.protocol === "https:" ? await import("node:https") : await import("node:http")
  return new Promise<PlainAnswer>((resolveAnswer, reject) => {
    const fail = (error: unknown) => reject(request.signal?.aborted === true ? request.signal.reason : error)
    const outgoing = transport.request(url, {
      method: request.method,
      ...(request.signal === undefined ? {} : { signal: request.signal }),
      // One request per connection: a kept-alive socket would hold a short-lived process open.
      agent: false,
      headers: {
        ...request.headers,
        ...(request.body === undefined ? {} : { "content-length": String(Buffer.byteLength(request.body)) })
      }
    }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () => resolveAnswer({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }))
      response.on("error", fail)
    })
    outgoing.on("error", fail)
    outgoing.end(request.body)
  })
}
