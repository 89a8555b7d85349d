import type { Deliver } from "../wire/index.js"

/** A `deliver` frame without its payload; the payload travels as the JSON text stored with the message. */
export type DeliverEnvelope = Omit<Deliver, "payload">

/**
 * The JSON text of a `deliver` frame, byte for byte what `encodeServerFrame` produces for it (same
 * keys, same order; a property test pins this), but without re-validating and re-serialising the
 * payload for every recipient: the hot path of live delivery and replay. The payload text is
 * spliced as stored, so a replay is the live frame's bytes by construction.
 */
export const deliverText = (frame: DeliverEnvelope, payloadText: string): string => {
  const envelope = JSON.stringify({
    v: 1,
    type: "deliver",
    agent: frame.agent,
    agent_id: frame.agent_id,
    delivery_id: frame.delivery_id,
    msg_id: frame.msg_id,
    seq: frame.seq,
    mode: frame.mode
  })
  return `${envelope.slice(0, -1)},"payload":${payloadText}}`
}
