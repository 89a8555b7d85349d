// Placeholder until the embedded engine lands (issue: the embedded engine).
export const run = (_argv: ReadonlyArray<string>): void => {
  console.error("relay-broker engine: the embedded engine is not built yet.")
  process.exit(1)
}
