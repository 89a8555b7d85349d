import * as Schema from "effect/Schema"

// The broker's typed errors. Field names avoid `name` (it would overwrite Error.name in logs);
// each overrides `message` so a log line reads as a sentence.

/** The engine refused the node token (HTTP 401 on the `/v1/node/ws` upgrade, or on a node HTTP call). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  detail: Schema.String
}) {
  override get message(): string {
    return `the engine refused the node token: ${this.detail}`
  }
}

/** No live agent has this name. */
export class UnknownWorker extends Schema.TaggedError<UnknownWorker>()("UnknownWorker", {
  agent: Schema.String
}) {
  override get message(): string {
    return `unknown worker '${this.agent}'`
  }
}

/** The agent could not be bound to this node: no process was started. */
export class BindFailed extends Schema.TaggedError<BindFailed>()("BindFailed", {
  agent: Schema.String,
  reason: Schema.Literal("Rejected", "Timeout", "Transport"),
  detail: Schema.String
}) {
  override get message(): string {
    return `could not bind agent '${this.agent}' to this node (${this.reason}): ${this.detail}`
  }
}

/** The agent's process could not be started. */
export class SpawnFailed extends Schema.TaggedError<SpawnFailed>()("SpawnFailed", {
  command: Schema.String,
  /**
   * NotFound / NotExecutable: the command; InvalidCwd: the working directory (the caller's to fix);
   * Unavailable: this installation cannot run terminals (node-pty or the emulator does not load);
   * Failed: the terminal could not be started this time (e.g. out of ptys or processes).
   */
  reason: Schema.Literal("NotFound", "NotExecutable", "InvalidCwd", "Unavailable", "Failed"),
  detail: Schema.String
}) {
  override get message(): string {
    return `cannot start '${this.command}' (${this.reason}): ${this.detail}`
  }
}

/** An agent name that breaks the naming rule: 1–64 chars of `[A-Za-z0-9._-]`. */
export class InvalidAgentName extends Schema.TaggedError<InvalidAgentName>()("InvalidAgentName", {
  agent: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid agent name ${JSON.stringify(this.agent)}: ${this.detail}`
  }
}

/** A live agent already has this name. */
export class NameTaken extends Schema.TaggedError<NameTaken>()("NameTaken", {
  agent: Schema.String
}) {
  override get message(): string {
    return `an agent named '${this.agent}' is already running`
  }
}

/** Writing into an agent's terminal failed (the process is gone or the pty is closed). */
export class InjectFailed extends Schema.TaggedError<InjectFailed>()("InjectFailed", {
  agent: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `cannot write into the terminal of '${this.agent}': ${this.detail}`
  }
}

/** Minting a node token failed. `body` is already redacted of secrets. */
export class MintFailed extends Schema.TaggedError<MintFailed>()("MintFailed", {
  status: Schema.optionalWith(Schema.Number, { exact: true }),
  reason: Schema.Literal("Rejected", "ServerError", "Transport", "InvalidResponse"),
  body: Schema.String
}) {
  override get message(): string {
    return `minting a node token failed (${this.reason}${this.status === undefined ? "" : ` ${this.status}`}): ${this.body}`
  }
}

/**
 * A node-control request (`request(frame)`) did not succeed: the engine answered with an `error`
 * frame (`Rejected`, with its code), the reply did not come in time, or the connection went away.
 */
export class NodeRequestFailed extends Schema.TaggedError<NodeRequestFailed>()("NodeRequestFailed", {
  reason: Schema.Literal("Rejected", "Timeout", "Disconnected", "InvalidReply"),
  code: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `${this.code}: ${this.detail}`
  }
}

/** A call to the engine's HTTP API failed. `body` is already redacted of secrets. */
export class EngineHttpFailed extends Schema.TaggedError<EngineHttpFailed>()("EngineHttpFailed", {
  operation: Schema.String,
  status: Schema.optionalWith(Schema.Number, { exact: true }),
  code: Schema.optionalWith(Schema.String, { exact: true }),
  detail: Schema.String
}) {
  override get message(): string {
    return `${this.operation} failed${this.status === undefined ? "" : ` (${this.status})`}: ${this.detail}`
  }
}

/** The pty's process has exited or its terminal is closed. */
export class PtyClosed extends Schema.TaggedError<PtyClosed>()("PtyClosed", {
  pid: Schema.Number
}) {
  override get message(): string {
    return `the terminal of process ${this.pid} is closed`
  }
}

/** A configuration value (environment variable or CLI flag) is missing or invalid. Never carries a secret's value. */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  /** The variable or flag, e.g. `RELAY_BASE_URL` or `--api-port`. */
  variable: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid configuration: ${this.variable}: ${this.detail}`
  }
}

/** Broker state (delivery cursors, dead letters, identity) could not be written to the state dir. */
export class PersistFailed extends Schema.TaggedError<PersistFailed>()("PersistFailed", {
  path: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `cannot write ${this.path}: ${this.detail}`
  }
}

/** The local control API could not listen on its address (port taken, address not available, …). */
export class ListenFailed extends Schema.TaggedError<ListenFailed>()("ListenFailed", {
  /** `host:port` as asked for. */
  address: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `the control API cannot listen on ${this.address}: ${this.detail}`
  }
}

/**
 * A message typed into a TUI never showed on its screen, however often it was typed again (the
 * input box was cleared each time and Enter was never pressed): the agent is not taking keys.
 */
export class InputNotEchoed extends Schema.TaggedError<InputNotEchoed>()("InputNotEchoed", {
  agent: Schema.String,
  attempts: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return `the text typed into '${this.agent}' never showed on its screen (${this.attempts} attempts): ${this.detail}`
  }
}
