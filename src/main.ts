#!/usr/bin/env node
// The `relay-broker` executable: picks the command and hands over to its module.
// (To be replaced by one @effect/cli command tree; each command module stays as it is.)
const [command = "up", ...rest] = process.argv.slice(2)

switch (command) {
  case "up":
    await import("./cli/up.js").then((module) => module.run(rest))
    break
  case "engine":
    await import("./cli/engine.js").then((module) => module.run(rest))
    break
  default:
    console.error(`relay-broker: unknown command '${command}' (try: up, engine)`)
    process.exit(2)
}
