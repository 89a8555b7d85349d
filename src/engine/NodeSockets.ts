import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { closeSync, openSync, writeSync } from "node:fs"
import { performance } from "node:perf_hooks"
import type { WebSocket } from "ws"
import { encodeServerFrame, type ServerToNode, type WireEncodeError } from "../wire/index.js"
import { EngineConfig } from "./EngineConfig.js"
import { type DeliverEnvelope, deliverText } from "./deliverFrame.js"

/** The synthetic provider of a socket that names none (a v5 broker, an SDK direct client). */
export const defaultProvider = "default"

/** One authenticated `/v1/node/ws` socket; its node id and workspace come from the node token. */
export interface NodeSession {
  readonly id: number
  readonly nodeId: string
  readonly workspaceId: string
  readonly ws: WebSocket
  /** The provider this socket speaks for, once it registered (or sent any frame as `default`). */
  provider: string | undefined
  /** Its connection epoch: the register frame's `instance_id`, or a per-socket one for `default`. */
  instanceId: string | undefined
  /** The provider advertised `relay:delivery-cursor-v1`: its `agent.register` replies carry `delivery_ack_seq`. */
  cursorCapable: boolean
}

export type ClaimOutcome =
  | { readonly _tag: "Claimed"; readonly superseded: NodeSession | undefined }
  | { readonly _tag: "Conflict" }

/**
 * The sockets of each node, by provider (relaycast 6). Several providers share one node token and so
 * one node; each provider has at most one attachment. A socket claims its provider at `node.register`
 * (or with its first frame, as `default`): a new instance replaces the provider's previous socket
 * (closed with 1000 "superseded", its own close no longer counts), the same instance from a second
 * socket while the first is open is a conflict. A v5 broker is always `default` with a fresh
 * instance per socket, so its second socket supersedes the first (spec §3.2).
 *
 * `deliver` frames go to the node's hosting provider: the one whose socket registers agents, else
 * `default`, else any attached one, else the latest socket that has not spoken yet.
 */
export class NodeSockets extends Context.Tag("relay-broker/engine/NodeSockets")<NodeSockets, {
  /** A new open socket of its node (it claims a provider later). */
  readonly attach: (session: NodeSession) => Effect.Effect<void>
  /** Makes `session` the attachment of `provider` on its node (see the class doc). */
  readonly claim: (session: NodeSession, provider: string, instanceId: string) => Effect.Effect<ClaimOutcome>
  /** `node.deregister` of a provider: the socket stays open but no longer carries it. True when it did. */
  readonly unclaim: (session: NodeSession) => Effect.Effect<boolean>
  /** Marks the provider whose agents live on this node (its socket gets the `deliver` frames). */
  readonly setHost: (session: NodeSession) => Effect.Effect<void>
  /**
   * Forgets a closed socket. Returns the provider it was the current attachment of (so its close
   * takes that provider offline), whether that provider hosted the node's agents, and whether the
   * node has no attachment left.
   */
  readonly detach: (session: NodeSession) => Effect.Effect<{ readonly provider: string | undefined; readonly wasHost: boolean; readonly nodeEmpty: boolean }>
  /** True when the node has a socket for `provider` (any socket that takes `deliver` frames, without one). */
  readonly isConnected: (nodeId: string, provider?: string | undefined) => boolean
  /** The provider a frame for `provider` (or a `deliver` frame, without one) would go to now. */
  readonly route: (nodeId: string, provider?: string | undefined) => string | undefined
  /** Writes `frame` to the provider's socket (the hosting one without a provider); false when there is none. */
  readonly send: (nodeId: string, frame: ServerToNode, provider?: string | undefined) => Effect.Effect<boolean, WireEncodeError>
  /** Writes a `deliver` frame (envelope + stored payload text) to the hosting socket; false when there is none. */
  readonly sendDeliver: (nodeId: string, frame: DeliverEnvelope, payloadText: string) => boolean
  /** Writes `frame` to this socket (replies go to the asking socket even if it was superseded). */
  readonly sendTo: (session: NodeSession, frame: ServerToNode) => Effect.Effect<boolean, WireEncodeError>
}>() {}

const OPEN = 1

interface NodeEntry {
  readonly open: Set<NodeSession>
  readonly attached: Map<string, NodeSession>
  host: string | undefined
}

export const make = Effect.gen(function*() {
  const config = yield* EngineConfig
  const nodes = new Map<string, NodeEntry>()

  const entryOf = (nodeId: string): NodeEntry => {
    let entry = nodes.get(nodeId)
    if (entry === undefined) {
      entry = { open: new Set(), attached: new Map(), host: undefined }
      nodes.set(nodeId, entry)
    }
    return entry
  }

  // Bench hook: with RELAY_ENGINE_DELIVER_LOG=<file>, every `deliver` frame written to a socket
  // appends {"msg_id","agent","seq","t"} to <file>, where t = performance.timeOrigin +
  // performance.now() read right before the socket write. Unset, this is one `undefined` check.
  const logFd = config.deliverLogPath === undefined
    ? undefined
    : yield* Effect.acquireRelease(
      Effect.sync(() => openSync(config.deliverLogPath!, "a")),
      (fd) => Effect.sync(() => closeSync(fd))
    )

  const writeText = (session: NodeSession, text: string, deliver: DeliverEnvelope | undefined): boolean => {
    if (session.ws.readyState !== OPEN) return false
    if (logFd !== undefined && deliver !== undefined) {
      const t = performance.timeOrigin + performance.now()
      session.ws.send(text)
      writeSync(logFd, JSON.stringify({ msg_id: deliver.msg_id, agent: deliver.agent, seq: deliver.seq, t }) + "\n")
      return true
    }
    session.ws.send(text)
    return true
  }

  const write = (session: NodeSession, frame: ServerToNode): Effect.Effect<boolean, WireEncodeError> =>
    Effect.map(encodeServerFrame(frame), (text) => writeText(session, text, frame.type === "deliver" ? frame : undefined))

  /** The latest open socket that has not claimed a provider yet (it may never: v5 allows that). */
  const latestUnclaimed = (entry: NodeEntry): NodeSession | undefined => {
    let latest: NodeSession | undefined
    for (const session of entry.open) if (session.provider === undefined && session.ws.readyState === OPEN) latest = session
    return latest
  }

  const hostSession = (entry: NodeEntry): NodeSession | undefined =>
    (entry.host === undefined ? undefined : entry.attached.get(entry.host)) ??
      entry.attached.get(defaultProvider) ??
      entry.attached.values().next().value ??
      latestUnclaimed(entry)

  const target = (nodeId: string, provider: string | undefined): NodeSession | undefined => {
    const entry = nodes.get(nodeId)
    if (entry === undefined) return undefined
    return provider === undefined ? hostSession(entry) : entry.attached.get(provider)
  }

  const claim = (session: NodeSession, provider: string, instanceId: string) =>
    Effect.sync((): ClaimOutcome => {
      const entry = entryOf(session.nodeId)
      const current = entry.attached.get(provider)
      if (current !== undefined && current !== session && current.instanceId === instanceId && current.ws.readyState === OPEN) {
        return { _tag: "Conflict" }
      }
      if (session.provider !== undefined && session.provider !== provider && entry.attached.get(session.provider) === session) {
        entry.attached.delete(session.provider)
      }
      session.provider = provider
      session.instanceId = instanceId
      entry.attached.set(provider, session)
      if (current !== undefined && current !== session) {
        current.ws.close(1000, "superseded")
        return { _tag: "Claimed", superseded: current }
      }
      return { _tag: "Claimed", superseded: undefined }
    })

  return NodeSockets.of({
    attach: (session) => Effect.sync(() => void entryOf(session.nodeId).open.add(session)),
    claim,
    unclaim: (session) =>
      Effect.sync(() => {
        const entry = nodes.get(session.nodeId)
        if (entry === undefined || session.provider === undefined || entry.attached.get(session.provider) !== session) return false
        entry.attached.delete(session.provider)
        if (entry.host === session.provider) entry.host = undefined
        return true
      }),
    setHost: (session) =>
      Effect.sync(() => {
        if (session.provider !== undefined) entryOf(session.nodeId).host = session.provider
      }),
    detach: (session) =>
      Effect.sync(() => {
        const entry = nodes.get(session.nodeId)
        if (entry === undefined) return { provider: undefined, wasHost: false, nodeEmpty: true }
        entry.open.delete(session)
        const current = session.provider !== undefined && entry.attached.get(session.provider) === session
        if (current) entry.attached.delete(session.provider!)
        const wasHost = current && (entry.host === session.provider || (entry.host === undefined && session.provider === defaultProvider))
        if (wasHost) entry.host = undefined
        const nodeEmpty = entry.attached.size === 0
        if (nodeEmpty && entry.open.size === 0) nodes.delete(session.nodeId)
        return { provider: current ? session.provider : undefined, wasHost, nodeEmpty }
      }),
    isConnected: (nodeId, provider) => target(nodeId, provider) !== undefined,
    route: (nodeId, provider) => target(nodeId, provider)?.provider,
    send: (nodeId, frame, provider) => {
      const session = target(nodeId, provider)
      return session === undefined ? Effect.succeed(false) : write(session, frame)
    },
    sendDeliver: (nodeId, frame, payloadText) => {
      const session = target(nodeId, undefined)
      return session === undefined ? false : writeText(session, deliverText(frame, payloadText), frame)
    },
    sendTo: write
  })
})

export const layer: Layer.Layer<NodeSockets, never, EngineConfig> = Layer.scoped(NodeSockets, make)
