// The embedded engine as a separate process, and the few engine HTTP calls the benchmark makes.
import { join } from "node:path"
import { bearer, requestOk, request } from "./http.mjs"
import { start } from "./procs.mjs"

/** `node <entry> engine --port 0 --data <dir>` (entry: dist/main.js); the deliver log goes to `deliverLog`. */
export const startEngine = async ({ entry, dataDir, deliverLog, logDir }) => {
  const proc = start("engine", process.execPath, [entry, "engine", "--port", "0", "--data", dataDir], {
    env: { ...process.env, RELAY_ENGINE_DELIVER_LOG: deliverLog },
    logFile: join(logDir, "engine.log")
  })
  const { match } = await proc.waitForLine(/engine listening on (https?:\/\/\S+)/, 20000)
  return { proc, url: match[1].replace(/\/$/, "") }
}

const data = (body) => (body && typeof body === "object" && "data" in body ? body.data : body)

export const engineClient = (url) => ({
  url,
  createWorkspace: async (name) => data(await requestOk("POST", `${url}/v1/workspaces`, { body: { name } })),
  registerAgent: async (workspaceKey, name, type = "agent") =>
    data(await requestOk("POST", `${url}/v1/agents`, { body: { name, type }, headers: bearer(workspaceKey) })),
  createChannel: async (agentToken, name) => {
    const response = await request("POST", `${url}/v1/channels`, { body: { name }, headers: bearer(agentToken) })
    if (response.status !== 201 && response.status !== 409) throw new Error(`create channel ${name}: ${response.status}`)
  },
  channel: async (token, name) => data(await requestOk("GET", `${url}/v1/channels/${encodeURIComponent(name)}`, { headers: bearer(token) })),
  /** Sends a DM; resolves with the message id. */
  dm: async (agentToken, to, text) => data(await requestOk("POST", `${url}/v1/dm`, { body: { to, text }, headers: bearer(agentToken) })).id,
  /** Posts to a channel; resolves with the message id. */
  post: async (agentToken, channel, text) =>
    data(await requestOk("POST", `${url}/v1/channels/${encodeURIComponent(channel)}/messages`, { body: { text }, headers: bearer(agentToken) })).id,
  /** The node's roster entry, or undefined while it does not exist. */
  node: async (workspaceKey, name) => {
    const response = await request("GET", `${url}/v1/nodes/${encodeURIComponent(name)}`, { headers: bearer(workspaceKey) })
    return response.status === 200 ? data(response.body) : undefined
  },
  agent: async (workspaceKey, name) => {
    const response = await request("GET", `${url}/v1/agents/${encodeURIComponent(name)}`, { headers: bearer(workspaceKey) })
    return response.status === 200 ? data(response.body) : undefined
  }
})
