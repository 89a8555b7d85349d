// The upstream Rust broker, installed on first use into a cache folder (never a package dependency).
import { execFile } from "node:child_process"
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"

export const UPSTREAM_VERSION = "9.1.6"

const run = (command, args, options) =>
  new Promise((resolve, reject) => {
    execFile(command, args, { encoding: "utf8", ...options }, (error, stdout, stderr) =>
      error ? reject(Object.assign(error, { stderr })) : resolve(stdout)
    )
  })

const versionOf = async (binary) => {
  try {
    return (await run(binary, ["--version"], { timeout: 10000 })).trim()
  } catch {
    return undefined
  }
}

/**
 * The path of `agent-relay-broker` v9.1.6: `explicit` when given, else the cached install, else a
 * fresh `npm install` into `<root>/.cache/upstream-broker`. Resolves `{ binary }` or `{ reason }`.
 */
export const ensureUpstream = async ({ root, explicit, installTimeoutMs }) => {
  if (explicit) {
    const version = await versionOf(explicit)
    return version ? { binary: explicit, version } : { reason: `${explicit} --version failed` }
  }
  const pkg = `@agent-relay/broker-${process.platform}-${process.arch}`
  const prefix = join(root, ".cache", "upstream-broker")
  const binary = join(prefix, "node_modules", ...pkg.split("/"), "bin", process.platform === "win32" ? "agent-relay-broker.exe" : "agent-relay-broker")
  if (existsSync(binary)) {
    const version = await versionOf(binary)
    if (version?.endsWith(UPSTREAM_VERSION)) return { binary, version }
  }
  mkdirSync(prefix, { recursive: true })
  try {
    const npm = process.platform === "win32" ? "npm.cmd" : "npm"
    // Few, short retries: without a network this must give up well within the quick run's minute.
    const fetchTimeout = String(Math.max(2000, Math.floor(installTimeoutMs / 2)))
    await run(npm, ["install", "--prefix", prefix, "--no-save", "--no-audit", "--no-fund", "--no-package-lock", "--fetch-retries=1", "--fetch-retry-mintimeout=1000", "--fetch-retry-maxtimeout=2000", `--fetch-timeout=${fetchTimeout}`, `${pkg}@${UPSTREAM_VERSION}`], {
      timeout: installTimeoutMs
    })
  } catch (error) {
    const lines = (error.stderr || error.message || String(error)).trim().split("\n").filter((line) => !/^npm warn/i.test(line))
    const errors = lines.filter((line) => /^npm error/i.test(line))
    const detail = error.killed ? `npm install timed out after ${installTimeoutMs} ms` : (errors.length > 0 ? errors.slice(0, 2) : lines.slice(-2)).join(" ")
    return { reason: `could not install ${pkg}@${UPSTREAM_VERSION}: ${detail}` }
  }
  const version = existsSync(binary) ? await versionOf(binary) : undefined
  return version ? { binary, version } : { reason: `${pkg}@${UPSTREAM_VERSION} installed, but ${binary} does not run here` }
}
