// relay-broker as a library: the services (each a Context.Tag with its layers), the errors and the
// node wire, for Effect programs that compose their own broker (see examples/custom-host.ts).
// `Daemon` is the whole broker as `relay-broker up` composes it. The embedded engine is also its
// own entry point, `relay-broker/engine`.
export * as Actions from "./broker/Actions.js"
export * as AgentRegistry from "./broker/AgentRegistry.js"
export * as AgentRoster from "./broker/AgentRoster.js"
export * as BrokerConfig from "./broker/BrokerConfig.js"
export * as BrokerIdentity from "./broker/BrokerIdentity.js"
export * as ControlApi from "./broker/ControlApi.js"
export * as Daemon from "./broker/Daemon.js"
export * as DeadLetters from "./broker/DeadLetters.js"
export * as Deliveries from "./broker/Deliveries.js"
export * as DeliveryBook from "./broker/DeliveryBook.js"
export * as EngineClient from "./broker/EngineClient.js"
export * as Errors from "./broker/errors.js"
export * as EventLog from "./broker/EventLog.js"
export * as NodeControl from "./broker/NodeControl.js"
export * as PtyHost from "./broker/PtyHost.js"
export * as TerminalScreen from "./broker/TerminalScreen.js"
export * as TokenStore from "./broker/TokenStore.js"
export * as Wire from "./wire/index.js"
export * from "./broker/errors.js"
export { EmbeddedEngine, EngineStartError, type RunningEngine } from "./engine/index.js"
