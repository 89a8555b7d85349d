import * as FileSystem from "@effect/platform/FileSystem"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { join } from "node:path"
import { writeFileAtomic } from "../../lib/AtomicFile.js"
import { BrokerConfig } from "../BrokerConfig.js"
import { ControlApi } from "../ControlApi.js"
import { PersistFailed } from "../errors.js"

// How clients find the daemon: `connection.json` in the state dir ({url, port, api_key, pid}, mode
// 0600, written atomically, removed on a clean exit), and the stdout line that SDKs wait for.

export const connectionFileName = "connection.json"

export const connectionFilePath = (stateDir: string): string => join(stateDir, connectionFileName)

/** The exact line upstream clients match (`API listening on (https?://\S+)`). */
export const listeningLine = (url: string): string => `[agent-relay] API listening on ${url}`

/** Writes connection.json for the lifetime of the layer; removes it when the layer closes. */
export const layer: Layer.Layer<never, PersistFailed, BrokerConfig | ControlApi | FileSystem.FileSystem> = Layer
  .scopedDiscard(
    Effect.gen(function*() {
      const config = yield* BrokerConfig
      const api = yield* ControlApi
      const fs = yield* FileSystem.FileSystem
      const path = connectionFilePath(config.stateDir)
      const content = JSON.stringify(
        { url: api.url, port: api.port, api_key: Redacted.value(config.brokerApiKey), pid: process.pid },
        null,
        2
      ) + "\n"
      yield* Effect.acquireRelease(
        writeFileAtomic(path, content, { mode: 0o600 }).pipe(
          Effect.mapError((error) => new PersistFailed({ path, detail: error.message }))
        ),
        () =>
          fs.remove(path).pipe(
            Effect.catchAll((error) => Effect.logWarning("could not remove connection.json", error.message))
          )
      )
      yield* Effect.logInfo("connection file written").pipe(Effect.annotateLogs({ path }))
    })
  )

/** Prints the listening line on stdout, once, when the layer is built (after connection.json exists). */
export const announce: Layer.Layer<never, never, ControlApi> = Layer.effectDiscard(
  Effect.flatMap(ControlApi, (api) => Console.log(listeningLine(api.url)))
)
