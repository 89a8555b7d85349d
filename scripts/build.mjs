#!/usr/bin/env node
// `npm run build` (and scripts/ensure-ready.mjs when dist/ is stale): two outputs in dist/.
// 1. tsc (tsconfig.build.json): every src module as .js + .d.ts, for the package's `exports`
//    (library users import modules, not bundles).
// 2. esbuild: the `relay-broker` executable. dist/main.js is src/main.ts, the small argv dispatcher,
//    bundled alone; every src module the dispatcher reaches through a dynamic `import()` (the daemon
//    `up`, `engine`, the client commands' quick path cli/quick.ts and their tree in cli/app.ts, and
//    whatever is added there later, such as `init` or `mcp`) is a *command entry*, bundled on its own
//    into dist/bin/<name>.js. A command loads only its own bundle: a client command never loads the
//    daemon, the engine or SQLite; on its quick path not even Effect; @effect/cli only loads with
//    the client commands' tree. Inside a command's bundle, its own lazy
//    `import()`s (up's embedded engine) are split into dist/bin/chunks/. Native modules stay external.
// dist/main.js is written last (ensure-ready's staleness marker). Exits non-zero when either step
// failed; tsc still emits when a file does not type-check, and the bundles are built anyway.
import { spawn } from "node:child_process"
import { createRequire } from "node:module"
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { basename, dirname, join, relative, sep } from "node:path"
import { fileURLToPath } from "node:url"
import * as esbuild from "esbuild"

const root = fileURLToPath(new URL("..", import.meta.url))
const at = (...parts) => join(root, ...parts)
const srcDir = at("src") + sep
const binDir = at("dist", "bin")
const version = JSON.parse(readFileSync(at("package.json"), "utf8")).version

/** Loaded by Node at run time: native addons, and the optional native peers of bundled packages. */
const external = ["node-pty", "better-sqlite3", "bufferutil", "utf-8-validate"]

/**
 * CommonJS packages that are reached by a bundled module at load time but used only on paths this
 * program does not take at startup (undici: @effect/platform-node's HTTP server imports its undici
 * client; yaml/toml/ini: @effect/cli's config-file arguments). Each becomes a stub whose functions
 * load the real package on first call, so it costs nothing until then. Only its functions (and
 * classes) are exported: esbuild warns at build time when bundled code reads any other name.
 */
const lazyPackages = ["undici", "yaml", "toml", "ini", "mime"]

const lazyStub = (pkg) => {
  const requireFromBin = createRequire(join(binDir, "x.js"))
  const real = requireFromBin(pkg)
  const names = Object.keys(real).filter((name) => /^[A-Za-z_$][\w$]*$/.test(name) && name !== "default" && typeof real[name] === "function")
  return [
    'import { createRequire } from "node:module"',
    "let real",
    `const load = () => (real ??= createRequire(import.meta.url)(${JSON.stringify(pkg)}))`,
    ...names.map((name) =>
      `export function ${name}(...args) { return new.target ? Reflect.construct(load().${name}, args, new.target) : load().${name}.apply(this, args) }`),
    "export default new Proxy({}, { get: (_, key) => load()[key] })"
  ].join("\n")
}

const lazy = {
  name: "lazy-packages",
  setup(build) {
    const stubs = new Map(lazyPackages.map((pkg) => [pkg, lazyStub(pkg)]))
    build.onResolve({ filter: new RegExp(`^(${[...stubs.keys()].join("|")})$`) }, (args) => ({ path: args.path, namespace: "lazy-package" }))
    build.onLoad({ filter: /.*/, namespace: "lazy-package" }, (args) => ({ contents: stubs.get(args.path), loader: "js", resolveDir: root }))
  }
}

/**
 * fast-check is reached through effect/Schema (its arbitraries, for property tests) and never called
 * by this program: a stub in its place keeps 58 KB of code (and their evaluation) out of every start.
 * The stub's function throws if it ever is called.
 */
const withoutFastCheck = {
  name: "without-fast-check",
  setup(build) {
    build.onResolve({ filter: /^fast-check$/ }, () => ({ path: "fast-check", namespace: "unbundled" }))
    build.onLoad({ filter: /.*/, namespace: "unbundled" }, () => ({
      contents: 'export function array() { throw new Error("fast-check is not part of the relay-broker bundles (property tests import it directly)") }',
      loader: "js"
    }))
  }
}

/**
 * The stdio tool server (`relay-broker mcp`, one process per agent) leaves out the SDK's ajv-based
 * JSON Schema validator: it serves elicitation answers only, the server asks for none and passes its
 * own validator (src/mcp/server.ts). ~1 MB less RSS; its identifiers are minified too (~0.2 MB).
 */
const withoutAjv = {
  name: "without-ajv",
  setup(build) {
    build.onResolve({ filter: /[\\/]validation[\\/]ajv-provider\.js$/ }, (args) =>
      args.importer.includes("@modelcontextprotocol") ? { path: "ajv-provider", namespace: "without-ajv" } : undefined)
    build.onLoad({ filter: /.*/, namespace: "without-ajv" }, () => ({
      contents: 'export class AjvJsonSchemaValidator { constructor() { throw new Error("ajv is not bundled with the stdio tool server") } }',
      loader: "js"
    }))
  }
}
const entryOptions = { stdio: { minifyIdentifiers: true, extraPlugins: [withoutAjv] } }

// An import of another command entry is written as this placeholder, then rewritten per output file.
const ENTRY_MARK = "__relay_command_entry__/"

const common = {
  absWorkingDir: root,
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  external,
  define: { __RELAY_BROKER_VERSION__: JSON.stringify(version) },
  // CommonJS packages inside an ESM bundle `require` Node's built-ins and the externals.
  banner: { js: 'import { createRequire as __bundleCreateRequire } from "node:module"; const require = __bundleCreateRequire(import.meta.url);' },
  minifySyntax: true,
  minifyWhitespace: true,
  sourcemap: "linked",
  legalComments: "none",
  logLevel: "warning",
  metafile: true
}

/**
 * Resolves relative imports itself: one that lands on a command entry (other than the bundle's own)
 * stays external, as the entry's placeholder; with `discover`, a dynamic import of any src module
 * from the dispatcher makes that module a command entry.
 */
const commandEntries = (entries, { own, discover }) => ({
  name: "command-entries",
  setup(build) {
    build.onResolve({ filter: /^\.\.?\// }, async (args) => {
      if (args.pluginData?.resolving) return undefined
      const resolved = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: { resolving: true } })
      if (resolved.errors.length > 0 || resolved.external) return resolved.errors.length > 0 ? { errors: resolved.errors } : resolved
      const file = resolved.path
      if (file !== own && discover && args.kind === "dynamic-import" && file.startsWith(srcDir) && !entries.has(file)) {
        entries.set(file, entryName(entries, file))
      }
      if (file !== own && entries.has(file)) return { path: `${ENTRY_MARK}${entries.get(file)}.js`, external: true }
      return { path: file }
    })
  }
})

/** `up`, `engine`, `app`, …: the module's file name, or `<folder>-<file>` when that is taken. */
const entryName = (entries, file) => {
  const name = basename(file).replace(/\.[cm]?[jt]s$/, "")
  const taken = new Set(entries.values())
  return taken.has(name) ? `${basename(dirname(file))}-${name}` : name
}

/** Rewrites the entry placeholders of every written .js file to paths relative to that file. */
const linkEntries = (outputFiles) => {
  for (const file of outputFiles) {
    if (!file.endsWith(".js")) continue
    const text = readFileSync(file, "utf8")
    if (!text.includes(ENTRY_MARK)) continue
    const linked = text.replaceAll(new RegExp(`${ENTRY_MARK}([\\w-]+\\.js)`, "g"), (_, name) => {
      const path = relative(dirname(file), join(binDir, name)).split(sep).join("/")
      return path.startsWith(".") ? path : `./${path}`
    })
    writeFileSync(file, linked)
  }
}

/** tsc, as a child process: resolves with its exit status. */
const typeScript = () =>
  new Promise((resolve) => {
    const tsc = spawn(process.execPath, [at("node_modules", "typescript", "bin", "tsc"), "-p", at("tsconfig.build.json")], { stdio: "inherit" })
    tsc.on("exit", (code) => resolve(code ?? 1))
    tsc.on("error", () => resolve(1))
  })

/** The command bundles into dist/bin/; resolves with the dispatcher's output, to write once tsc is done. */
const bundle = async () => {
  const entries = new Map()
  const dispatcher = at("src", "main.ts")
  const dispatcherOptions = { ...common, entryPoints: { main: dispatcher }, outdir: at("dist"), entryNames: "[name]", write: false }
  // Discovery: the dispatcher alone; its dynamic imports become the command entries.
  await esbuild.build({ ...dispatcherOptions, plugins: [commandEntries(entries, { own: dispatcher, discover: true })] })

  rmSync(binDir, { recursive: true, force: true })
  const results = await Promise.all([...entries].map(([file, name]) => {
    const { extraPlugins = [], ...options } = entryOptions[name] ?? {}
    return esbuild.build({
      ...common,
      ...options,
      entryPoints: { [name]: file },
      outdir: binDir,
      entryNames: "[name]",
      chunkNames: "chunks/[name]-[hash]",
      splitting: true,
      plugins: [...extraPlugins, commandEntries(entries, { own: file, discover: false }), lazy, withoutFastCheck]
    })
  }))
  const written = results.flatMap((result) => Object.keys(result.metafile.outputs).map((output) => at(output)))
  linkEntries(written)
  const main = await esbuild.build({ ...dispatcherOptions, plugins: [commandEntries(entries, { own: dispatcher, discover: false })] })
  if (process.argv.includes("--metafile")) {
    const metafiles = Object.fromEntries([...[...entries.values()].map((name, index) => [name, results[index].metafile]), ["main", main.metafile]])
    writeFileSync(at("dist", "bundles.meta.json"), JSON.stringify(metafiles))
  }
  return {
    built: [...entries].map(([file, name]) => `${name} (${relative(root, file)})`),
    writeDispatcher: () => {
      for (const output of main.outputFiles) {
        mkdirSync(dirname(output.path), { recursive: true })
        writeFileSync(output.path, output.text)
      }
      linkEntries([at("dist", "main.js")])
    }
  }
}

// tsc and the bundles run side by side; tsc emits a dist/main.js of its own, so the dispatcher
// bundle is written after it, last.
// `--bundles-only`: skip tsc (a quicker rebuild of dist/main.js and dist/bin/ while measuring them).
// It leaves tsc's modules in dist/ as they were, yet dist/main.js now looks fresh to ensure-ready:
// run a full build before tests that import dist/ modules (the bench's micro workload does).
const [typeScriptStatus, bundled] = await Promise.all([
  process.argv.includes("--bundles-only") ? 0 : typeScript(),
  bundle().catch((error) => {
    console.error(`[build] esbuild failed: ${error instanceof Error ? error.message : error}`)
    return undefined
  })
])
if (bundled === undefined) process.exit(1)
bundled.writeDispatcher()
// The package's `relay-broker` bin (upstream clients execute it directly: BROKER_BINARY_PATH, AGENT_RELAY_BIN).
chmodSync(at("dist", "main.js"), 0o755)
console.error(`[build] dist/main.js → dist/bin/: ${bundled.built.join(", ")}`)
process.exit(typeScriptStatus)
