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
  const p = new Float64Array(n);
  for (let i = 0; i < n; i++) p[i] = Math.exp((logits[offset + i]! - max) / o.temperature);
  // candidates sorted by probability, descending (stable on ties: lower id
  // first); with top-k only the k first are ever read
  const order = o.topK > 0 && o.topK < n ? topKByProbability(p, o.topK) : orderByProbability(p, Int32Array.from({ length: n }, (_, i) => i));
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

/**
 * ids sorted by p descending, ties by id ascending: what
 * `Array.from(ids).sort((a, b) => p[b] - p[a] || a - b)` gives for ids
 * 0 .. n - 1 and p >= 0 (NaN-free), as an LSD radix sort on the bits of p
 * (positive doubles order as their bit patterns), 8 passes of 8 bits,
 * stable. ~1 ms for a 32k vocabulary where the comparison sort took ~12 ms,
 * once per sampled token.
 */
export function orderByProbability(p: Float64Array, ids: Int32Array): Int32Array {
  const n = ids.length;
  const bits = new Uint32Array(p.buffer, p.byteOffset, 2 * n); // little-endian: [lo, hi] per value
  let src: Int32Array = ids; // ids ascending: stability keeps the lower id first on ties
  let dst: Int32Array = new Int32Array(n);
  const count = new Int32Array(256);
  for (let pass = 0; pass < 8; pass++) {
    const word = pass < 4 ? 0 : 1;
    const shift = (pass & 3) * 8;
    count.fill(0);
    // descending: sort by the complement of each digit
    for (let i = 0; i < n; i++) count[255 - ((bits[2 * src[i]! + word]! >>> shift) & 255)]!++;
    let sum = 0;
    for (let d = 0; d < 256; d++) {
      const c = count[d]!;
      count[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const id = src[i]!;
      dst[count[255 - ((bits[2 * id + word]! >>> shift) & 255)]!++] = id;
    }
    [src, dst] = [dst, src];
  }
  return src;
}

/**
 * The first k of orderByProbability(p, ...) (ids by p descending, ties by
 * id ascending), by insertion into a sorted list of k: one pass over p, and
 * most values fail the comparison with the k-th best.
 */
export function topKByProbability(p: Float64Array, k: number): Int32Array {
  const ids = new Int32Array(k);
  const vals = new Float64Array(k);
  let m = 0;
  for (let i = 0; i < p.length; i++) {
    const v = p[i]!;
    // a value equal to the k-th best comes later, so its id is larger: it loses the tie
    if (m === k && !(v > vals[k - 1]!)) continue;
    let j = m < k ? m++ : k - 1;
    while (j > 0 && vals[j - 1]! < v) {
      vals[j] = vals[j - 1]!;
      ids[j] = ids[j - 1]!;
      j--;
    }
    vals[j] = v;
    ids[j] = i;
  }
  return ids;
}
