import { assert, beforeAll, describe, layer } from "@effect/vitest"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Context, Duration, Effect, Layer, Schedule } from "effect"
import { cleanEnv, cli, type CliResult, daemon, ensureBuilt, root, type RunningDaemon } from "./harness.js"

// Every client command against a real daemon: `relay-broker up` as a child process, with a temp
// state dir and its embedded engine; agents are `cat` in a real terminal.

beforeAll(() => ensureBuilt(), 300_000)

class Daemon extends Context.Tag("test/cli/Daemon")<Daemon, RunningDaemon>() {}

const run = (command: string, ...rest: ReadonlyArray<string>) =>
  Effect.flatMap(Daemon, (running) => cli([command, "--state-dir", running.stateDir, ...rest]))

const ok = (result: CliResult) => {
  assert.strictEqual(result.code, 0, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`)
  return result
}

const oneLine = (result: CliResult, code: number) => {
  assert.strictEqual(result.code, code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`)
  const lines = result.stderr.split("\n").filter((line) => line.trim() !== "")
  assert.strictEqual(lines.length, 1, result.stderr)
  assert.notInclude(result.stderr, "    at ", "no stack trace")
  return lines[0] ?? ""
}

/** Retries `check` until it passes (the daemon types and echoes asynchronously). */
const eventually = <A, E, R>(check: Effect.Effect<A, E, R>) =>
  check.pipe(Effect.retry(Schedule.spaced(Duration.millis(250)).pipe(Schedule.intersect(Schedule.recurs(120)))))

const spawnCat = (name: string) =>
  Effect.map(run("spawn", name, "cat"), (result) => {
    ok(result)
    const pid = Number(result.stdout.trim())
    assert.isTrue(Number.isInteger(pid) && pid > 0, `spawn prints the pid, got ${JSON.stringify(result.stdout)}`)
    return pid
  })

const agentsJson = Effect.map(run("agents", "--json"), (result) => {
  ok(result)
  return (JSON.parse(result.stdout) as { agents: ReadonlyArray<{ name: string; pid: number }> }).agents
})

const logsInclude = (name: string, text: string) =>
  eventually(Effect.flatMap(run("logs", name), (result) =>
    result.code === 0 && result.stdout.includes(text)
      ? Effect.succeed(result.stdout)
      : Effect.fail(new Error(`logs of ${name} lack ${JSON.stringify(text)}: ${result.stdout}${result.stderr}`))))

const daemonLayer = Layer.scoped(Daemon, daemon)

describe("client commands against a real daemon", () => {
  // Nine CLI processes in a row: about 12 s on an idle machine, 37 s pinned to one busy core.
  const nineCliRuns = 180_000

  layer(daemonLayer, { excludeTestServices: true, timeout: 120_000 })((it) => {
    it.effect("spawn prints the pid; agents lists the agent with it; release removes it", () =>
      Effect.gen(function*() {
        const pid = yield* spawnCat("lister")
        const table = ok(yield* run("agents")).stdout.split("\n")
        assert.deepStrictEqual(table[0]?.split(/\s{2,}/), ["NAME", "CLI", "PID", "STATUS", "READY", "LAST ACTIVITY", "PENDING"])
        const row = table.find((line) => line.startsWith("lister "))?.split(/\s{2,}/)
        assert.isDefined(row, table.join("\n"))
        assert.strictEqual(row?.[1], "cat")
        assert.strictEqual(row?.[2], String(pid))
        assert.strictEqual(row?.[4], "ready (immediate)")
        assert.deepStrictEqual((yield* agentsJson).filter((agent) => agent.name === "lister").map((agent) => agent.pid), [pid])

        assert.strictEqual(ok(yield* run("release", "lister")).stdout.trim(), "released lister")
        assert.deepStrictEqual((yield* agentsJson).filter((agent) => agent.name === "lister"), [])
      }))

    it.effect("spawn passes the arguments after -- and --cwd to the program", () =>
      Effect.gen(function*() {
        const running = yield* Daemon
        const cwd = join(running.stateDir, "..")
        ok(yield* run("spawn", "printer", "--cwd", cwd, "sh", "--", "-c", "pwd; echo args-$0-ok; exec cat", "x"))
        yield* logsInclude("printer", "args-x-ok")
        yield* logsInclude("printer", cwd)
        ok(yield* run("release", "printer"))
      }))

    it.effect("send to an agent: prints what the daemon reported, and the agent sees the text", () =>
      Effect.gen(function*() {
        yield* spawnCat("reader")
        const sent = ok(yield* run("send", "reader", "hello from the cli"))
        assert.match(sent.stdout.trim(), /^sent to reader: \S+=\S+/)
        yield* logsInclude("reader", "hello from the cli")
        ok(yield* run("release", "reader"))
      }))

    it.effect("send --from, --thread, --steer and #channel reach the daemon as such", () =>
      Effect.gen(function*() {
        yield* spawnCat("writer")
        yield* spawnCat("listener")
        const direct = ok(yield* run("send", "--from", "writer", "listener", "first note")).stdout
        assert.include(direct, "from=writer")
        yield* logsInclude("listener", "Relay message from writer")
        const messageId = /message_id=(\S+)/.exec(direct)?.[1] ?? /event_id=(\S+)/.exec(direct)?.[1]
        assert.isDefined(messageId, direct)
        const reply = ok(yield* run("send", "--from", "writer", "--thread", messageId!, "listener", "threaded note")).stdout
        assert.include(reply, `thread_id=${messageId}`)
        assert.include(ok(yield* run("send", "--steer", "listener", "steered note")).stdout, "sent to listener")
        yield* logsInclude("listener", "steered note")
        assert.match(ok(yield* run("send", "#general", "to everyone")).stdout, /^sent to #general: .*to=#general/)
        ok(yield* run("release", "writer"))
        ok(yield* run("release", "listener"))
      }), nineCliRuns)

    it.effect("logs --follow prints the snapshot, then live output, and ends when the agent is released", () =>
      Effect.gen(function*() {
        const running = yield* Daemon
        yield* spawnCat("follower")
        ok(yield* run("send", "follower", "before-follow"))
        yield* logsInclude("follower", "before-follow")
        const follow = spawn("node", [join(root, "dist", "main.js"), "logs", "--state-dir", running.stateDir, "--follow", "follower"], {
          env: cleanEnv(),
          stdio: ["ignore", "pipe", "pipe"]
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => follow.kill("SIGKILL")))
        let stdout = ""
        follow.stdout.on("data", (chunk) => (stdout += String(chunk)))
        const exited = Effect.async<number | null>((resume) => {
          if (follow.exitCode !== null) return resume(Effect.succeed(follow.exitCode))
          follow.once("exit", (code) => resume(Effect.succeed(code)))
        })
        const sees = (text: string) =>
          eventually(Effect.suspend(() => stdout.includes(text) ? Effect.void : Effect.fail(new Error(`follow lacks ${text}: ${stdout}`))))
        yield* sees("before-follow")
        ok(yield* run("send", "follower", "after-follow"))
        yield* sees("after-follow")
        ok(yield* run("release", "follower"))
        assert.strictEqual(yield* exited, 0)
      }).pipe(Effect.scoped))

    it.effect("status shows the node connection and the agents; --json has the three answers", () =>
      Effect.gen(function*() {
        yield* spawnCat("statused")
        const page = ok(yield* run("status")).stdout
        assert.match(page, /^node\s+connected since /m)
        assert.match(page, /^agents\s+\d+: .*statused/m)
        assert.match(page, /^dead letters\s+\d+/m)
        assert.match(page, /^deliveries\s+/m)
        const raw = JSON.parse(ok(yield* run("status", "--json")).stdout) as Record<string, unknown>
        assert.deepStrictEqual(Object.keys(raw).sort(), ["dead_letters", "node_delivery", "status"])
        ok(yield* run("release", "statused"))
      }))

    it.effect("--url and --api-key reach the same daemon as connection.json", () =>
      Effect.gen(function*() {
        const running = yield* Daemon
        const connection = JSON.parse(readFileSync(join(running.stateDir, "connection.json"), "utf8")) as { url: string; api_key: string }
        ok(yield* cli(["agents", "--url", connection.url, "--api-key", connection.api_key, "--json"]))
        const refused = oneLine(yield* cli(["agents", "--url", connection.url, "--api-key", "br_wrong"]), 1)
        assert.match(refused, /^relay-broker agents: .*HTTP 401/)
      }))

    it.effect("the quick path and the full parser print the same (--state-dir DIR runs quick, --state-dir=DIR the tree)", () =>
      Effect.gen(function*() {
        const running = yield* Daemon
        yield* spawnCat("twice")
        const both = (...args: ReadonlyArray<string>) =>
          Effect.all([
            cli([...args, "--state-dir", running.stateDir]),
            cli([...args, `--state-dir=${running.stateDir}`])
          ])
        for (const args of [["agents", "--json"], ["message", "no-such-message"], ["release", "nobody"], ["send", "nobody", "hi"], ["logs", "nobody"]]) {
          const [quick, tree] = yield* both(...args)
          assert.deepStrictEqual(quick, tree, args.join(" "))
        }
        const [quick, tree] = yield* both("agents")
        // The LAST ACTIVITY column ("3s ago") may tick between the two runs.
        const stable = (result: CliResult) => ({ ...result, stdout: result.stdout.replace(/\d+[smhd] ago/g, "_ ago") })
        assert.deepStrictEqual(stable(quick), stable(tree))
        assert.include(quick.stdout, "twice")
        ok(yield* run("release", "twice"))
      }))

    it.effect("failures the daemon reports exit 1 with one line", () =>
      Effect.gen(function*() {
        assert.match(oneLine(yield* run("logs", "nobody"), 1), /^relay-broker logs: .*nobody.*HTTP 404/)
        assert.match(oneLine(yield* run("release", "nobody"), 1), /^relay-broker release: .*HTTP 404/)
        assert.match(oneLine(yield* run("send", "nobody", "hi"), 1), /^relay-broker send: .*HTTP 4\d\d/)
        assert.match(oneLine(yield* run("spawn", "not a name!", "cat"), 1), /^relay-broker spawn: .*HTTP 400/)
        yield* spawnCat("twin")
        assert.match(oneLine(yield* run("spawn", "twin", "cat"), 1), /^relay-broker spawn: .*HTTP 409/)
        ok(yield* run("release", "twin"))
      }))
  })
})
