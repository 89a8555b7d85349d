// The text an agent sees for a relay message (broker-spec §4.8). Pure.
//
// Deliberate differences from upstream:
// - a thread reply says so on the relay line (upstream drops `thread_id`);
// - a body that itself starts with "Relay message from " is still wrapped: upstream passed it
//   through unchanged, which let any sender forge the sender line.

export type Reminder = "full" | "short" | "none"

export interface InjectionInput {
  /** The sender as the engine names it (`human:` prefixes and broker identities are handled here). */
  readonly from: string
  /** `#channel`, or an agent name for a direct message. */
  readonly target: string
  readonly body: string
  /** The engine's message id (`Deliver.msg_id`). */
  readonly eventId: string
  readonly threadId?: string
  /** The workspace label: its alias when it has one, else its id. */
  readonly workspace?: string
  /** The recipient agent's name. */
  readonly agentName: string
  /** Agents spawned by this broker are registered before they start. */
  readonly preRegistered: boolean
  readonly reminder: Reminder
}

const brokerSender = /^broker-[A-Za-z0-9]+$/

/** The sender as shown: without a `human:` prefix; a broker identity is shown as `Dashboard`. */
export const displaySender = (from: string): string => {
  const bare = from.startsWith("human:") ? from.slice("human:".length) : from
  return brokerSender.test(bare) ? "Dashboard" : bare
}

/** Who a direct reply goes to: the sender without a `human:` prefix (a broker keeps its real name). */
export const replyTarget = (from: string): string => from.startsWith("human:") ? from.slice("human:".length) : from

/** Cursor's CLIs only get the one-line hint (upstream behaviour). */
export const isCursorCli = (cli: string): boolean => {
  const base = cli.split("/").pop() ?? cli
  return base === "agent" || base === "cursor-agent" || cli.includes("cursor")
}

/** The first delivery to an agent session gets the full reminder (the short hint for Cursor); later ones none. */
export const reminderFor = (cli: string, firstDelivery: boolean): Reminder =>
  !firstDelivery ? "none" : isCursorCli(cli) ? "short" : "full"

export const relayLine = (input: InjectionInput): string => {
  const sender = displaySender(input.from)
  const context = input.workspace !== undefined && input.workspace.length > 0
    ? `${input.workspace} / ${input.eventId}`
    : input.eventId
  const where = input.target.startsWith("#") ? ` in ${input.target}` : ""
  const thread = input.threadId === undefined ? "" : ` (reply in thread ${input.threadId})`
  return `Relay message from ${sender}${where}${thread} [${context}]: ${input.body}`
}

/** The channel a channel reply would go to: the target, else one named in the relay line, else `general`. */
export const channelHint = (target: string, line: string): string => {
  if (target.startsWith("#") && target.length > 1) return target.slice(1)
  const match = /\[#([^\]\s]+)\]/.exec(line) ?? / in #([^\s\]]+)/.exec(line)
  return match?.[1] ?? "general"
}

const fullReminder = (input: InjectionInput, channel: string): string => {
  const to = replyTarget(input.from)
  const registration = input.preRegistered
    ? [
      "You are pre-registered by the broker under your assigned worker name.",
      "Do not call mcp__agent-relay__register_agent unless a send/reply fails with \"Not registered\"."
    ]
    : [
      "This worker was not pre-registered by the broker.",
      `Before replying, call mcp__agent-relay__register_agent (name: "${input.agentName}", type: "agent").`
    ]
  const workspace = input.workspace !== undefined && input.workspace.length > 0
    ? [`- This message belongs to workspace "${input.workspace}"; keep replies scoped to that workspace.`]
    : []
  return [
    "<system-reminder>",
    "Agent Relay MCP tools are available for replies.",
    ...registration,
    `- For direct replies to "${to}", use mcp__agent-relay__send_dm or agent-relay.send_dm (to: "${to}").`,
    `- For channel replies, use mcp__agent-relay__post_message or agent-relay.post_message (channel: "${channel}").`,
    "- For thread replies, use mcp__agent-relay__reply_to_thread or agent-relay.reply_to_thread.",
    "- To check unread messages/reactions, use mcp__agent-relay__check_inbox or agent-relay.check_inbox.",
    `- Self-termination is not automatic. Only call remove_agent(name: "${input.agentName}") or output /exit on its own line when explicitly instructed to terminate.`,
    ...workspace,
    "</system-reminder>"
  ].join("\n")
}

const shortReminder = (input: InjectionInput, channel: string): string => {
  const to = replyTarget(input.from)
  const register = input.preRegistered
    ? ""
    : ` If unregistered, call mcp__agent-relay__register_agent(name: "${input.agentName}", type: "agent") first.`
  return `<system-reminder>Reply via Agent Relay MCP: mcp__agent-relay__send_dm/agent-relay.send_dm (to: "${to}") or mcp__agent-relay__post_message/agent-relay.post_message (channel: "${channel}").${register}</system-reminder>`
}

/** The complete text typed into the agent's terminal (before sanitising, which PtyHost does). */
export const formatInjection = (input: InjectionInput): string => {
  const line = relayLine(input)
  if (input.reminder === "none") return line
  const channel = channelHint(input.target, line)
  const reminder = input.reminder === "full" ? fullReminder(input, channel) : shortReminder(input, channel)
  return `${reminder}\n${line}`
}
