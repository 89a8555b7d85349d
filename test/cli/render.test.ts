import { assert, describe, it } from "@effect/vitest"
import * as Agents from "../../src/cli/agents.js"
import { ago, table } from "../../src/cli/format.js"
import * as Send from "../../src/cli/send.js"
import * as Status from "../../src/cli/status.js"

// What the commands print for a given daemon answer (the daemon's JSON is read tolerantly).

const now = Date.parse("2026-11-24T12:00:00.000Z")

describe("agents table", () => {
  it("one row per agent with name, cli, pid, status, readiness, last activity, pending", () => {
    const spawned = {
      agents: [
        {
          name: "alice",
          cli: "claude",
          pid: 101,
          current_state: "working",
          readiness: "ready",
          readiness_source: "screen",
          last_activity_ms: now - 5_000,
          pending_messages: 2
        },
        { name: "bob", cli: "bash", pid: 202, status: "running", last_activity_at: "2026-11-24T11:57:00.000Z" },
        { name: "carol", cli: "codex", pid: 303, readiness: "blocked", blocked_screen: "Sign in with ChatGPT", last_activity_ms: now },
        { name: "dan", cli: "gemini", pid: 404, readiness: "ready", readiness_source: "timeout", readiness_warning: "no prompt", last_activity_ms: now }
      ]
    }
    const rows = Agents.render(spawned, new Map([["bob", 3]]), now).split("\n")
    assert.deepStrictEqual(rows.map((row) => row.split(/\s{2,}/)), [
      ["NAME", "CLI", "PID", "STATUS", "READY", "LAST ACTIVITY", "PENDING"],
      ["alice", "claude", "101", "working", "ready (screen)", "5s ago", "2"],
      ["bob", "bash", "202", "running", "-", "3m ago", "3"],
      ["carol", "codex", "303", "-", "blocked: Sign in with ChatGPT", "0s ago", "0"],
      ["dan", "gemini", "404", "-", "ready (timeout)!", "0s ago", "0"]
    ])
  })

  it("a TEAM column when any agent has a team (upstream's spawn field)", () => {
    const rows = Agents.render({ agents: [{ name: "a", team: "blue", cli: "cat", pid: 1 }, { name: "b", team: null, cli: "cat", pid: 2 }] }, new Map(), now)
      .split("\n")
      .map((row) => row.split(/\s{2,}/))
    assert.deepStrictEqual(rows.map((row) => row.slice(0, 3)), [["NAME", "TEAM", "CLI"], ["a", "blue", "cat"], ["b", "-", "cat"]])
  })

  it("an agent in its restart cooldown shows the restart under way and when it is due", () => {
    const spawned = {
      agents: [{
        name: "w",
        cli: "node",
        pid: null,
        status: "restarting",
        current_state: "restarting",
        restart_count: 2,
        next_restart_at: new Date(now + 2_500).toISOString(),
        last_activity_ms: now - 1_000
      }]
    }
    const [, row] = Agents.render(spawned, new Map(), now).split("\n")
    assert.deepStrictEqual(row?.split(/\s{2,}/), ["w", "node", "-", "restarting #2 in 3s", "-", "1s ago", "0"])
  })

  it("unknown fields print as - and no agents says so", () => {
    assert.strictEqual(Agents.render({ agents: [] }, undefined, now), "no live agents")
    const [, row] = Agents.render({ agents: [{ name: "x" }] }, undefined, now).split("\n")
    assert.deepStrictEqual(row?.split(/\s{2,}/), ["x", "-", "-", "-", "-", "-", "-"])
  })

  it("pending counts come from the local queue and from node deliveries held behind a gap", () => {
    const queued = Agents.queuedPerAgent(
      { pending_deliveries: [{ worker_name: "a" }, { worker_name: "a" }, { worker_name: "b" }] },
      { agents: [{ agent: "a", held: [7, 8] }, { agent: "c", held: [] }] }
    )
    assert.deepStrictEqual([...queued].sort(), [["a", 4], ["b", 1], ["c", 0]])
  })
})

describe("status page", () => {
  it("node connection, agents, pending, dead letters and summed delivery counters", () => {
    const page = Status.render({
      status: { agent_count: 1, agents: [{ name: "alice" }], pending_delivery_count: 0 },
      nodeDelivery: {
        node: { connected: true, since: now - 120_000, reconnects: 2, lastError: null, nodeId: "node_1", nodeName: "box" },
        agents: [
          { agent: "alice", counts: { received: 3, injected: 2, dead_lettered: 1 } },
          { agent: "bob", counts: { received: 1, injected: 1, dead_lettered: 0 } }
        ]
      },
      deadLetters: { dead_letters: [{ id: "dl_1", agent: "ghost", reason: "unknown_agent", detail: "no live agent" }] }
    }, now)
    const lines = page.split("\n").map((line) => line.trim().split(/\s{2,}/))
    assert.deepStrictEqual(lines, [
      ["node", "connected since 2026-11-24T11:58:00.000Z (2m ago) · 2 reconnects · last error: none"],
      ["box (node_1)"],
      ["agents", "1: alice"],
      ["pending", "0"],
      ["dead letters", "1"],
      ["- dl_1", "to ghost", "unknown_agent: no live agent"],
      ["stalled", "0"],
      ["deliveries", "received 4 · injected 3 · dead_lettered 1"]
    ])
  })

  it("lists stalled agents with their reason and agents whose cursor saves fail", () => {
    const page = Status.render({
      status: { agent_count: 2, agents: [{ name: "alice" }, { name: "bob" }] },
      nodeDelivery: {
        node: { connected: true },
        agents: [
          { agent: "alice", worker: { state: "stalled", stalled_reason: "no progress for 6.0 s: saving the cursor" } },
          { agent: "bob", worker: { state: "working" }, durability: { cursor_saved: false, save_error: "disk full", pending_ack: 7 } }
        ]
      },
      deadLetters: { dead_letters: [] }
    }, now)
    const lines = page.split("\n").map((line) => line.trim().split(/\s{2,}/))
    assert.deepStrictEqual(lines.slice(4, 9), [
      ["stalled", "1"],
      ["- alice: no progress for 6.0 s: saving the cursor"],
      ["unsaved cursors", "1"],
      ["- bob: disk full (ack 7 waits)"],
      ["deliveries", "-"]
    ])
  })

  it("without the delivery routes it falls back on /api/status", () => {
    const page = Status.render({
      status: { agents: [], dead_letter_count: 4, node: { connected: false, since: null, reconnects: 5, lastError: "401" } },
      nodeDelivery: undefined,
      deadLetters: undefined
    }, now)
    assert.include(page, "disconnected · 5 reconnects · last error: 401")
    assert.match(page, /dead letters\s+4/)
    assert.match(page, /deliveries\s+-/)
  })
})

describe("send", () => {
  it("prints what the daemon reported, without success", () => {
    assert.strictEqual(
      Send.describe({ success: true, event_id: "http_1", delivered: 2, local: true, workspace_id: null }),
      "event_id=http_1 delivered=2 local=true"
    )
  })
})

describe("format", () => {
  it("ago covers seconds to days and unknown instants", () => {
    assert.deepStrictEqual(
      [now - 1_000, now - 61_000, now - 7_200_000, now - 3 * 86_400_000, null, "not a date"].map((at) => ago(at, now)),
      ["1s ago", "1m ago", "2h ago", "3d ago", "-", "-"]
    )
  })

  it("table pads every column but the last", () => {
    assert.strictEqual(table(["A", "BB"], [["xxx", "y"]]), "A    BB\nxxx  y")
  })
})
