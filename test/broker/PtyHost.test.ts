import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Schedule, Scope, Stream } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { layer as ptyLayer, layerWith, type Pty, PtyHost } from "../../src/broker/PtyHost.js"
import { isAlive } from "../support/processes.js"

const baseEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value
  return env
}

/** Polls the snapshot until `predicate` holds; a guard (not an assertion) stops a hung test. */
const waitForScreen = (pty: Pty, predicate: (screen: string) => boolean) =>
  Effect.repeat(pty.snapshot, { schedule: Schedule.spaced("10 millis"), until: predicate }).pipe(
    Effect.timeoutFail({
      duration: "15 seconds",
      onTimeout: () => new Error("the expected output never appeared")
    }),
    Effect.flatMap(() => pty.snapshot)
  )

// Echoes every byte it receives as hex, in raw mode, after printing READY.
const hexEchoScript = [
  "process.stdin.setRawMode(true)",
  "process.stdin.on('data', (d) => process.stdout.write('<' + d.toString('hex') + '>'))",
  "process.stdout.write('READY\\n')"
].join(";")

const receivedHex = (screen: string) =>
  [...screen.matchAll(/<([0-9a-f]*)>/g)].map((match) => match[1]).join("")
const hex = (text: string) => Buffer.from(text, "utf8").toString("hex")

describe("PtyHost", () => {
  it.scopedLive("cat answers input, and snapshot shows it", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const pty = yield* host.spawn({ command: "cat", args: [], env: baseEnv() })
      assert.isAbove(pty.pid, 0)
      yield* pty.write("hello pty\r")
      const screen = yield* waitForScreen(pty, (text) => text.split("hello pty").length >= 3)
      assert.include(screen, "hello pty")
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("a missing command fails with SpawnFailed NotFound naming it", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const error = yield* Effect.flip(host.spawn({ command: "no-such-command-xyz", args: [], env: baseEnv() }))
      assert.strictEqual(error._tag, "SpawnFailed")
      assert.strictEqual(error.reason, "NotFound")
      assert.strictEqual(error.command, "no-such-command-xyz")
      assert.include(error.message, "no-such-command-xyz")
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("a file that is not executable fails with NotExecutable", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ptyhost-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
      Fs.writeFileSync(Path.join(dir, "plain-file"), "#!/bin/sh\necho hi\n", { mode: 0o644 })
      const host = yield* PtyHost
      const onPath = yield* Effect.flip(
        host.spawn({ command: "plain-file", args: [], env: { ...baseEnv(), PATH: dir } })
      )
      assert.strictEqual(onPath.reason, "NotExecutable")
      assert.strictEqual(onPath.command, "plain-file")
      const byPath = yield* Effect.flip(host.spawn({ command: "./plain-file", args: [], cwd: dir, env: baseEnv() }))
      assert.strictEqual(byPath.reason, "NotExecutable")
      const badCwd = yield* Effect.flip(host.spawn({ command: "cat", args: [], cwd: Path.join(dir, "nope"), env: baseEnv() }))
      assert.strictEqual(badCwd.reason, "InvalidCwd")
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("TERM becomes xterm-256color when dumb or unset, and is kept otherwise", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const show = (env: Record<string, string>) =>
        Effect.gen(function*() {
          const pty = yield* host.spawn({ command: "bash", args: ["-c", "echo TERM=[$TERM]"], env })
          yield* pty.exited
          return yield* pty.snapshot
        })
      const { TERM: _term, ...withoutTerm } = baseEnv()
      assert.include(yield* show({ ...withoutTerm, TERM: "dumb" }), "TERM=[xterm-256color]")
      assert.include(yield* show(withoutTerm), "TERM=[xterm-256color]")
      assert.include(yield* show({ ...withoutTerm, TERM: "screen" }), "TERM=[screen]")
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("exited reports the exit code, and output ends with the process", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const pty = yield* host.spawn({ command: "bash", args: ["-c", "read line; echo got-$line; exit 3"], env: baseEnv() })
      const collected = yield* Effect.fork(Stream.runCollect(pty.output))
      yield* pty.write("abc\r")
      const exit = yield* pty.exited
      assert.deepStrictEqual(exit, { code: 3, signal: null })
      const chunks = yield* collected.await
      assert.strictEqual(chunks._tag, "Success")
      assert.include(yield* pty.snapshot, "got-abc")
      // After the exit, writes fail and a new subscription ends at once.
      const error = yield* Effect.flip(pty.write("x"))
      assert.strictEqual(error._tag, "PtyClosed")
      assert.strictEqual(Chunk.size(yield* Stream.runCollect(pty.output)), 0)
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("kill: SIGTERM, then SIGKILL after the grace; the process is gone", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const stubborn = yield* host.spawn({
        command: "bash",
        args: ["-c", "trap '' TERM HUP; echo trapped; while true; do sleep 0.05; done"],
        env: baseEnv()
      })
      yield* waitForScreen(stubborn, (text) => text.includes("trapped"))
      yield* stubborn.kill("100 millis")
      const exit = yield* stubborn.exited
      assert.strictEqual(exit.signal, 9)
      assert.isFalse(isAlive(stubborn.pid))

      const polite = yield* host.spawn({ command: "cat", args: [], env: baseEnv() })
      yield* polite.kill()
      assert.isNotNull((yield* polite.exited).signal)
      assert.isFalse(isAlive(polite.pid))
      yield* polite.kill() // a second kill is a no-op
    }).pipe(Effect.provide(ptyLayer)))

  it.live("closing the caller's scope kills the process", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const scope = yield* Scope.make()
      const pty = yield* host.spawn({ command: "sleep", args: ["600"], env: baseEnv() }).pipe(Scope.extend(scope))
      assert.isTrue(isAlive(pty.pid))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(isAlive(pty.pid))
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("inject types sanitised bytes: type mode", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const pty = yield* host.spawn({ command: process.execPath, args: ["-e", hexEchoScript], env: baseEnv() })
      yield* waitForScreen(pty, (text) => text.includes("READY"))
      yield* pty.inject("hi\x1b[201~\x03 there\r\x1b]0;t\x07", { input: "type", steer: false })
      const screen = yield* waitForScreen(pty, (text) => receivedHex(text).endsWith("0d"))
      assert.strictEqual(receivedHex(screen), hex("hi[201~ there\n]0;t\r"))
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("inject: paste mode wraps in a bracketed paste; steer sends ESC ESC first", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const pty = yield* host.spawn({ command: process.execPath, args: ["-e", hexEchoScript], env: baseEnv() })
      yield* waitForScreen(pty, (text) => text.includes("READY"))
      yield* pty.inject("line1\nline2", { input: "paste", steer: true })
      const screen = yield* waitForScreen(pty, (text) => receivedHex(text).endsWith("0d"))
      assert.strictEqual(receivedHex(screen), hex("\x1b\x1b\x1b[200~line1\nline2\x1b[201~\r"))
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("concurrent injections do not interleave", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const pty = yield* host.spawn({ command: process.execPath, args: ["-e", hexEchoScript], env: baseEnv() })
      yield* waitForScreen(pty, (text) => text.includes("READY"))
      yield* Effect.all([
        pty.inject("aaaa", { input: "type", steer: false }),
        pty.inject("bbbb", { input: "type", steer: false })
      ], { concurrency: "unbounded" })
      const screen = yield* waitForScreen(pty, (text) => receivedHex(text).split("0d").length === 3)
      const received = Buffer.from(receivedHex(screen), "hex").toString("utf8")
      assert.oneOf(received, ["aaaa\rbbbb\r", "bbbb\raaaa\r"])
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("resize changes the terminal size the child sees", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const pty = yield* host.spawn({
        command: "bash",
        args: ["-c", "echo size=$(stty size); read x; echo size=$(stty size)"],
        env: baseEnv(),
        cols: 100,
        rows: 30
      })
      yield* waitForScreen(pty, (text) => text.includes("size=30 100"))
      yield* pty.resize(120, 40)
      yield* pty.write("\r")
      yield* waitForScreen(pty, (text) => text.includes("size=40 120"))
    }).pipe(Effect.provide(ptyLayer)))

  it.scopedLive("the emulator's scrollback is bounded and keeps the tail", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      const pty = yield* host.spawn({
        command: "bash",
        // It waits before exiting: node-pty can drop the last output of a process that exits at once.
        args: ["-c", "for i in $(seq 1 3000); do echo line$i; done; read x"],
        env: baseEnv()
      })
      const screen = yield* waitForScreen(pty, (text) => text.includes("line3000"))
      assert.isAtMost(screen.split("\n").length, 100 + 24)
      assert.include(screen, "line3000")
      assert.notInclude(screen, "line1\n")
    }).pipe(Effect.provide(layerWith({ scrollback: 100 }))))

  it.scopedLive("a full-screen program is read as a terminal shows it: alternate screen, cursor moves, erased lines, modes", () =>
    Effect.gen(function*() {
      const host = yield* PtyHost
      // Draws a box on the alternate screen by moving the cursor (no spaces printed between words),
      // overwrites a line, turns on bracketed paste, parks the cursor at row 3, column 5.
      const script = [
        "process.stdout.write('before\\r\\n')",
        "process.stdout.write('\\x1b[?1049h\\x1b[2J\\x1b[1;1Hhello\\x1b[1;8Hworld\\x1b[2;1Hdraft\\x1b[2;1H\\x1b[Kfinal')",
        "process.stdout.write('\\x1b[?2004h\\x1b]7501;state=idle\\x1b\\\\\\x1b[3;6H')",
        "setInterval(() => {}, 1000)"
      ].join(";")
      const pty = yield* host.spawn({ command: process.execPath, args: ["-e", script], env: baseEnv() })
      const view = yield* pty.screen.pipe(
        Effect.repeat({ schedule: Schedule.spaced("10 millis"), until: (view) => view.bracketedPaste && view.cursor[0] === 2 }),
        Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("the screen never settled") }),
        Effect.zipRight(pty.screen)
      )
      assert.strictEqual(view.lines[0], "hello  world")
      assert.strictEqual(view.lines[1], "final")
      assert.deepStrictEqual(view.cursor, [2, 5])
      assert.isTrue(view.alternateScreen)
      assert.strictEqual(view.osc.get(7501), "state=idle")
      assert.notInclude(view.lines.join("\n"), "before")
      const ansi = yield* pty.ansi
      assert.include(ansi, "hello")
      assert.include(ansi, "\x1b[")
      yield* pty.resize(100, 30)
      const resized = yield* pty.screen
      assert.deepStrictEqual([resized.cols, resized.rows], [100, 30])
    }).pipe(Effect.provide(ptyLayer)))
})
