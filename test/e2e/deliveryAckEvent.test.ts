import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import WebSocket from "ws"
import { api, mainJs, startDaemon, tempRoot, until } from "../support/daemonProcess.js"
import { eventually } from "../support/polling.js"
import { freshMachineEnv } from "../support/processes.js"

// `delivery_ack` on the daemon's `/ws`, end to end (control-api §3.4): a real daemon on its embedded
// engine, a `cat` agent in a real terminal, a DM through `/api/send`. Upstream's clients wait for
// `delivery_ack {name, delivery_id, event_id}` (harness-driver's `waitForEvent("delivery_ack")`); it
// comes after the message is in the terminal, for the message that was sent.

describe.skipIf(!existsSync(mainJs))("delivery_ack on /ws", () => {
  it.scopedLive("a real delivery publishes delivery_ack {name, delivery_id, event_id} after delivery_injected, with upstream's fields", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot("relay-broker-ack-event-")
      const stateDir = join(root, "state")
      const daemon = yield* startDaemon(
        ["init", "--instance-name", "acks", "--channels", "general", "--persist", "--state-dir", stateDir],
        stateDir,
        freshMachineEnv(root)
      )
      yield* Effect.promise(() => until(daemon, () => daemon.stderr.some((line) => line.includes("connected to ws://")) || undefined))
      const call = (method: string, path: string, body?: unknown) => api(daemon.url, daemon.apiKey, method, path, body)

      const events: Array<any> = []
      const socket = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(`${daemon.url.replace(/^http/, "ws")}/ws`, { headers: { "x-api-key": daemon.apiKey } })
            ws.on("message", (data) => events.push(JSON.parse(data.toString())))
            ws.once("open", () => resolve(ws))
            ws.once("error", reject)
          })
        ),
        (ws) => Effect.sync(() => ws.terminate())
      )
      assert.strictEqual(socket.readyState, WebSocket.OPEN)

      const spawned = yield* call("POST", "/api/spawn", { name: "receiver", cli: "cat" })
      assert.strictEqual(spawned.status, 200, JSON.stringify(spawned.body))
      const sent = yield* call("POST", "/api/send", { to: "receiver", text: "hello from the ack test" })
      assert.strictEqual(sent.status, 200, JSON.stringify(sent.body))
      const eventId = sent.body.event_id as string

      yield* eventually("delivery_ack for the message", Effect.sync(() =>
        events.some((event) => event.kind === "delivery_ack" && event.event_id === eventId)))
      const ack = events.find((event) => event.kind === "delivery_ack" && event.event_id === eventId)
      assert.strictEqual(ack.name, "receiver")
      assert.isString(ack.delivery_id)
      assert.isNotEmpty(ack.delivery_id)
      assert.isNumber(ack.seq)
      // Upstream's fields; besides them only the log's own (seq, timestamp) and the engine frame's seq.
      assert.deepStrictEqual(Object.keys(ack).sort(), ["delivery_id", "event_id", "frame_seq", "kind", "name", "seq", "timestamp"])
      assert.isAtLeast(ack.frame_seq, 1)

      // The same delivery was injected first: the ack follows the bytes into the terminal.
      const injected = events.findIndex((event) =>
        event.kind === "delivery_injected" && event.event_id === eventId && event.delivery_id === ack.delivery_id)
      assert.isAtLeast(injected, 0, "delivery_injected of the same delivery")
      assert.isBelow(injected, events.indexOf(ack))
      const screen = (yield* call("GET", "/api/spawned/receiver/snapshot")).body.screen as string
      assert.include(screen, "hello from the ack test")
      assert.strictEqual(events.filter((event) => event.kind === "delivery_ack" && event.event_id === eventId).length, 1)
    }))
})
