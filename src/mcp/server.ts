import { Server } from "@modelcontextprotocol/sdk/server/index.js"
import {
  CallToolRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListToolsRequestSchema,
  McpError
} from "@modelcontextprotocol/sdk/types.js"
import type { jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js"
import { agentTools, resultTool } from "./workspaceTools.js"
import type { Tool, ToolContext, ToolResult } from "./context.js"
import { formatInbox, type Inbox } from "./inbox.js"
import { messagingTools } from "./messagingTools.js"
import { RelayCallError } from "./relayHttp.js"
import { inputSchemaOf, validateArgs } from "./toolSpec.js"

// The `agent-relay` MCP server: upstream 9.1.6's tools, the `system` prompt, and upstream's habit of
// appending the agent's pending inbox to each tool result. Transport-agnostic: the stdio entry and the
// daemon's `/mcp` connect it to their own transports.

export const serverName = "agent-relay"

export const systemPrompt = `You are an AI agent in a collaborative workspace powered by Agent Relay. You can communicate with other agents using these MCP tools:

## Getting Started
1. If no workspace is configured, call "create_workspace"
2. If someone shared an existing workspace key with you, call "set_workspace_key"
3. When a workspace key is provided at startup, this MCP server auto-registers the session as RELAY_AGENT_NAME (or "orchestrator" by default). Otherwise call "register_agent" with your agent name to join the workspace
4. Use "list_channels" to see available channels
5. Use "join_channel" to join channels of interest
6. Use "check_inbox" to see unread messages and mentions

## Communication
- Post messages to channels with "post_message"
- Send direct messages with "send_dm"
- Reply to threads with "reply_to_thread"
- React to messages with "add_reaction"

## Fleet
- Use "query_nodes" to find fleet nodes by capability or name
- Use "spawn" to invoke the fleet spawn action on an eligible node

## Best Practices
- Check your inbox regularly for new messages and mentions
- Use channels for topic-based discussions
- Use threads for detailed discussions to keep channels organized
- React with emoji to acknowledge messages
- Keep messages concise and actionable`

/**
 * The SDK validates elicitation answers with a JSON Schema validator (ajv by default, ~5 MB of a
 * stdio server's memory). This server never asks for an elicitation, so it needs none; the stdio
 * bundle leaves ajv out (scripts/build.mjs).
 */
const noElicitation: jsonSchemaValidator = {
  getValidator: () => () => ({ valid: false, data: undefined, errorMessage: "the agent-relay server asks for no elicitation" })
}

/** Tools whose results never get the pending inbox appended (upstream's SKIP_PIGGYBACK). */
const skipInbox: ReadonlySet<string> = new Set(["check_inbox", "create_workspace", "set_workspace_key", "register_agent"])

/** Every tool this server offers for `context` (submit_result only when a result was asked for). */
export const toolsFor = (context: ToolContext): ReadonlyArray<Tool> =>
  context.result === undefined ? [...agentTools, ...messagingTools] : [...agentTools, ...messagingTools, resultTool(context.result.schema)]

const errorResult = (message: string): ToolResult => ({ content: [{ type: "text", text: message }], isError: true })

const describe = (error: unknown): string => {
  if (error instanceof RelayCallError) {
    if (error.code === "agent_token_invalid") {
      return "This agent's relay token is no longer valid (agent_token_invalid); the node that runs it must re-register it."
    }
    return error.status === undefined ? error.message : `${error.message} (${error.code}, HTTP ${error.status})`
  }
  return error instanceof Error ? error.message : String(error)
}

const withInbox = async (context: ToolContext, result: ToolResult): Promise<ToolResult> => {
  try {
    const inbox = await context.engine.call("GET", "/v1/inbox") as Inbox
    const text = formatInbox(inbox, context.agentName)
    return text === "" ? result : { ...result, content: [...result.content, { type: "text", text }] }
  } catch {
    return result
  }
}

/** Runs one call: unknown tool, bad arguments and failures all come back as an `isError` result. */
export const callTool = async (context: ToolContext, tools: ReadonlyArray<Tool>, name: string, raw: unknown): Promise<ToolResult> => {
  const tool = tools.find((candidate) => candidate.name === name)
  if (tool === undefined) return errorResult(`MCP error -32602: Tool ${name} not found`)
  const checked = validateArgs(tool, raw)
  if (!checked.ok) return errorResult(`MCP error -32602: ${checked.message}`)
  let result: ToolResult
  try {
    result = await tool.run(context, checked.args)
  } catch (error) {
    return errorResult(describe(error))
  }
  return skipInbox.has(name) ? result : withInbox(context, result)
}

export interface ServerOptions {
  readonly version: string
  /** Called once the client has sent `notifications/initialized` (the harness has the tools). */
  readonly onInitialized?: (client: { readonly name: string; readonly version: string } | undefined) => void
}

export const createToolServer = (context: ToolContext, options: ServerOptions): Server => {
  const server = new Server(
    { name: serverName, version: options.version },
    { capabilities: { tools: {}, prompts: {} }, jsonSchemaValidator: noElicitation }
  )
  const tools = toolsFor(context)
  const listed = tools.map((tool) => ({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: inputSchemaOf(tool.fields),
    annotations: tool.annotations
  }))
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: listed }))
  server.setRequestHandler(CallToolRequestSchema, (request) =>
    callTool(context, tools, request.params.name, request.params.arguments) as Promise<ToolResult & { [key: string]: unknown }>)
  server.setRequestHandler(ListPromptsRequestSchema, () => ({
    prompts: [{ name: "system", title: "System Prompt", description: "Get the default system instructions for Agent Relay collaboration." }]
  }))
  server.setRequestHandler(GetPromptRequestSchema, (request) => {
    if (request.params.name !== "system") throw new McpError(ErrorCode.InvalidParams, `Prompt ${request.params.name} not found`)
    return { messages: [{ role: "user" as const, content: { type: "text" as const, text: systemPrompt } }] }
  })
  if (options.onInitialized !== undefined) {
    const onInitialized = options.onInitialized
    server.oninitialized = () => onInitialized(server.getClientVersion())
  }
  return server
}
