// `up`, `init`, `engine` and `mcp` belong to their own modules; they get their arguments exactly as given.
export type Delegated = "up" | "init" | "engine" | "mcp"

export const isDelegated = (command: string | undefined): command is Delegated =>
  command === "up" || command === "init" || command === "engine" || command === "mcp"

export const delegate = async (command: Delegated, rest: ReadonlyArray<string>): Promise<void> => {
  if (command === "mcp") {
    // The agent-relay tool server reads its environment, not arguments.
    const module = await import("../mcp/stdio.js")
    return module.run()
  }
  const module = command === "up"
    ? await import("./up.js")
    : command === "init"
    ? await import("./init.js")
    : await import("./engine.js")
  await module.run(rest)
}
