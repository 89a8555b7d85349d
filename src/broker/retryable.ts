// `retryable` is true only where the same request can succeed later (house rule). For an engine
// call: not reached (no status or 0), a timeout (408), a rate limit (429) and a server failure (5xx)
// may pass; a refusal (4xx) and 501 (not implemented) stay so.

export const engineStatusMayPass = (status: number | undefined): boolean =>
  status === undefined || status === 0 || status === 408 || status === 429 || (status >= 500 && status !== 501)
