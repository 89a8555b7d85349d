import { assert, describe, it } from "@effect/vitest"
import { echoed, echoEvidence, knownTuis, readinessProfile } from "../../src/broker/readinessTable.js"
import { plainView, type ScreenView } from "../../src/broker/TerminalScreen.js"

// The per-harness table: ready signs, blocked screens, and what counts as an echo.

const view = (text: string, extra: Partial<ScreenView> = {}): ScreenView => ({ ...plainView(text), ...extra })

describe("readiness table", () => {
  it("claude and gemini are ready with bracketed paste on and their prompt; not on the splash", () => {
    const claude = readinessProfile("/usr/local/bin/claude")
    assert.strictEqual(claude.harness, "claude")
    assert.isFalse(claude.ready(view("✻ Welcome to Claude Code\n\n  loading…", { bracketedPaste: true })))
    assert.isFalse(claude.ready(view("✻ Welcome\n❯ ")))
    assert.isTrue(claude.ready(view("✻ Welcome\n╭──────╮\n│ ❯      │\n╰──────╯", { bracketedPaste: true })))
    const gemini = readinessProfile("gemini")
    assert.isTrue(gemini.ready(view(">   Type your message or @path/to/file", { bracketedPaste: true })))
    assert.isFalse(gemini.ready(view(">   Type your message or @path/to/file")))
  })

  it("codex is ready on its idle OSC; opencode on its prompt frame (cursor colour, cursor shown), not on bracketed paste", () => {
    const codex = readinessProfile("codex")
    assert.isTrue(codex.ready(view("", { osc: new Map([[7501, "state=idle:app=codex"]]) })))
    assert.isFalse(codex.ready(view("", { bracketedPaste: true })))
    const opencode = readinessProfile("opencode")
    assert.isFalse(opencode.ready(view("", { bracketedPaste: true })))
    assert.isFalse(opencode.ready(view("  ask anything", { osc: new Map([[12, "#eeeeee"]]), cursorVisible: false })))
    assert.isTrue(opencode.ready(view("  ask anything", { osc: new Map([[12, "#eeeeee"]]), cursorVisible: true })))
  })

  it("login, trust and onboarding screens are blocked", () => {
    assert.isTrue(readinessProfile("claude").blocked(view("Select login method:\n 1. Claude account")))
    assert.isTrue(readinessProfile("claude").blocked(view("Do you trust the files in this folder?")))
    assert.isTrue(readinessProfile("codex").blocked(view("  Sign in with ChatGPT to use Codex")))
    assert.isTrue(readinessProfile("gemini").blocked(view("Do you trust this folder?")))
    assert.isFalse(readinessProfile("claude").blocked(view("❯ sign the letter please")))
  })

  it("line programs and unknown commands are ready at once; every known TUI has its row", () => {
    for (const command of ["bash", "cat", "node", "/usr/bin/python3"]) {
      const profile = readinessProfile(command)
      assert.strictEqual(profile.kind, "line")
      assert.isTrue(profile.ready(view("")))
    }
    for (const harness of ["claude", "codex", "gemini", "opencode", "grok", "droid", "goose", "aider", "cursor-agent"]) {
      assert.include(knownTuis, harness)
      assert.strictEqual(readinessProfile(harness).kind, "tui")
    }
  })

  it("an echo is one more copy of the text's tail (spaces, wrapping and box borders ignored) or a new paste placeholder", () => {
    const claude = readinessProfile("claude")
    const text = "Relay message from alice [ws / m1]: please run the tests now"
    const before = echoEvidence(claude, view("❯ "), text)
    // Wrapped inside a box, the cursor moved between words instead of printing spaces.
    const wrapped = echoEvidence(claude, view("│ ❯ Relay message from alice [ws / m1]: please run  │\n│ the   tests now │"), text)
    assert.isTrue(echoed(before, wrapped))
    assert.isFalse(echoed(before, echoEvidence(claude, view("❯ Relay message from alice"), text)))
    // The same text already on screen (a previous message) is not an echo of this one.
    const history = echoEvidence(claude, view(`> ${text}\n❯ `), text)
    assert.isFalse(echoed(history, history))
    const long = "line\n".repeat(30)
    assert.isTrue(echoed(echoEvidence(claude, view("❯ [Pasted text #1 +29 lines]"), long), echoEvidence(claude, view("❯ [Pasted text #1 +29 lines] [Pasted text #2 +29 lines]"), long)))
    assert.isTrue(echoed(echoEvidence(readinessProfile("codex"), view("› "), long), echoEvidence(readinessProfile("codex"), view("› [Pasted Content 150 chars]"), long)))
    assert.isTrue(echoed(echoEvidence(readinessProfile("gemini"), view("> "), long), echoEvidence(readinessProfile("gemini"), view("> [Pasted Text: 30 lines]"), long)))
    assert.isTrue(echoed(echoEvidence(readinessProfile("opencode"), view(""), long), echoEvidence(readinessProfile("opencode"), view("[Pasted ~30 lines]"), long)))
  })
})
