/** Small statistics for the benchmarks. */

/** The p-th percentile (nearest rank) of xs. */
export const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
