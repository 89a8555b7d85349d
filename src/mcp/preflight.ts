import * as Effect from "effect/Effect"

// Before an agent starts, its tool server must answer `initialize` and list the tools a relay agent
// cannot do without; otherwise the spawn fails instead of starting an agent that cannot reply
// (upstream #1410: a cold `npx` outlived claude's MCP connect timeout and agents came up without tools).
// The SDK's client is loaded only here, when a spawn needs it.

export const requiredTools: ReadonlyArray<string> = ["send_dm", "post_message", "check_inbox"]

export const preflightTimeoutMs = 20_000

export type PreflightTarget =
  | { readonly _tag: "http"; readonly url: string; readonly token: string }
  | {
    readonly _tag: "stdio"
    readonly command: string
    readonly args: ReadonlyArray<string>
    readonly env: Readonly<Record<string, string>>
    readonly cwd: string
  }

export class PreflightFailed extends Error {}

const describeTarget = (target: PreflightTarget): string =>
  target._tag === "http" ? `the daemon's MCP endpoint ${target.url}` : `'${[target.command, ...target.args].join(" ")}'`

const check = async (target: PreflightTarget): Promise<void> => {
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js")
  const client = new Client({ name: "relay-broker-preflight", version: "1" })
  let stderr = ""
  if (target._tag === "http") {
    const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js")
    await client.connect(new StreamableHTTPClientTransport(new URL(target.url), {
      requestInit: { headers: { authorization: `Bearer ${target.token}`, "x-relay-preflight": "1" } }
    }))
  } else {
    const { StdioClientTransport } = await import("@modelcontextprotocol/sdk/client/stdio.js")
    const transport = new StdioClientTransport({
      command: target.command,
      args: [...target.args],
      env: { ...target.env },
      cwd: target.cwd,
      stderr: "pipe"
    })
    transport.stderr?.on("data", (chunk: Buffer) => {
      if (stderr.length < 2000) stderr += chunk.toString("utf8")
    })
    try {
      await client.connect(transport)
    } catch (error) {
      throw new PreflightFailed(`${(error as Error).message}${stderr.trim() === "" ? "" : `; stderr: ${stderr.trim()}`}`)
    }
  }
  try {
    const { tools } = await client.listTools()
    const names = new Set(tools.map((tool) => tool.name))
    const missing = requiredTools.filter((name) => !names.has(name))
    if (missing.length > 0) throw new PreflightFailed(`it does not offer ${missing.join(", ")}`)
  } finally {
    await client.close().catch(() => undefined)
  }
}

/** Succeeds when the server answered `initialize` and listed the required tools in time. */
export const preflight = (target: PreflightTarget): Effect.Effect<void, PreflightFailed> =>
  Effect.tryPromise({
    try: () => check(target),
    catch: (error) =>
      new PreflightFailed(`the agent-relay tool server (${describeTarget(target)}) failed its preflight: ${(error as Error).message}`)
  }).pipe(
    Effect.timeoutFail({
      duration: preflightTimeoutMs,
      onTimeout: () =>
        new PreflightFailed(
          `the agent-relay tool server (${describeTarget(target)}) did not answer initialize and tools/list within ${preflightTimeoutMs} ms`
        )
    })
  )
