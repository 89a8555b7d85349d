import { assert, describe, it } from "@effect/vitest"
import { knownCli, resolveHarness, splitCommandLine } from "../../src/broker/harness.js"

describe("harness", () => {
  it("known CLIs get upstream's permission-bypass flag and paste mode", () => {
    assert.deepStrictEqual(resolveHarness({ cli: "claude" }).args, ["--dangerously-skip-permissions"])
    assert.deepStrictEqual(resolveHarness({ cli: "codex" }).args, ["--dangerously-bypass-approvals-and-sandbox"])
    assert.deepStrictEqual(resolveHarness({ cli: "gemini" }).args, ["--yolo"])
    assert.deepStrictEqual(resolveHarness({ cli: "grok" }).args, ["--always-approve"])
    assert.strictEqual(resolveHarness({ cli: "claude" }).injectInput, "paste")
    assert.strictEqual(resolveHarness({ cli: "/opt/bin/codex" }).known, "codex")
  })

  it("the caller's args win when they already settle permissions", () => {
    assert.deepStrictEqual(resolveHarness({ cli: "claude", args: ["--permission-mode", "plan"] }).args, [
      "--permission-mode",
      "plan"
    ])
    assert.deepStrictEqual(resolveHarness({ cli: "claude", args: ["--dangerously-skip-permissions"] }).args, [
      "--dangerously-skip-permissions"
    ])
    assert.deepStrictEqual(resolveHarness({ cli: "codex", args: ["--full-auto"] }).args, ["--full-auto"])
    assert.deepStrictEqual(resolveHarness({ cli: "codex", args: ["--sandbox=read-only"] }).args, ["--sandbox=read-only"])
    assert.deepStrictEqual(resolveHarness({ cli: "gemini", args: ["--approval-mode", "default"] }).args, [
      "--approval-mode",
      "default"
    ])
  })

  it("the model is passed unless the args name one; inline args are kept in order", () => {
    assert.deepStrictEqual(resolveHarness({ cli: "claude --verbose", args: ["-p"], model: "opus" }).args, [
      "--dangerously-skip-permissions",
      "--model",
      "opus",
      "--verbose",
      "-p"
    ])
    assert.deepStrictEqual(resolveHarness({ cli: "codex", args: ["-m", "o3"], model: "gpt" }).args, [
      "--dangerously-bypass-approvals-and-sandbox",
      "-m",
      "o3"
    ])
  })

  it("claude's env drops CLAUDECODE and disables suggestions and the updater", () => {
    const launch = resolveHarness({ cli: "claude" })
    assert.deepStrictEqual(launch.unsetEnv, ["CLAUDECODE"])
    assert.strictEqual(launch.env.DISABLE_AUTOUPDATER, "1")
  })

  it("any other command runs as given, typed into line by line", () => {
    const launch = resolveHarness({ cli: "bash", args: ["--norc"], model: "ignored" })
    assert.deepStrictEqual(launch, {
      command: "bash",
      args: ["--norc"],
      known: undefined,
      injectInput: "type",
      env: {},
      unsetEnv: []
    })
    assert.strictEqual(knownCli("claude-wrapper"), undefined)
    assert.strictEqual(resolveHarness({ cli: "node scripts/echo-agent.mjs" }).command, "node")
  })

  it("splitCommandLine honours quotes and escapes", () => {
    assert.deepStrictEqual(splitCommandLine(`node  "my script.js" 'a b' c\\ d ""`), [
      "node",
      "my script.js",
      "a b",
      "c d",
      ""
    ])
    assert.deepStrictEqual(splitCommandLine(`say "he said \\"hi\\""`), ["say", "he said \"hi\""])
  })
})
