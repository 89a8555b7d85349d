import { exchange, type PlainAnswer } from "../http/plainExchange.js"
import { brokerOf, jsonContent, segment, str, type Tool, ToolError, type ToolResult } from "./context.js"
import type { Fields } from "./toolSpec.js"
import { idempotentWrite, readOnly, writes } from "./toolSpec.js"

// The workspace, agent and fleet tools of upstream's `agent-relay mcp` 9.1.6, plus `submit_result`
// and `get_message_delivery`. Upstream answers list_agents, query_nodes, add_agent and remove_agent
// with the workspace key it hands every agent; here the agent never holds that key: the daemon that
// runs it answers them on its behalf (the routes of src/mcp/agentRoutes.ts), within what an agent may
// do. The agent's identity is fixed (strict, as upstream's RELAY_STRICT_AGENT_NAME=1).

const harnesses = ["claude", "codex", "gemini", "aider", "goose", "grok", "opencode"] as const

const notForSpawnedAgents = (tool: string) =>
  new ToolError(
    `${tool} is not available to an agent spawned by relay-broker: its identity and workspace are set by ` +
      "the node that runs it, and it never holds a workspace key"
  )

const addAgentFields: Fields = {
  name: { type: "string", description: "Worker agent name" },
  cli: {
    type: "string",
    enum: harnesses,
    description: "Which AI CLI runs the worker: \"codex agent\" → codex, \"gemini agent\" → gemini, " +
      "\"claude/opus claude/sonnet claude agent\" → claude (default)."
  },
  task: { type: "string", description: "Task instructions" },
  channel: { type: "string", optional: true, description: "Channel to join" },
  persona: { type: "string", optional: true, description: "Worker persona" },
  model: {
    type: "string",
    optional: true,
    description: "Model to pin (Claude only). Required when a tier is specified: " +
      "\"opus claude\" → claude-opus-4-8, \"sonnet claude\" → claude-sonnet-4-6, \"haiku\" → claude-haiku-4-5-20251001."
  },
  spawn_mode: {
    type: "string",
    optional: true,
    enum: ["interactive", "task_exit", "task-exit", "single_shot", "single-shot"],
    description: "Spawn lifecycle. Use task_exit to exit after the injected task completes."
  },
  exit_after_task: { type: "boolean", optional: true, description: "Exit the worker after it completes the injected task." }
}

const spawnFields: Fields = {
  name: { type: "string", description: "Agent name" },
  cli: { type: "string", enum: harnesses, description: "AI CLI to launch" },
  task: { type: "string", optional: true, description: "Initial task instructions" },
  channel: { type: "string", optional: true, description: "Channel to join" },
  channels: { type: "string[]", optional: true, description: "Channels to join" },
  model: { type: "string", optional: true, description: "Model powering the worker" },
  session_ref: { type: "string", optional: true, description: "Session reference for resumable spawns" },
  target_node: { type: "string", optional: true, description: "Optional target fleet node name" },
  as: {
    type: "string",
    optional: true,
    description: "Registered agent identity to act as when multiple identities have been registered"
  }
}

const submitResult = async (url: string, token: string, agent: string, args: Record<string, unknown>): Promise<ToolResult> => {
  const timeoutMs = Number(process.env["AGENT_RELAY_RESULT_TIMEOUT_MS"] ?? 10_000)
  let answer: PlainAnswer
  try {
    answer = await exchange(new URL(url), {
      method: "POST",
      signal: AbortSignal.timeout(timeoutMs),
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ agent, data: args["data"], final: args["final"] ?? true, metadata: args["metadata"] })
    })
  } catch (error) {
    if ((error as Error).name === "TimeoutError") throw new ToolError(`Agent Relay result submission timed out after ${timeoutMs}ms`)
    throw new ToolError(`Agent Relay result submission failed: ${(error as Error).message}`)
  }
  const { status, text } = answer
  let payload: Record<string, unknown>
  try {
    payload = text === "" ? {} : JSON.parse(text)
  } catch {
    payload = { success: false, error: text }
  }
  if (status < 200 || status > 299) {
    throw new ToolError(`Agent Relay result submission failed (${status}): ${String(payload["error"] ?? text)}`)
  }
  return { content: [{ type: "text", text: JSON.stringify(payload, null, 2) }], structuredContent: payload }
}

export const agentTools: ReadonlyArray<Tool> = [
  {
    name: "create_workspace",
    title: "Create Workspace",
    description: "Create a new Agent Relay workspace and store its workspace key in this MCP session.",
    fields: { name: { type: "string", description: "Human-readable workspace name" } },
    annotations: writes,
    run: () => Promise.reject(notForSpawnedAgents("create_workspace"))
  },
  {
    name: "set_workspace_key",
    title: "Set Workspace Key",
    description: "Join this MCP session to an existing Agent Relay workspace using a shared workspace key.",
    fields: {
      workspace_key: { type: "string", optional: true, description: "Workspace key starting with \"rk_live_\"" },
      api_key: { type: "string", optional: true, description: "Deprecated alias for workspace_key" }
    },
    annotations: { ...idempotentWrite, openWorldHint: false },
    run: () => Promise.reject(notForSpawnedAgents("set_workspace_key"))
  },
  {
    name: "register_agent",
    title: "Register Agent",
    description: "Register an agent identity in the current workspace and obtain an agent token.",
    fields: {
      name: { type: "string", description: "Unique agent name within the workspace" },
      type: { type: "string", optional: true, enum: ["agent", "human"], description: "Whether this identity is an AI agent or human" },
      persona: { type: "string", optional: true, description: "Free-text persona description" },
      metadata: { type: "object", optional: true, description: "Key-value metadata to attach to the agent" }
    },
    annotations: idempotentWrite,
    // Strict identity, as upstream with RELAY_STRICT_AGENT_NAME=1: the session's own name, already
    // registered by the node. The token is not repeated into the conversation.
    run: async (context, args) => {
      const warnings = str(args, "name").trim() === context.agentName
        ? []
        : [`Strict worker identity is enabled; ignoring requested name "${str(args, "name")}" and using "${context.agentName}".`]
      return jsonContent({ name: context.agentName, registered_name: context.agentName, warnings })
    }
  },
  {
    name: "list_agents",
    title: "List Agents",
    description: "List agents registered in the current workspace.",
    fields: { status: { type: "string", optional: true, enum: ["online", "offline"], description: "Optional status filter" } },
    annotations: readOnly,
    run: async (context, args) =>
      jsonContent(await brokerOf(context, "list_agents").call("POST", "/api/agent/list-agents", { body: { status: args["status"] } }))
  },
  {
    name: "query_nodes",
    title: "Query Fleet Nodes",
    description: "Query registered fleet nodes by capability or name.",
    fields: {
      capability: { type: "string", optional: true, description: "Optional capability name filter" },
      name: { type: "string", optional: true, description: "Optional node name filter" }
    },
    annotations: readOnly,
    run: async (context, args) =>
      jsonContent(await brokerOf(context, "query_nodes").call("POST", "/api/agent/query-nodes", { body: args }))
  },
  {
    name: "add_agent",
    title: "Add Agent",
    description: "Spawn another AI agent (relay worker) to delegate a task to. This is how you " +
      "create workers — including non-Claude ones. Use it for any \"spawn a <tool> agent\" request. " +
      "Examples: \"spawn a codex agent\" → cli:\"codex\"; " +
      "\"spawn an opus claude agent\" → cli:\"claude\", model:\"claude-opus-4-8\"; " +
      "\"spawn a sonnet claude agent\" → cli:\"claude\", model:\"claude-sonnet-4-6\". " +
      "Do NOT use the built-in Agent/Task tool for relay workers.",
    fields: addAgentFields,
    annotations: idempotentWrite,
    run: async (context, args) => jsonContent(await brokerOf(context, "add_agent").call("POST", "/api/agent/add-agent", { body: args }))
  },
  {
    name: "spawn",
    title: "Spawn Agent",
    description: "Invoke the fleet spawn action. Optionally target a specific node.",
    fields: spawnFields,
    annotations: writes,
    run: async (context, args) => {
      if (args["as"] !== undefined && args["as"] !== context.agentName) {
        throw new ToolError(`Unknown agent identity "${String(args["as"])}". Register it first.`)
      }
      const { as: _as, ...input } = args
      return jsonContent(await brokerOf(context, "spawn").call("POST", "/api/agent/spawn", { body: input }))
    }
  },
  {
    name: "remove_agent",
    title: "Remove Agent",
    description: "Release a worker agent from active duty.",
    fields: {
      name: { type: "string", description: "Agent name" },
      reason: { type: "string", optional: true, description: "Removal reason" },
      delete_agent: { type: "boolean", optional: true, description: "Permanently delete the agent" }
    },
    annotations: { ...idempotentWrite, destructiveHint: true },
    run: async (context, args) =>
      jsonContent(await brokerOf(context, "remove_agent").call("POST", "/api/agent/remove-agent", { body: args }))
  },
  {
    name: "get_message_delivery",
    title: "Get Message Delivery",
    description: "Show where a message is for each recipient: queued, offline, delivered_to_node, injected, read or failed.",
    fields: { message_id: { type: "string", description: "Message ID" } },
    annotations: readOnly,
    run: async (context, args) =>
      jsonContent(await brokerOf(context, "get_message_delivery").call("GET", `/api/agent/messages/${segment(str(args, "message_id"))}/delivery`))
  }
]

/** `submit_result`, offered only when the spawn asked for a result (AGENT_RELAY_RESULT_URL and _TOKEN). */
export const resultTool = (schema: unknown): Tool => ({
  name: "submit_result",
  title: "Submit Result",
  description: "Submit the structured result for this spawned Agent Relay task. Call this when the requested work is " +
    "complete and the result object is ready." +
    (schema === undefined ? "" : ` Expected JSON schema: ${JSON.stringify(schema).slice(0, 4000)}`),
  fields: {
    data: { type: "any", description: "The JSON result payload requested by the spawning SDK caller." },
    final: { type: "boolean", optional: true, description: "Whether this is the final result for the task. Defaults to true." },
    metadata: { type: "object", optional: true, description: "Optional diagnostic metadata about the result." }
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  run: async (context, args) => {
    if (context.result === undefined) throw new ToolError("this agent was not asked for a result")
    return submitResult(context.result.url, context.result.token, context.agentName, args)
  }
})
