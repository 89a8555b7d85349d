// `up` and `engine` belong to their own modules; they get their arguments exactly as given.
export type Delegated = "up" | "engine"

export const isDelegated = (command: string | undefined): command is Delegated => command === "up" || command === "engine"

export const delegate = async (command: Delegated, rest: ReadonlyArray<string>): Promise<void> => {
  const module = command === "up" ? await import("./up.js") : await import("./engine.js")
  await module.run(rest)
}
