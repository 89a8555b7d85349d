import { createHash, randomBytes } from "node:crypto"

// Snowflake ids as decimal strings: 41-bit ms since 2025-01-01, 10-bit worker, 12-bit sequence.
// They use the wall clock (not the Effect Clock) so ids stay unique and increasing across restarts
// even when tests drive the Effect clock by hand.
const epochMs = 1_735_689_600_000n
const worker = 1n
let lastMs = 0n
let sequence = 0n

export const snowflake = (): string => {
  let ms = BigInt(Date.now()) - epochMs
  if (ms <= lastMs) {
    ms = lastMs
    sequence = (sequence + 1n) & 0xfffn
    if (sequence === 0n) ms = lastMs + 1n
  } else {
    sequence = 0n
  }
  lastMs = ms
  return ((ms << 22n) | (worker << 12n) | sequence).toString()
}

const hex = (bytes: number): string => randomBytes(bytes).toString("hex")

/** `rk_live_` + 32 hex. */
export const newWorkspaceKey = (): string => `rk_live_${hex(16)}`
/** `at_live_` + 32 hex. */
export const newAgentToken = (): string => `at_live_${hex(16)}`
/** `nt_live_` + 48 hex. */
export const newNodeToken = (): string => `nt_live_${hex(24)}`

/** Credentials are stored and looked up only as this hash. */
export const sha256Hex = (text: string): string => createHash("sha256").update(text).digest("hex")

/** `norm` of the seq-0 delivery ids: runs of non-alphanumerics become `_`, trimmed. */
export const normKey = (text: string): string => text.replace(/[^A-Za-z0-9]+/g, "_").replace(/^_+|_+$/g, "")
