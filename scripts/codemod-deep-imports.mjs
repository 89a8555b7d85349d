#!/usr/bin/env node
// `node scripts/codemod-deep-imports.mjs <file or folder>…`: rewrites barrel imports of the Effect
// packages into imports of their single modules, in place:
//   import { Effect, Layer, pipe, type Scope } from "effect"
//   → import * as Effect from "effect/Effect"
//     import * as Layer from "effect/Layer"
//     import { pipe } from "effect/Function"
//     import type * as Scope from "effect/Scope"
// The barrel's own index.js says which name is a module (`export * as X from "./X.js"`) and which a
// plain export (`export { pipe } from "./Function.js"`). Other imports are left as they are.
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const BARRELS = ["effect", "@effect/platform", "@effect/platform-node", "@effect/cli", "@effect/sql", "@effect/sql-sqlite-node", "@effect/experimental"]

/** name → { module, namespace } from the barrel's index.js. */
const barrelMap = (pkg) => {
  const text = readFileSync(join(root, "node_modules", pkg, "dist", "esm", "index.js"), "utf8")
  const map = new Map()
  for (const [, name, file] of text.matchAll(/export \* as (\w+) from "\.\/([\w/]+)\.js"/g)) map.set(name, { module: `${pkg}/${file}`, namespace: true })
  for (const [, names, file] of text.matchAll(/export \{([^}]*)\} from "\.\/([\w/]+)\.js"/g)) {
    for (const name of names.split(",").map((n) => n.trim()).filter(Boolean)) map.set(name, { module: `${pkg}/${file}`, namespace: false })
  }
  return map
}
const maps = new Map(BARRELS.map((pkg) => [pkg, barrelMap(pkg)]))

const IMPORT = /^import (type )?\{([^}]*)\} from "(effect|@effect\/[\w-]+)"\n?/gm

export const rewrite = (source, file = "") =>
  source.replace(IMPORT, (whole, typeOnly, specifiers, pkg) => {
    const map = maps.get(pkg)
    if (map === undefined) return whole
    const lines = []
    const plain = new Map()
    for (const raw of specifiers.split(",").map((s) => s.trim()).filter(Boolean)) {
      const isType = typeOnly !== undefined || raw.startsWith("type ")
      const [name, alias] = raw.replace(/^type /, "").split(/\s+as\s+/)
      const target = map.get(name)
      if (target === undefined) throw new Error(`${file}: ${name} is not exported by the ${pkg} barrel`)
      if (target.namespace) {
        lines.push(`import ${isType ? "type " : ""}* as ${alias ?? name} from "${target.module}"`)
      } else {
        const list = plain.get(target.module) ?? []
        list.push(`${isType && typeOnly === undefined ? "type " : ""}${alias ? `${name} as ${alias}` : name}`)
        plain.set(target.module, list)
      }
    }
    for (const [module, names] of plain) lines.push(`import ${typeOnly ? "type " : ""}{ ${names.join(", ")} } from "${module}"`)
    return `${lines.join("\n")}\n`
  })

const walk = (path) => (statSync(path).isDirectory() ? readdirSync(path).flatMap((entry) => walk(join(path, entry))) : [path])

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let changed = 0
  for (const file of process.argv.slice(2).flatMap(walk).filter((f) => /\.(ts|mts)$/.test(f))) {
    const before = readFileSync(file, "utf8")
    const after = rewrite(before, file)
    if (after !== before) {
      writeFileSync(file, after)
      changed++
    }
  }
  console.error(`[codemod] ${changed} files rewritten`)
}
