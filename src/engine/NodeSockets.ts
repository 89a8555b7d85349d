import { Context, Effect, Layer } from "effect"
import { closeSync, openSync, writeSync } from "node:fs"
import { performance } from "node:perf_hooks"
import type { WebSocket } from "ws"
import { encodeServerFrame, type ServerToNode, type WireEncodeError } from "../wire/index.js"
import { EngineConfig } from "./EngineConfig.js"
import { type DeliverEnvelope, deliverText } from "./deliverFrame.js"

/** One authenticated `/v1/node/ws` socket; its node id and workspace come from the node token. */
export interface NodeSession {
  readonly id: number
  readonly nodeId: string
  readonly workspaceId: string
  readonly ws: WebSocket
}

/**
 * The current socket of each node. A second socket for the same node supersedes the first: the old
 * one is closed with 1000 "superseded" and its own close no longer counts (spec §3.2).
 */
export class NodeSockets extends Context.Tag("relay-broker/engine/NodeSockets")<NodeSockets, {
  /** Makes `session` current for its node; closes the one it replaces. */
  readonly attach: (session: NodeSession) => Effect.Effect<void>
  /** Forgets `session`; true when it was the node's current socket. */
  readonly detach: (session: NodeSession) => Effect.Effect<boolean>
  readonly isCurrent: (session: NodeSession) => boolean
  readonly isConnected: (nodeId: string) => boolean
  /** Writes `frame` to the node's current socket; false when it has none. */
  readonly send: (nodeId: string, frame: ServerToNode) => Effect.Effect<boolean, WireEncodeError>
  /** Writes a `deliver` frame (envelope + stored payload text) to the node's current socket; false when it has none. */
  readonly sendDeliver: (nodeId: string, frame: DeliverEnvelope, payloadText: string) => boolean
  /** Writes `frame` to this socket (replies go to the asking socket even if it was superseded). */
  readonly sendTo: (session: NodeSession, frame: ServerToNode) => Effect.Effect<boolean, WireEncodeError>
}>() {}

const OPEN = 1

export const make = Effect.gen(function*() {
  const config = yield* EngineConfig
  const current = new Map<string, NodeSession>()

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

  const sendDeliver = (nodeId: string, frame: DeliverEnvelope, payloadText: string): boolean => {
    const session = current.get(nodeId)
    return session === undefined ? false : writeText(session, deliverText(frame, payloadText), frame)
  }

  return NodeSockets.of({
    attach: (session) =>
      Effect.sync(() => {
        const previous = current.get(session.nodeId)
        current.set(session.nodeId, session)
        if (previous !== undefined && previous !== session) previous.ws.close(1000, "superseded")
      }),
    detach: (session) =>
      Effect.sync(() => {
        if (current.get(session.nodeId) !== session) return false
        current.delete(session.nodeId)
        return true
      }),
    isCurrent: (session) => current.get(session.nodeId) === session,
    isConnected: (nodeId) => current.has(nodeId),
    send: (nodeId, frame) => {
      const session = current.get(nodeId)
      return session === undefined ? Effect.succeed(false) : write(session, frame)
    },
    sendDeliver,
    sendTo: write
  })
})

export const layer: Layer.Layer<NodeSockets, never, EngineConfig> = Layer.scoped(NodeSockets, make)
