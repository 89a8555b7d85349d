import { chmodSync, mkdirSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"

// Stand-in harnesses installed as programs on a PATH directory a test makes, so that the broker
// resolves `claude` (or `codex`, `gemini`, ...) to them and treats them as that harness.

export const standinTui = resolve(import.meta.dirname, "..", "fixtures", "standin-tui.mjs")

/** Writes `<binDir>/<harness>` running `script` with this node; returns the directory (for PATH). */
export const installStandin = (binDir: string, harness: string, script = standinTui): string => {
  mkdirSync(binDir, { recursive: true })
  const file = join(binDir, harness)
  writeFileSync(file, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(script)} "$@"\n`)
  chmodSync(file, 0o755)
  return binDir
}

/** PATH with `binDir` first. */
export const pathWith = (binDir: string): string => [binDir, process.env.PATH ?? ""].join(":")
