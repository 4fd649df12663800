/**
 * Next-token selection: greedy argmax, or temperature sampling with top-k and
 * top-p (nucleus) filtering driven by a seeded PRNG, so a seed reproduces a
 * generation exactly. Probabilities are computed in float64.
 */

/** mulberry32: a tiny, fast 32-bit PRNG; good enough for sampling, and seedable. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Index of the largest value (the first one on ties, like torch.argmax). */
export function argmax(v: ArrayLike<number>, offset = 0, n = v.length - offset): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = v[offset + i]!;
    if (x > bv) {
      bv = x;
      best = i;
    }
  }
  return best;
}

export interface SampleOptions {
  /** 0 = greedy. */
  temperature: number;
  /** Keep the k most likely tokens (0 = no limit). */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = no limit). */
  topP: number;
}

/**
 * Pick a token from one row of logits (`n` values at `offset`). The filters
 * apply in HF's order: temperature, then top-k, then top-p over the
 * renormalised survivors; the most likely token always survives.
 */
export function sampleToken(logits: ArrayLike<number>, offset: number, n: number, o: SampleOptions, rand: () => number): number {
  if (o.temperature === 0) return argmax(logits, offset, n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[offset + i]!);
  const ids = new Int32Array(n);
  const p = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    ids[i] = i;
    p[i] = Math.exp((logits[offset + i]! - max) / o.temperature);
  }
  // candidates sorted by probability, descending (stable on ties: lower id first)
  const order = Array.from(ids).sort((a, b) => p[b]! - p[a]! || a - b);
  let keep = o.topK > 0 ? Math.min(o.topK, n) : n;
  let total = 0;
  for (let i = 0; i < keep; i++) total += p[order[i]!]!;
  if (o.topP < 1) {
    let cum = 0;
    for (let i = 0; i < keep; i++) {
      cum += p[order[i]!]! / total;
      if (cum >= o.topP) {
        keep = i + 1;
        break;
      }
    }
    total = 0;
    for (let i = 0; i < keep; i++) total += p[order[i]!]!;
  }
  let r = rand() * total;
  for (let i = 0; i < keep; i++) {
    r -= p[order[i]!]!;
    if (r < 0) return order[i]!;
  }
  return order[keep - 1]!; // rounding left r >= 0: take the last survivor
}
