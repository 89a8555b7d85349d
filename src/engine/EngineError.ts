import * as Schema from "effect/Schema"

/**
 * A refusal the engine reports to a client: an HTTP error envelope (`status`) or a node-control
 * `error` frame (only `code` and `message` go on the wire).
 */
export class EngineError extends Schema.TaggedError<EngineError>()("EngineError", {
  status: Schema.Number,
  code: Schema.String,
  message: Schema.String
}) {}

export const fail = (status: number, code: string, message: string) => new EngineError({ status, code, message })

export const badRequest = (message: string, code = "invalid_request") => fail(400, code, message)
export const notFound = (code: string, message: string) => fail(404, code, message)
export const conflict = (code: string, message: string) => fail(409, code, message)
export const unauthorized = (message: string, code = "unauthorized") => fail(401, code, message)
export const forbidden = (code: string, message: string) => fail(403, code, message)

/** The engine could not start: the data dir, the database, or the listening socket. */
export class EngineStartError extends Schema.TaggedError<EngineStartError>()("EngineStartError", {
  reason: Schema.Literal("DataDir", "Database", "Listen"),
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `the engine could not start (${this.reason}): ${this.detail}`
  }
}
