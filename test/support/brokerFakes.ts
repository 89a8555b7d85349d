import { Effect, Ref } from "effect"
import type { AgentInfo, LiveAgent, SpawnSpec } from "../../src/broker/AgentRegistry.js"
import { UnknownWorker } from "../../src/broker/errors.js"
import type { NodeStatus } from "../../src/broker/NodeControl.js"

// Pieces of the fake broker services that several broker tests build.

/** The registry's view of an agent just spawned from `spec`. */
export const runningAgentInfo = (spec: SpawnSpec, pid: number): AgentInfo => ({
  name: spec.name,
  agentId: `agent_${spec.name}`,
  cli: spec.cli,
  args: spec.args ?? [],
  cwd: spec.cwd ?? "/",
  pid,
  status: "running",
  startedAt: 0,
  lastActivityAt: 0,
  injectMode: "type"
})

/** A node connected as node_test, with its token, never reconnected. */
export const connectedStatus = (nodeName: string): NodeStatus => ({
  connected: true,
  since: 0,
  lastError: null,
  reconnects: 0,
  remints: 0,
  tokenPresent: true,
  nodeId: "node_test",
  nodeName
})

/** A fake registry's `list` and `lookup`, over the agents in `agents`. */
export const registryReads = (agents: Ref.Ref<ReadonlyMap<string, LiveAgent>>) => ({
  list: Effect.map(Ref.get(agents), (current) => [...current.values()]),
  restarting: Effect.succeed([]),
  lookup: (name: string) =>
    Effect.flatMap(Ref.get(agents), (current) => {
      const agent = current.get(name)
      return agent === undefined ? Effect.fail(new UnknownWorker({ agent: name })) : Effect.succeed(agent)
    })
})
