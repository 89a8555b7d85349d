import { assert, beforeAll, describe, layer } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Context, Deferred, Duration, Effect, Exit, Layer, Schedule } from "effect"
import * as NodePty from "node-pty"
import { cleanEnv, cli, type CliResult, daemon, ensureBuilt, root, type RunningDaemon } from "./harness.js"

// `relay-broker attach` driven the way a person uses it: in a real pseudo-terminal (node-pty), against
// a real daemon whose agent is bash. The attach runs inside `sh -c 'attach; stty -a'`, so the
// terminal's modes after it ended are on screen.

beforeAll(() => ensureBuilt(), 300_000)

class Daemon extends Context.Tag("test/cli/attach/Daemon")<Daemon, RunningDaemon>() {}

const run = (command: string, ...rest: ReadonlyArray<string>) =>
  Effect.flatMap(Daemon, (running) => cli([command, "--state-dir", running.stateDir, ...rest]))

const ok = (result: CliResult) => {
  assert.strictEqual(result.code, 0, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`)
  return result
}

interface Session {
  readonly screen: () => string
  readonly type: (keys: string) => Effect.Effect<void>
  readonly exited: Effect.Effect<number>
}

/** `relay-broker attach <name>` in a terminal of its own, followed by `stty -a` and a marker line. */
const attachSession = (name: string) =>
  Effect.gen(function*() {
    const running = yield* Daemon
    const main = join(root, "dist", "main.js")
    const script = `node '${main}' attach --state-dir '${running.stateDir}' ${name}; echo "attach-exit=$?"; stty -a; echo END-OF-SESSION`
    const terminal = yield* Effect.acquireRelease(
      Effect.sync(() =>
        NodePty.spawn("/bin/sh", ["-c", script], { cols: 100, rows: 30, cwd: root, env: cleanEnv({ TERM: "xterm-256color" }) })
      ),
      (terminal) => Effect.sync(() => terminal.kill("SIGKILL"))
    )
    let screen = ""
    terminal.onData((data) => (screen += data))
    const exit = yield* Deferred.make<number>()
    terminal.onExit(({ exitCode }) => Deferred.unsafeDone(exit, Exit.succeed(exitCode)))
    return {
      screen: () => screen,
      type: (keys: string) => Effect.sync(() => terminal.write(keys)),
      exited: Deferred.await(exit)
    } satisfies Session
  })

/** Polls for up to a minute: several node processes start on a loaded machine. */
const sees = (session: Session, text: string) =>
  Effect.suspend(() =>
    session.screen().includes(text) ? Effect.void : Effect.fail(new Error(`the terminal never showed ${JSON.stringify(text)}:\n${session.screen()}`))
  ).pipe(Effect.retry(Schedule.spaced(Duration.millis(50)).pipe(Schedule.upTo(Duration.minutes(1)))))

const api = (path: string, init: RequestInit = {}) =>
  Effect.flatMap(Daemon, (running) =>
    Effect.promise(async () => {
      const connection = JSON.parse(readFileSync(join(running.stateDir, "connection.json"), "utf8")) as { url: string; api_key: string }
      const response = await fetch(`${connection.url}${path}`, { ...init, headers: { "x-api-key": connection.api_key } })
      return (await response.json()) as Record<string, unknown>
    }))

const pendingCount = (name: string, count: number) =>
  Effect.flatMap(api(`/api/spawned/${name}/pending`), (body) => {
    const pending = body.pending as ReadonlyArray<unknown> | undefined
    return pending?.length === count ? Effect.void : Effect.fail(new Error(`pending of ${name}: ${JSON.stringify(body)}`))
  }).pipe(Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.upTo(Duration.minutes(1)))))

const logsInclude = (name: string, text: string) =>
  Effect.flatMap(run("logs", name), (result) =>
    result.stdout.includes(text) ? Effect.void : Effect.fail(new Error(`logs of ${name} lack ${text}: ${result.stdout}`))
  ).pipe(Effect.retry(Schedule.spaced(Duration.millis(250)).pipe(Schedule.upTo(Duration.minutes(1)))))

/** The `stty -a` part of the screen: raw mode would show `-icanon` and `-echo`. */
const sttyAfter = (session: Session) => {
  const screen = session.screen()
  return screen.slice(screen.lastIndexOf("attach-exit="))
}

const assertCooked = (session: Session) => {
  const modes = sttyAfter(session)
  assert.match(modes, /(^|\s)icanon(\s|$)/m, modes)
  assert.match(modes, /(^|\s)echo(\s|$)/m, modes)
  assert.match(modes, /(^|\s)isig(\s|$)/m, modes)
}

describe("relay-broker attach", () => {
  layer(Layer.scoped(Daemon, daemon), { excludeTestServices: true, timeout: 120_000 })((it) => {
    it.scoped("types into a bash agent, shows its output, holds messages while attached, detaches with Ctrl-] d, restores the terminal", () =>
      Effect.gen(function*() {
        ok(yield* run("spawn", "shell", "bash", "--", "--norc", "--noprofile", "-i"))
        const session = yield* attachSession("shell")
        yield* sees(session, "attached to shell")
        yield* session.type("echo attach-$((6*7))\r")
        yield* sees(session, "attach-42")
        // A message sent while a person is attached waits: pending, not typed.
        ok(yield* run("send", "shell", "held-note"))
        yield* pendingCount("shell", 1)
        assert.notInclude(session.screen(), "held-note")
        yield* session.type("\x1d")
        yield* session.type("d")
        yield* sees(session, "END-OF-SESSION")
        // Typed after the detach.
        yield* pendingCount("shell", 0)
        yield* logsInclude("shell", "held-note")
        assert.strictEqual(yield* session.exited, 0)
        assert.include(session.screen(), "detached from shell")
        assert.include(session.screen(), "attach-exit=0")
        assertCooked(session)
        // The agent lives on.
        const agents = ok(yield* run("agents", "--json")).stdout
        assert.include(agents, "\"shell\"")
        ok(yield* run("release", "shell"))
      }), 180_000)

    it.scoped("an agent released while attached ends the attach and restores the terminal", () =>
      Effect.gen(function*() {
        ok(yield* run("spawn", "leaver", "cat"))
        const session = yield* attachSession("leaver")
        yield* sees(session, "attached to leaver")
        yield* session.type("still-here\r")
        yield* sees(session, "still-here")
        ok(yield* run("release", "leaver"))
        yield* sees(session, "END-OF-SESSION")
        assert.include(session.screen(), "leaver was released")
        assertCooked(session)
      }), 180_000)

    it.scoped("an unknown agent is a one-line error, exit 1, and the terminal is untouched", () =>
      Effect.gen(function*() {
        const session = yield* attachSession("nobody")
        yield* sees(session, "END-OF-SESSION")
        assert.include(session.screen(), "attach-exit=1")
        assert.match(session.screen(), /relay-broker attach: .*nobody/)
        assertCooked(session)
      }), 180_000)
  })
})
