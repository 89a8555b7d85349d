import type { RelayHttp } from "./relayHttp.js"
import type { Args, ToolSpec } from "./toolSpec.js"

// What a tool handler acts with: the agent's identity, the engine (with the agent's own token), the
// daemon's agent routes (same token; absent when no relay-broker daemon runs this agent), and the
// result callback of a spawn that asked for one.

export interface ResultCallback {
  readonly url: string
  readonly token: string
  readonly schema: unknown
}

export interface ToolContext {
  readonly agentName: string
  readonly engine: RelayHttp
  readonly broker: RelayHttp | undefined
  readonly result: ResultCallback | undefined
}

export interface ToolResult {
  readonly content: Array<{ readonly type: "text"; readonly text: string }>
  readonly structuredContent?: Record<string, unknown>
  readonly isError?: boolean
}

export interface Tool extends ToolSpec {
  readonly run: (context: ToolContext, args: Args) => Promise<ToolResult>
}

/** An arbitrary value as a tool result: pretty JSON text plus the same object as structured content. */
export const jsonContent = (value: unknown): ToolResult => ({
  content: [{ type: "text", text: JSON.stringify(value, null, 2) ?? "null" }],
  structuredContent: typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : { value }
})

/** A confirmation message as a tool result. */
export const textContent = (message: string): ToolResult => ({
  content: [{ type: "text", text: message }],
  structuredContent: { message }
})

export class ToolError extends Error {}

/**
 * The identity a call acts as. A spawned agent holds exactly one identity, its own: `as` may name it
 * and nothing else (upstream's message for an identity the session does not hold).
 */
export const actingAs = (context: ToolContext, as: unknown): string => {
  if (as === undefined || as === context.agentName) return context.agentName
  throw new ToolError(`Unknown agent identity "${String(as)}". Register it first.`)
}

/** The daemon's agent routes, or a clear error when this server runs without a relay-broker daemon. */
export const brokerOf = (context: ToolContext, tool: string) => {
  if (context.broker === undefined) {
    throw new ToolError(
      `${tool} is answered by the relay-broker daemon that runs this agent, and none is configured ` +
        "(AGENT_RELAY_DAEMON_URL is not set)"
    )
  }
  return context.broker
}

export const str = (args: Args, name: string): string => args[name] as string
export const optStr = (args: Args, name: string): string | undefined => args[name] as string | undefined
export const stripHash = (channel: string): string => channel.startsWith("#") ? channel.slice(1) : channel
export const segment = encodeURIComponent

export const idempotencyHeaders = (): { readonly [key: string]: string } => {
  const key = globalThis.crypto.randomUUID()
  return { "idempotency-key": key, "x-idempotency-key": key }
}
