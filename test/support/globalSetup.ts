import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

// Once per run, before any test file: install and build when needed (scripts/ensure-ready.mjs), so
// the end-to-end tests that run dist/main.js never skip for want of a build, and never build in
// parallel from several files.

const root = fileURLToPath(new URL("../..", import.meta.url))

export default function setup(): void {
  execFileSync(process.execPath, [join(root, "scripts", "ensure-ready.mjs")], { cwd: root, stdio: "inherit" })
  if (!existsSync(join(root, "dist", "main.js"))) throw new Error("the build did not produce dist/main.js")
}
