// The printed table: one row per figure, columns us / upstream / ratio.

const formatValue = (value, unit) => {
  if (value === undefined || value === null || Number.isNaN(value)) return "n/a"
  if (typeof value === "string") return value
  if (unit === "ops/s" || unit === "msg/s") return `${Math.round(value).toLocaleString("en-US")} ${unit}`
  if (unit === "MB") return `${value.toFixed(1)} MB`
  if (unit === "ms") return value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(2)} ms`
  return `${value} ${unit}`
}

/** upstream ÷ us for "lower is better" figures, us ÷ upstream for "higher is better": >1 means we win. */
export const ratioOf = (row) => {
  const { us, upstream, higherIsBetter } = row
  if (typeof us !== "number" || typeof upstream !== "number" || us <= 0 || upstream <= 0) return undefined
  return higherIsBetter ? us / upstream : upstream / us
}

const formatRatio = (ratio) => (ratio === undefined ? "n/a" : `${ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(1)}×`)

/** Renders rows `{label, unit, us, upstream, higherIsBetter?, peer?, goal?}` as a fixed-width text table. */
export const renderTable = (rows) => {
  const header = ["figure", "us", "upstream", "ratio", "goal"]
  const body = rows.map((row) => [
    row.label,
    formatValue(row.us, row.unit),
    row.peer === false ? "—" : formatValue(row.upstream, row.unit),
    row.peer === false ? "" : formatRatio(ratioOf(row)),
    row.goal ?? ""
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i].length)))
  const line = (cells) => cells.map((cell, i) => (i === 0 || i === 4 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  ").trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n")
}
