#!/usr/bin/env node
// The `relay-broker` executable. The command tree is src/cli/app.ts; `up`, `init` and `engine` (the
// long-running ones) go straight to their modules with their raw arguments, without loading it.
// `up --help` and `init --help` are their own; `engine --help` is the tree's. A client command in
// its plain shape runs on the quick path (cli/quick.ts), which loads neither Effect nor the tree.
import { delegate, isDelegated } from "./cli/delegate.js"

const argv = process.argv.slice(2)
const [first, ...rest] = argv

if (first === "up" || first === "init" || (isDelegated(first) && !rest.some((arg) => arg === "--help" || arg === "-h"))) {
  await delegate(first, rest)
} else {
  const { runQuick } = await import("./cli/quick.js")
  if (!(await runQuick(argv))) {
    const { main } = await import("./cli/app.js")
    main(argv)
  }
}
