// Percentiles and small summaries of samples (milliseconds unless said otherwise).

/** The q-quantile (0..1) of sorted numbers, nearest-rank; undefined when there are none. */
export const quantile = (sorted, q) => {
  if (sorted.length === 0) return undefined
  const rank = Math.ceil(q * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

/** p50/p90/p99/max/mean of samples, plus the count. */
export const summarize = (samples) => {
  const sorted = Float64Array.from(samples).sort()
  const n = sorted.length
  if (n === 0) return { n: 0 }
  let sum = 0
  for (const x of sorted) sum += x
  return {
    n,
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
    max: sorted[n - 1],
    mean: sum / n
  }
}

export const median = (samples) => quantile(Float64Array.from(samples).sort(), 0.5)
