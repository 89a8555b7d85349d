// Tolerant readers and plain-text layout for what the daemon answers: its JSON is read field by
// field, so a renamed or missing field prints as "-" instead of failing the command.

export const record = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {}

export const list = (value: unknown): ReadonlyArray<unknown> => (Array.isArray(value) ? value : [])

/** The first of `keys` that holds a value, from `value`. */
export const pick = (value: unknown, ...keys: ReadonlyArray<string>): unknown => {
  const fields = record(value)
  for (const key of keys) {
    const field = fields[key]
    if (field !== undefined && field !== null) return field
  }
  return undefined
}

export const text = (value: unknown, fallback = "-"): string => {
  if (value === undefined || value === null || value === "") return fallback
  if (typeof value === "string") return value
  if (typeof value === "number" || typeof value === "boolean") return String(value)
  return JSON.stringify(value)
}

export const numberOr = (value: unknown, fallback: number): number =>
  typeof value === "number" && Number.isFinite(value) ? value : fallback

/** An instant (epoch ms, or an ISO string) as "12s ago"; "-" when unknown. */
export const ago = (value: unknown, now = Date.now()): string => {
  const at = typeof value === "number" ? value : typeof value === "string" ? Date.parse(value) : Number.NaN
  if (!Number.isFinite(at) || at <= 0) return "-"
  const seconds = Math.max(0, Math.round((now - at) / 1000))
  if (seconds < 60) return `${seconds}s ago`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h ago`
  return `${Math.floor(seconds / 86_400)}d ago`
}

/** Left-aligned columns separated by two spaces, with a header row. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join("  ")
  return [line(header), ...rows.map(line)].join("\n")
}

/** `label  value` lines with the labels padded to one width. */
export const fields = (entries: ReadonlyArray<readonly [string, string]>): string => {
  const width = Math.max(...entries.map(([label]) => label.length))
  return entries.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join("\n")
}

export const json = (value: unknown): string => JSON.stringify(value, null, 2)
