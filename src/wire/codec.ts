import { Effect, Either, ParseResult, Schema } from "effect"
import {
  NodeToServer,
  nodeFrameTypes,
  ServerToNode,
  serverFrameTypes
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

const maxReasonLength = 300

const shortReason = (error: ParseResult.ParseError): string => {
  const text = ParseResult.TreeFormatter.formatErrorSync(error).replace(/\s+/g, " ")
  return text.length > maxReasonLength ? `${text.slice(0, maxReasonLength)}…` : text
}

const parseJson = (text: string): Either.Either<unknown, WireDecodeError> =>
  Either.try({
    try: () => JSON.parse(text) as unknown,
    catch: (cause) =>
      new WireDecodeError({ kind: "invalid_json", reason: cause instanceof Error ? cause.message : String(cause) })
  })

const makeDecoder = <A, I>(
  schema: Schema.Schema<A, I>,
  knownTypes: ReadonlyArray<string>,
  onExcessProperty: "ignore" | "error"
) => {
  const decode = Schema.decodeUnknownEither(schema, { onExcessProperty })
  return (text: string): Effect.Effect<A, WireDecodeError> =>
    Effect.flatMap(parseJson(text), (json) => {
      if (typeof json !== "object" || json === null || Array.isArray(json)) {
        return Effect.fail(new WireDecodeError({ kind: "not_an_object", reason: "a frame must be a JSON object" }))
      }
      const type = (json as { readonly type?: unknown }).type
      const frameType = typeof type === "string" ? { frameType: type } : {}
      if (typeof type !== "string" || !knownTypes.includes(type)) {
        return Effect.fail(new WireDecodeError({ ...frameType, kind: "unknown_type", reason: `unknown frame type ${JSON.stringify(type)}` }))
      }
      return Either.match(decode(json), {
        onLeft: (error) => Effect.fail(new WireDecodeError({ ...frameType, kind: "invalid_frame", reason: shortReason(error) })),
        onRight: Effect.succeed
      })
    })
}

const makeEncoder = <A, I>(schema: Schema.Schema<A, I>) => {
  const encode = Schema.encodeEither(schema, { onExcessProperty: "error" })
  return (frame: A & { readonly type: string }): Effect.Effect<string, WireEncodeError> =>
    Either.match(encode(frame), {
      onLeft: (error) => Effect.fail(new WireEncodeError({ frameType: frame.type, reason: shortReason(error) })),
      onRight: (encoded) => Effect.succeed(JSON.stringify(encoded))
    })
}

/** Decode a server → node frame. Unknown properties are tolerated; an unknown `type` is a `WireDecodeError` of kind `unknown_type`. */
export const decodeServerFrame = makeDecoder(ServerToNode, serverFrameTypes, "ignore")

/** Decode a node → server frame, strictly (what the engine accepts). */
export const decodeNodeFrame = makeDecoder(NodeToServer, nodeFrameTypes, "error")

/** Encode a node → server frame to its JSON text. Unknown properties are an error. */
export const encodeNodeFrame = makeEncoder(NodeToServer)

/** Encode a server → node frame to its JSON text, with exactly the documented fields. */
export const encodeServerFrame = makeEncoder(ServerToNode)
