// Placeholder until the daemon lands (issue: agents and the daemon).
export const run = (_argv: ReadonlyArray<string>): void => {
  console.error("relay-broker up: the daemon is not built yet.")
  process.exit(1)
}
