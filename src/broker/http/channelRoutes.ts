import * as HttpRouter from "@effect/platform/HttpRouter"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { AgentRegistry } from "../AgentRegistry.js"
import { BrokerSession } from "../BrokerSession.js"
import { type ChannelChange, channelName, ChannelMembership } from "../ChannelMembership.js"
import { EventLog } from "../EventLog.js"
import { agentNotFound, badRequest, decodeBody, failure, json } from "./responses.js"

// Channels of local agents: the ones joined at spawn (the broker's `--channels` plus the spawn's
// own), and `POST /api/spawned/{name}/subscribe|unsubscribe {channels}`. Without the membership
// service (a bare composition) spawns join nothing and the routes answer 501.

export type Memberships = ReadonlyMap<string, ReadonlyArray<string>>

const noChange: ChannelChange = { channels: [], failures: [], retryable: false }

/** Joins a just-spawned agent to the session's default channels and `requested`. */
export const joinSpawnChannels = (agent: string, requested: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const membership = yield* Effect.serviceOption(ChannelMembership)
    if (Option.isNone(membership)) return noChange
    const defaults = Option.match(yield* Effect.serviceOption(BrokerSession), {
      onNone: () => [],
      onSome: (session) => session.channels
    })
    const channels = [...defaults, ...requested]
    yield* membership.value.forget(agent)
    if (channels.length === 0) return noChange
    const live = yield* Effect.either((yield* AgentRegistry).lookup(agent))
    if (live._tag === "Left") return noChange
    return yield* membership.value.join(agent, live.right.token, channels)
  })

/** The channels of each of `agents`. */
export const membershipOf = (agents: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const membership = yield* Effect.serviceOption(ChannelMembership)
    const found = new Map<string, ReadonlyArray<string>>()
    if (Option.isNone(membership)) return found
    for (const agent of agents) found.set(agent, yield* membership.value.channelsOf(agent))
    return found
  })

const ChannelsBody = Schema.Struct({
  channels: Schema.Array(Schema.String)
}).annotations({ identifier: "ChannelsBody" })

const change = (direction: "subscribe" | "unsubscribe") =>
  Effect.gen(function*() {
    const name = (yield* HttpRouter.params)["name"] ?? ""
    const body = yield* decodeBody(ChannelsBody).pipe(Effect.mapError(badRequest))
    const membership = yield* Effect.serviceOption(ChannelMembership)
    if (Option.isNone(membership)) {
      return yield* Effect.fail(failure(501, "unsupported_operation", "channel membership is not available in this composition"))
    }
    const agent = yield* (yield* AgentRegistry).lookup(name).pipe(Effect.mapError(() => agentNotFound(name)))
    const result = direction === "subscribe"
      ? yield* membership.value.join(name, agent.token, body.channels)
      : yield* membership.value.leave(name, agent.token, body.channels)
    if (result.failures.length > 0) {
      // The engine away can pass once it is back (502, retryable); a channel it refused stays refused (400).
      return yield* Effect.fail(
        result.retryable
          ? failure(502, "relay_error", result.failures.join("; "), { name, channels: result.channels, retryable: true })
          : failure(400, "channel_refused", result.failures.join("; "), { name, channels: result.channels, retryable: false })
      )
    }
    yield* (yield* EventLog).publish(direction === "subscribe" ? "channel_subscribed" : "channel_unsubscribed", {
      name,
      channels: body.channels.map(channelName)
    })
    return json({ success: true, name, channels: result.channels })
  }).pipe(Effect.merge)

export const channelRoutes = HttpRouter.empty.pipe(
  HttpRouter.post("/api/spawned/:name/subscribe", change("subscribe")),
  HttpRouter.post("/api/spawned/:name/unsubscribe", change("unsubscribe"))
)
