import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import { BrokerConfig } from "./BrokerConfig.js"
import { redactSecrets } from "./EngineClient.js"
import { engineStatusMayPass } from "./retryable.js"

// The channels each local agent is in (upstream's `channels` of /api/spawned, `--channels` of
// `init`, `/api/spawned/{name}/subscribe|unsubscribe`). Joining goes through the engine: the channel
// is created with the workspace key when missing (409 is fine), then joined with the agent's token.

export interface ChannelChange {
  /** The agent's channels after the change. */
  readonly channels: ReadonlyArray<string>
  /** One line per channel the engine refused or could not be reached for. */
  readonly failures: ReadonlyArray<string>
  /** Whether every failure may pass later (the engine away, 408, 429, 5xx); false when it refused one. */
  readonly retryable: boolean
}

export class ChannelMembership extends Context.Tag("relay-broker/ChannelMembership")<ChannelMembership, {
  readonly channelsOf: (agent: string) => Effect.Effect<ReadonlyArray<string>>
  readonly join: (
    agent: string,
    token: Redacted.Redacted<string>,
    channels: ReadonlyArray<string>
  ) => Effect.Effect<ChannelChange>
  readonly leave: (
    agent: string,
    token: Redacted.Redacted<string>,
    channels: ReadonlyArray<string>
  ) => Effect.Effect<ChannelChange>
  /** Drops what is known of an agent (released or exited). */
  readonly forget: (agent: string) => Effect.Effect<void>
}>() {}

/** `#general` and `general` are the same channel. */
export const channelName = (channel: string): string => channel.trim().replace(/^#/, "")

export const make = Effect.gen(function*() {
  const config = yield* BrokerConfig
  const client = yield* HttpClient.HttpClient
  const known = yield* Ref.make<ReadonlyMap<string, ReadonlyArray<string>>>(new Map())
  const base = config.baseUrl.replace(/\/+$/, "")

  /** The status of one engine call (0 when it could not be made), never failing. */
  const call = (path: string, credential: Redacted.Redacted<string>, body: unknown) =>
    client.execute(
      HttpClientRequest.post(`${base}${path}`).pipe(
        HttpClientRequest.bodyUnsafeJson(body),
        HttpClientRequest.bearerToken(Redacted.value(credential))
      )
    ).pipe(
      Effect.flatMap((response) =>
        Effect.map(Effect.orElseSucceed(response.text, () => ""), (text) => ({ status: response.status, text }))
      ),
      Effect.timeout("10 seconds"),
      Effect.catchAll((error) => Effect.succeed({ status: 0, text: String(error) }))
    )

  const update = (agent: string, change: (current: ReadonlyArray<string>) => ReadonlyArray<string>) =>
    Ref.modify(known, (current): [ReadonlyArray<string>, ReadonlyMap<string, ReadonlyArray<string>>] => {
      const next = change(current.get(agent) ?? [])
      return [next, new Map(current).set(agent, next)]
    })

  const failureLine = (channel: string, result: { readonly status: number; readonly text: string }) =>
    `#${channel}: ${result.status === 0 ? "engine unreachable" : `HTTP ${result.status}`} ${
      redactSecrets(result.text.slice(0, 200), [config.workspaceKey])
    }`.trim()

  const join = (agent: string, token: Redacted.Redacted<string>, channels: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const failures: Array<string> = []
      let retryable = true
      for (const channel of new Set(channels.map(channelName).filter((name) => name !== ""))) {
        const created = yield* call("/v1/channels", config.workspaceKey, { name: channel })
        if (created.status !== 0 && created.status !== 201 && created.status !== 200 && created.status !== 409) {
          failures.push(failureLine(channel, created))
          retryable &&= engineStatusMayPass(created.status)
          continue
        }
        const joined = yield* call(`/v1/channels/${encodeURIComponent(channel)}/join`, token, {})
        if (joined.status < 200 || joined.status >= 300) {
          failures.push(failureLine(channel, joined))
          retryable &&= engineStatusMayPass(joined.status)
          continue
        }
        yield* update(agent, (current) => current.includes(channel) ? current : [...current, channel])
      }
      if (failures.length > 0) yield* Effect.logWarning(`${agent} could not join: ${failures.join("; ")}`)
      return { channels: (yield* Ref.get(known)).get(agent) ?? [], failures, retryable: failures.length > 0 && retryable }
    })

  const leave = (agent: string, token: Redacted.Redacted<string>, channels: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const failures: Array<string> = []
      let retryable = true
      for (const channel of new Set(channels.map(channelName).filter((name) => name !== ""))) {
        const left = yield* call(`/v1/channels/${encodeURIComponent(channel)}/leave`, token, {})
        // Not a member (404) is as good as having left.
        if ((left.status < 200 || left.status >= 300) && left.status !== 404) {
          failures.push(failureLine(channel, left))
          retryable &&= engineStatusMayPass(left.status)
          continue
        }
        yield* update(agent, (current) => current.filter((name) => name !== channel))
      }
      return { channels: (yield* Ref.get(known)).get(agent) ?? [], failures, retryable: failures.length > 0 && retryable }
    })

  return ChannelMembership.of({
    channelsOf: (agent) => Effect.map(Ref.get(known), (current) => current.get(agent) ?? []),
    join,
    leave,
    forget: (agent) =>
      Ref.update(known, (current) => {
        const next = new Map(current)
        next.delete(agent)
        return next
      })
  })
}).pipe(Effect.annotateLogs({ module: "ChannelMembership" }))

export const layer: Layer.Layer<ChannelMembership, never, BrokerConfig | HttpClient.HttpClient> = Layer.effect(
  ChannelMembership,
  make
)
