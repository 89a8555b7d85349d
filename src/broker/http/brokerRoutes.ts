import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import { BrokerConfig } from "../BrokerConfig.js"
import { BrokerSession } from "../BrokerSession.js"
import { DeadLetters } from "../DeadLetters.js"
import { Deliveries, type DeliveryHealth } from "../Deliveries.js"
import { NodeControl } from "../NodeControl.js"
import { TokenStore } from "../TokenStore.js"
import { agentViews } from "./agentRoutes.js"
import type { EventSockets } from "./eventsRoute.js"
import { json } from "./responses.js"
import { Shutdown } from "./Shutdown.js"

// The broker-wide routes of the control API: health, session, status, shutdown.

export interface BrokerFacts {
  /** Epoch ms when the API started. */
  readonly startedAt: number
  readonly eventSockets: EventSockets
}

/** The workspace id if TokenStore already knows it; `/health` must answer even while the engine is away. */
const workspaceId = TokenStore.pipe(
  Effect.flatMap((tokens) => tokens.identity),
  Effect.map((identity) => identity.workspaceId),
  Effect.timeout("1 second"),
  Effect.option,
  Effect.map(Option.getOrNull)
)

// Delivery state is optional: a composition without Deliveries still has a working API.
const pendingDeliveryCount = Effect.serviceOption(Deliveries).pipe(
  Effect.flatMap(Option.match({
    onNone: () => Effect.succeed(0),
    onSome: (deliveries) =>
      Effect.map(deliveries.report, (agents) => agents.reduce((total, agent) => total + agent.held.length, 0))
  }))
)

const noDeliveryTrouble: DeliveryHealth = { stalled: [], failingSaves: [], workerRestarts: 0 }

const deliveryHealth = Effect.serviceOption(Deliveries).pipe(
  Effect.flatMap(Option.match({ onNone: () => Effect.succeed(noDeliveryTrouble), onSome: (deliveries) => deliveries.health }))
)

/** Why the broker is degraded (empty when it is not): the node session, failing cursor saves, stalled agents. */
const degradedReasons = (connected: boolean, delivery: DeliveryHealth): ReadonlyArray<string> => [
  ...(connected ? [] : ["the node is not connected to the engine"]),
  ...delivery.failingSaves.map((failing) =>
    `delivery cursor of ${failing.agent} not saved since ${new Date(failing.since).toISOString()} (acks wait): ${failing.error}`
  ),
  ...delivery.stalled.map((stall) => `delivery to ${stall.agent} stalled: ${stall.reason}`)
]

const deadLetterCount = Effect.serviceOption(DeadLetters).pipe(
  Effect.flatMap(Option.match({ onNone: () => Effect.succeed(0), onSome: (letters) => letters.count }))
)

const uptimeMs = (facts: BrokerFacts) => Effect.map(Clock.currentTimeMillis, (now) => now - facts.startedAt)

const health = (facts: BrokerFacts) =>
  Effect.gen(function*() {
    const config = yield* BrokerConfig
    const node = yield* (yield* NodeControl).status
    const agents = yield* agentViews
    const workspace = yield* workspaceId
    const delivery = yield* deliveryHealth
    const reasons = degradedReasons(node.connected, delivery)
    return json({
      status: reasons.length === 0 ? "ok" : "degraded",
      reasons,
      service: "agent-relay-listen",
      version: config.version,
      uptimeMs: yield* uptimeMs(facts),
      workspaceId: workspace,
      defaultWorkspaceId: workspace,
      memberships: [],
      agentCount: agents.length,
      pendingDeliveryCount: yield* pendingDeliveryCount,
      deadLetterCount: yield* deadLetterCount,
      wsConnections: yield* Ref.get(facts.eventSockets),
      memoryMb: Math.round(process.memoryUsage().rss / (1024 * 1024)),
      relaycastConnected: node.connected,
      nodeConnected: node.connected,
      nodeDelivery: { tokenPresent: node.tokenPresent, connected: node.connected },
      stalledAgentCount: delivery.stalled.length,
      failingCursorSaves: delivery.failingSaves.length,
      deliveryWorkerRestarts: delivery.workerRestarts
    })
  })

const session = (facts: BrokerFacts) =>
  Effect.gen(function*() {
    const config = yield* BrokerConfig
    const node = yield* (yield* NodeControl).status
    const workspace = yield* workspaceId
    const mode = Option.match(yield* Effect.serviceOption(BrokerSession), {
      onNone: () => "persist",
      onSome: (current) => current.mode
    })
    return json({
      broker_version: config.version,
      protocol_version: 2,
      // The caller holds the broker key; upstream hands it the workspace key so it can talk to the engine.
      workspace_key: Redacted.value(config.workspaceKey),
      relay_base_url: config.baseUrl,
      default_workspace_id: workspace,
      mode,
      uptime_secs: Math.floor((yield* uptimeMs(facts)) / 1000),
      node_id: node.nodeId,
      node_name: node.nodeName
    })
  })

const status = Effect.gen(function*() {
  const node = yield* (yield* NodeControl).status
  const agents = yield* agentViews
  const delivery = yield* deliveryHealth
  return json({
    status: degradedReasons(node.connected, delivery).length === 0 ? "ok" : "degraded",
    degraded_reasons: degradedReasons(node.connected, delivery),
    stalled_agents: delivery.stalled,
    agent_count: agents.length,
    agents,
    pending_delivery_count: yield* pendingDeliveryCount,
    dead_letter_count: yield* deadLetterCount,
    pending_deliveries: [],
    node_connected: node.connected,
    node_delivery: { tokenPresent: node.tokenPresent, connected: node.connected },
    node
  })
})

const shutdown = Effect.gen(function*() {
  const signal = yield* Shutdown
  yield* Effect.logInfo("shutdown requested through the API")
  yield* signal.request
  return json({ status: "shutting_down" })
})

export const brokerRoutes = (facts: BrokerFacts) =>
  HttpRouter.empty.pipe(
    HttpRouter.get("/health", health(facts)),
    HttpRouter.get("/api/session", session(facts)),
    HttpRouter.get("/api/status", status),
    HttpRouter.post("/api/shutdown", shutdown)
  )
