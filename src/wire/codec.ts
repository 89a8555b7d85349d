import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import {
  ActionInvoke,
  ActionResult,
  AgentDeregister,
  AgentRegister,
  ContextUpdate,
  Deliver,
  DeliveryAck,
  ErrorFrame,
  InventorySync,
  NodeDeregister,
  NodeHeartbeat,
  NodeRegister,
  NodeSpawn,
  type NodeToServer,
  Ping,
  Reply,
  type ServerToNode
} from "./frames.js"

/** A frame that could not be decoded: bad JSON, wrong `v`, unknown `type`, or a field that breaks the contract. */
export class WireDecodeError extends Schema.TaggedError<WireDecodeError>()("WireDecodeError", {
  /** The frame's `type`, when it was readable. */
  frameType: Schema.optionalWith(Schema.String, { exact: true }),
  /** `unknown_type` marks a well-formed frame this version does not know; callers log and skip it. */
  kind: Schema.Literal("invalid_json", "not_an_object", "unknown_type", "invalid_frame"),
  reason: Schema.String
}) {
  override get message(): string {
    return `undecodable ${this.frameType ?? "frame"} (${this.kind}): ${this.reason}`
  }
}

/** An outbound frame that breaks the contract: a bug in the caller, reported as a typed error. */
export class WireEncodeError extends Schema.TaggedError<WireEncodeError>()("WireEncodeError", {
  frameType: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot encode ${this.frameType}: ${this.reason}`
  }
}

// Decoding and encoding go through the one member schema named by `type`, so a failure reports that
// frame's problem rather than every union member's.
const nodeFrameSchemas: { readonly [T in NodeToServer["type"]]: Schema.Schema<NodeToServer, unknown> } = {
  "node.register": NodeRegister as Schema.Schema<NodeToServer, unknown>,
  "node.heartbeat": NodeHeartbeat as Schema.Schema<NodeToServer, unknown>,
  "node.deregister": NodeDeregister as Schema.Schema<NodeToServer, unknown>,
  "node.spawn": NodeSpawn as Schema.Schema<NodeToServer, unknown>,
  "agent.register": AgentRegister as Schema.Schema<NodeToServer, unknown>,
  "agent.deregister": AgentDeregister as Schema.Schema<NodeToServer, unknown>,
  "delivery.ack": DeliveryAck as Schema.Schema<NodeToServer, unknown>,
  "action.result": ActionResult as Schema.Schema<NodeToServer, unknown>,
  "inventory.sync": InventorySync as Schema.Schema<NodeToServer, unknown>
}

const serverFrameSchemas: { readonly [T in ServerToNode["type"]]: Schema.Schema<ServerToNode, unknown> } = {
  "deliver": Deliver as Schema.Schema<ServerToNode, unknown>,
  "action.invoke": ActionInvoke as Schema.Schema<ServerToNode, unknown>,
  "context.update": ContextUpdate as Schema.Schema<ServerToNode, unknown>,
  "ping": Ping as Schema.Schema<ServerToNode, unknown>,
  "reply": Reply as Schema.Schema<ServerToNode, unknown>,
  "error": ErrorFrame as Schema.Schema<ServerToNode, unknown>
}

const maxReasonLength = 300

const shorten = (text: string): string => {
  const flat = text.replace(/\s+/g, " ")
  return flat.length > maxReasonLength ? `${flat.slice(0, maxReasonLength)}…` : flat
}

const describeCause = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** Same limit as serde_json's default recursion limit, which the upstream broker decodes with. */
const maxNesting = 128

/** Iterative, so it cannot overflow the stack the way recursive decoding of such a frame would. */
const nestingDepth = (root: unknown, limit: number): number => {
  let deepest = 0
  const stack: Array<readonly [unknown, number]> = [[root, 1]]
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!
    if (typeof value !== "object" || value === null) continue
    deepest = Math.max(deepest, depth)
    if (deepest > limit) return deepest
    for (const item of Array.isArray(value) ? value : Object.values(value)) stack.push([item, depth + 1])
  }
  return deepest
}

const decodeText = <A>(
  text: string,
  schemas: { readonly [type: string]: Schema.Schema<A, unknown> },
  onExcessProperty: "ignore" | "error"
): Either.Either<A, WireDecodeError> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (cause) {
    return Either.left(new WireDecodeError({ kind: "invalid_json", reason: shorten(describeCause(cause)) }))
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return Either.left(new WireDecodeError({ kind: "not_an_object", reason: "a frame must be a JSON object" }))
  }
  const type = (json as { readonly type?: unknown }).type
  const frameType = typeof type === "string" ? { frameType: type } : {}
  const schema = typeof type === "string" && Object.hasOwn(schemas, type) ? schemas[type] : undefined
  if (schema === undefined) {
    return Either.left(
      new WireDecodeError({ ...frameType, kind: "unknown_type", reason: shorten(`unknown frame type ${JSON.stringify(type) ?? "(missing)"}`) })
    )
  }
  if (nestingDepth(json, maxNesting) > maxNesting) {
    return Either.left(new WireDecodeError({ ...frameType, kind: "invalid_frame", reason: `nested deeper than ${maxNesting} levels` }))
  }
  return Schema.decodeUnknownEither(schema, { onExcessProperty })(json).pipe(
    Either.mapLeft((error) =>
      new WireDecodeError({ ...frameType, kind: "invalid_frame", reason: shorten(ParseResult.TreeFormatter.formatErrorSync(error)) })
    )
  )
}

const encodeFrame = <A extends { readonly type: string }>(
  frame: A,
  schemas: { readonly [type: string]: Schema.Schema<A, unknown> }
): Either.Either<string, WireEncodeError> => {
  const frameType = String((frame as { readonly type?: unknown } | null)?.type)
  const schema = Object.hasOwn(schemas, frameType) ? schemas[frameType] : undefined
  if (schema === undefined) return Either.left(new WireEncodeError({ frameType, reason: "unknown frame type" }))
  return Schema.encodeEither(schema, { onExcessProperty: "error" })(frame).pipe(
    Either.mapLeft((error) => new WireEncodeError({ frameType, reason: shorten(ParseResult.TreeFormatter.formatErrorSync(error)) })),
    Either.flatMap((encoded) =>
      // A value too deep for JSON.stringify is the caller's bug too, not a defect.
      Either.try({
        try: () => JSON.stringify(encoded),
        catch: (cause) => new WireEncodeError({ frameType, reason: shorten(describeCause(cause)) })
      })
    )
  )
}

/**
 * Decode a server → node frame. Unknown properties are tolerated (and dropped), so a newer engine's
 * extra field never drops a frame; an unknown `type` is a `WireDecodeError` of kind `unknown_type`.
 */
export const decodeServerFrame = (text: string): Effect.Effect<ServerToNode, WireDecodeError> =>
  decodeText(text, serverFrameSchemas, "ignore")

/** Decode a node → server frame strictly, as the engine does: an unknown property is an error. */
export const decodeNodeFrame = (text: string): Effect.Effect<NodeToServer, WireDecodeError> =>
  decodeText(text, nodeFrameSchemas, "error")

/** Encode a node → server frame to its JSON text. Unknown properties are an error. */
export const encodeNodeFrame = (frame: NodeToServer): Effect.Effect<string, WireEncodeError> =>
  encodeFrame(frame, nodeFrameSchemas)

/** Encode a server → node frame to its JSON text, with exactly the documented fields. */
export const encodeServerFrame = (frame: ServerToNode): Effect.Effect<string, WireEncodeError> =>
  encodeFrame(frame, serverFrameSchemas)
