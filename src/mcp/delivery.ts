import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { AgentRegistry } from "../broker/AgentRegistry.js"
import { BrokerConfig } from "../broker/BrokerConfig.js"
import {
  type DeliveryState,
  deliveryStateOf,
  type EngineDelivery,
  type LocalRecord,
  type SendState,
  sendStateOf
} from "./deliveryStates.js"
import { MessageRecords } from "./MessageRecords.js"
import { makeRelayHttp, RelayCallError } from "./relayHttp.js"

// A message's delivery per recipient, from the engine's delivery rows (GET /v1/messages/:id/deliveries,
// with the workspace key) and what this daemon did (MessageRecords). Used by the send results, the
// `get_message_delivery` tool and `relay-broker message <id>`.

export interface RecipientReport {
  readonly name: string | null
  readonly state: SendState | DeliveryState
  readonly engine_status: string
  readonly node: string | null
  readonly local: boolean
  readonly injected_at: string | null
  readonly delivered_at: string | null
  readonly read_at: string | null
  readonly error: string | null
}

export class DeliveryUnknown extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
  }
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString())

const engineRows = (messageId: string) =>
  Effect.gen(function*() {
    const config = yield* BrokerConfig
    const engine = makeRelayHttp({ baseUrl: config.baseUrl, token: Redacted.value(config.workspaceKey) })
    return yield* Effect.tryPromise({
      try: () => engine.call("GET", `/v1/messages/${encodeURIComponent(messageId)}/deliveries`) as Promise<ReadonlyArray<EngineDelivery>>,
      catch: (error) =>
        error instanceof RelayCallError && error.code === "message_not_found"
          ? new DeliveryUnknown(404, `no message ${messageId} in this workspace`)
          : error instanceof RelayCallError && error.status === 404
          ? new DeliveryUnknown(501, "the engine does not report delivery rows (GET /v1/messages/:id/deliveries)")
          : new DeliveryUnknown(502, `the engine: ${(error as Error).message}`)
    })
  })

/**
 * Per recipient. `waitMs` > 0 waits that long at most for this daemon to inject the message into its
 * own running recipients (what a send reports "at once"); `detail` picks the later, finer states.
 */
export const deliveryReport = (messageId: string, options: { readonly waitMs: number; readonly detail: boolean }) =>
  Effect.gen(function*() {
    const records = yield* MessageRecords
    const registry = yield* AgentRegistry
    const rows = yield* engineRows(messageId)
    const local = new Set((yield* registry.list).filter((agent) => agent.status === "running").map((agent) => agent.name))
    const waiting = rows.flatMap((row) => row.agentName !== null && local.has(row.agentName) && row.status !== "acked" ? [row.agentName] : [])
    const seen = waiting.length > 0 && options.waitMs > 0
      ? yield* records.awaitOutcome(messageId, waiting, options.waitMs)
      : yield* records.lookup(messageId)
    const recipients = rows.map((row): RecipientReport => {
      const record: LocalRecord | undefined = row.agentName === null ? undefined : seen.get(row.agentName)
      return {
        name: row.agentName,
        state: options.detail ? deliveryStateOf(row, record) : sendStateOf(row, record),
        engine_status: row.status,
        node: row.nodeName,
        local: row.agentName !== null && local.has(row.agentName),
        injected_at: iso(record?.injectedAt),
        delivered_at: row.deliveredAt,
        read_at: row.readAt,
        error: record?.failed ?? row.error
      }
    })
    return { message_id: messageId, recipients }
  })

/**
 * What a send reports at once, per recipient (`injected` / `queued` / `offline` / `failed`), waiting
 * up to `waitMs` for this daemon's own recipients; `{recipients: null, error}` when it cannot be known
 * (a composition without MessageRecords, or an engine without delivery rows).
 */
export const sendDelivery = (messageId: string, waitMs: number) =>
  Effect.gen(function*() {
    const records = yield* Effect.serviceOption(MessageRecords)
    const config = yield* Effect.serviceOption(BrokerConfig)
    if (records._tag === "None" || config._tag === "None") {
      return { recipients: null, error: "delivery records are not kept by this broker" }
    }
    return yield* deliveryReport(messageId, { waitMs, detail: false }).pipe(
      Effect.provideService(MessageRecords, records.value),
      Effect.provideService(BrokerConfig, config.value),
      Effect.map((report) => ({ recipients: report.recipients.map((r) => ({ name: r.name, state: r.state, node: r.node })) })),
      Effect.catchAll((error) => Effect.succeed({ recipients: null, error: error.message }))
    )
  })
