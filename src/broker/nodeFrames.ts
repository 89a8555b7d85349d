import * as Option from "effect/Option"
import type { WireDecodeError } from "../wire/codec.js"

// Undecodable `deliver` frames that still name their agent and seq (dead-lettered and acked).

/**
 * A `deliver` frame that failed to decode but names its agent and seq: Deliveries can dead-letter
 * and ack it, so the engine does not redeliver it forever and the agent's cursor moves on.
 */
export interface UndecodableDelivery {
  readonly agent: string
  readonly seq: number
  readonly msgId: string | undefined
  readonly reason: string
}

/** A readable agent name and seq from an undecodable `deliver` frame's text. */
export const salvageDelivery = (text: string, error: WireDecodeError): Option.Option<UndecodableDelivery> => {
  if (error.frameType !== "deliver") return Option.none()
  try {
    const json = JSON.parse(text) as { agent?: unknown; seq?: unknown; msg_id?: unknown }
    if (typeof json.agent !== "string" || typeof json.seq !== "number" || !Number.isSafeInteger(json.seq) || json.seq < 0) {
      return Option.none()
    }
    return Option.some({
      agent: json.agent,
      seq: json.seq,
      msgId: typeof json.msg_id === "string" ? json.msg_id : undefined,
      reason: error.message
    })
  } catch {
    return Option.none()
  }
}
