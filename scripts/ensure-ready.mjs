#!/usr/bin/env node
// The `pre` step of `npm start`, `npm test` and `npm run bench`: install when node_modules is
// missing or older than the lock file, and build (scripts/build.mjs) when dist/ is missing or older
// than any source.
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const at = (...parts) => join(root, ...parts)
const mtime = (path) => (existsSync(path) ? statSync(path).mtimeMs : -1)

const newestUnder = (dir) => {
  let newest = -1
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestUnder(path) : statSync(path).mtimeMs)
  }
  return newest
}

const run = (command, args) => {
  console.error(`[ensure-ready] ${command} ${args.join(" ")}`)
  execFileSync(command, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"] })
}

const installMarker = at("node_modules", ".package-lock.json")
// Compared with the lock file, not package.json: a change of scripts is not a change of
// dependencies, and `npm install <pkg>` rewrites the lock.
// `npm install` from the lock, not `npm ci`: the pinned upstream test clients declare optional
// per-platform broker binaries that the registry does not serve for every platform, so the lock
// cannot list them and `npm ci` refuses it as out of sync. `--no-save` keeps the lock as committed.
if (mtime(installMarker) < mtime(at("package-lock.json"))) {
  run("npm", ["install", "--no-save", "--no-audit", "--no-fund"])
}

const builtMarker = at("dist", "main.js")
const sourcesChanged = Math.max(
  newestUnder(at("src")),
  mtime(at("tsconfig.build.json")),
  mtime(at("tsconfig.base.json")),
  mtime(at("scripts", "build.mjs")),
  mtime(installMarker)
)
// tsc for the library's modules and esbuild for the executable's bundles (scripts/build.mjs).
if (mtime(builtMarker) < sourcesChanged || !existsSync(at("dist", "bin"))) {
  run(process.execPath, [at("scripts", "build.mjs")])
}
