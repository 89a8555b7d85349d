import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { Actions } from "./Actions.js"
import { Dispatcher } from "./Dispatcher.js"
import { EngineConfig } from "./EngineConfig.js"
import { EngineStore, now } from "./EngineStore.js"
import { nodeOffline } from "./nodeControl.js"

/**
 * Every 15 s (spec §3.5): online nodes silent past the 45 s TTL go offline like a close (their
 * sockets stay open; the next heartbeat brings them back), HTTP-only agents idle for 5 min go
 * offline, expired delivery rows are dead-lettered, and invocations past their 30 s dispatch timeout
 * or their retry time are dispatched again.
 */
export const sweep = Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const config = yield* EngineConfig
  const dispatcher = yield* Dispatcher
  const at = yield* now
  const stale = yield* sql<{ id: string }>`SELECT id FROM nodes
    WHERE status = 'online' AND (last_heartbeat_at IS NULL OR last_heartbeat_at < ${at - config.nodeLivenessTtlMs})`
  for (const { id } of stale) yield* nodeOffline(id)
  yield* sql`UPDATE agents SET status = 'offline'
    WHERE status = 'active' AND location_type != 'via_node' AND last_seen IS NOT NULL AND last_seen < ${at - config.agentStaleMs}`
  yield* dispatcher.expire
  const actions = yield* Actions
  yield* actions.sweep
  return stale.length
})

/** After a restart no node has a socket: everything starts offline (routing is kept). */
const reconcileAtStart = Effect.gen(function*() {
  const { sql } = yield* EngineStore
  const online = yield* sql<{ id: string }>`SELECT id FROM nodes WHERE status = 'online'`
  for (const { id } of online) yield* nodeOffline(id)
})

export const layer: Layer.Layer<never, never, EngineStore | EngineConfig | Dispatcher | Actions> = Layer.scopedDiscard(
  Effect.gen(function*() {
    const store = yield* EngineStore
    const config = yield* EngineConfig
    yield* store.exclusive(reconcileAtStart).pipe(Effect.orDie)
    yield* store.exclusive(sweep).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("engine sweep failed", cause)),
      Effect.repeat(Schedule.spaced(config.sweepIntervalMs)),
      Effect.delay(config.sweepIntervalMs),
      Effect.annotateLogs({ module: "Sweeper" }),
      Effect.forkScoped
    )
  })
)
