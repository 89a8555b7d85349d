// `up`, `init` and `engine` belong to their own modules; they get their arguments exactly as given.
export type Delegated = "up" | "init" | "engine"

export const isDelegated = (command: string | undefined): command is Delegated =>
  command === "up" || command === "init" || command === "engine"

export const delegate = async (command: Delegated, rest: ReadonlyArray<string>): Promise<void> => {
  const module = command === "up"
    ? await import("./up.js")
    : command === "init"
    ? await import("./init.js")
    : await import("./engine.js")
  await module.run(rest)
}
