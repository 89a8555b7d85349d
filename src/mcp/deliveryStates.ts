// What a send can truthfully say about each recipient, from the engine's delivery row of the message
// and what the daemon itself did with it. Shared by the daemon (which knows what it typed into its
// own terminals) and the tool server (which, without a daemon, has the engine rows alone).

/** One engine delivery row as `GET /v1/messages/:id/deliveries` gives it (camelCased). */
export interface EngineDelivery {
  readonly agentName: string | null
  readonly agentStatus: string | null
  readonly status: string
  readonly locationType: string | null
  readonly nodeName: string | null
  readonly deliveredAt: string | null
  readonly ackedAt: string | null
  readonly readAt: string | null
  readonly error: string | null
}

/** What this daemon recorded for a recipient that is one of its agents. */
export interface LocalRecord {
  readonly queuedAt?: number
  readonly injectedAt?: number
  readonly failed?: string
}

/**
 * At send time: `injected` (typed into a live terminal: by this daemon, or acked by the node that
 * hosts the recipient, since an ack follows injection), `queued` (the engine holds it for a recipient
 * on a node that has not injected it yet), `offline` (no live node hosts the recipient; the engine keeps
 * it until one does), `failed` (dead-lettered).
 */
export type SendState = "injected" | "queued" | "offline" | "failed"

/** Later, for `relay-broker message <id>`: the furthest point each recipient's copy reached. */
export type DeliveryState = "queued" | "offline" | "delivered_to_node" | "injected" | "read" | "failed"

const isOffline = (row: EngineDelivery): boolean => row.agentStatus === "offline" || row.locationType !== "via_node"

export const sendStateOf = (row: EngineDelivery, local: LocalRecord | undefined): SendState => {
  if (local?.injectedAt !== undefined || row.status === "acked") return "injected"
  if (local?.failed !== undefined || row.status === "dead_lettered" || row.status === "failed" || row.status === "expired") {
    return "failed"
  }
  return isOffline(row) && row.status === "queued" ? "offline" : "queued"
}

export const deliveryStateOf = (row: EngineDelivery, local: LocalRecord | undefined): DeliveryState => {
  if (row.readAt !== null) return "read"
  const sent = sendStateOf(row, local)
  if (sent === "injected" || sent === "failed" || sent === "offline") return sent
  return row.status === "delivered" ? "delivered_to_node" : "queued"
}
