import { assert, describe, it } from "@effect/vitest"
import { parse, specs } from "../../src/cli/quick.js"

// Which command lines the quick path takes (src/cli/quick.ts): only the plain shape; anything the
// full parser might read otherwise is left to it (`undefined`).

const quick = (command: keyof typeof specs, ...argv: ReadonlyArray<string>) => parse(specs[command]!, argv)

describe("the quick path's command lines", () => {
  it("takes options anywhere, each once, as --name value", () => {
    const parsed = quick("send", "--state-dir", "/s", "alice", "--from", "bob", "hello", "--steer")
    assert.deepStrictEqual(parsed?.args, ["alice", "hello"])
    assert.deepStrictEqual(parsed?.values, { "state-dir": "/s", from: "bob" })
    assert.isTrue(parsed?.switches.has("steer"))
  })

  it("reads everything after the first -- as arguments, as the full parser does", () => {
    assert.deepStrictEqual(quick("spawn", "w", "sh", "--", "-c", "echo", "--", "x")?.args, ["w", "sh", "-c", "echo", "--", "x"])
    assert.deepStrictEqual(quick("spawn", "w", "sh", "x", "--", "y")?.args, ["w", "sh", "x", "y"])
    assert.deepStrictEqual(quick("send", "alice", "--", "--not-an-option")?.args, ["alice", "--not-an-option"])
  })

  it("leaves every other shape to the full parser", () => {
    const others: ReadonlyArray<readonly [keyof typeof specs, ReadonlyArray<string>]> = [
      ["agents", ["--help"]],
      ["agents", ["-h"]],
      ["agents", ["--state-dir=/s"]],
      ["agents", ["--json", "false"]],
      ["agents", ["--json", "--json"]],
      ["agents", ["--state-dir", "/a", "--state-dir", "/b"]],
      ["agents", ["--colour"]],
      ["agents", ["extra"]],
      ["status", ["--url"]],
      ["send", ["alice"]],
      ["send", ["alice", "hi", "extra"]],
      ["send", ["alice", "-x"]],
      ["send", ["alice", "hi", "--from", "--steer"]],
      ["spawn", ["w"]],
      ["logs", ["w", "-f"]],
      ["logs", ["w", "--follow"]],
      ["release", []]
    ]
    for (const [command, argv] of others) assert.isUndefined(quick(command, ...argv), `${command} ${argv.join(" ")}`)
  })
})
