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
 * renormalised survivors; the most likely token always survives. The draw
 * walks the survivors by probability, descending (ties: lower id first),
 * subtracting rand() * their total; with no filter it walks all tokens in
 * id order instead, the same distribution without a sort of the vocabulary
 * (~0.5 ms rather than ~6 ms per token at 32k, once per sequence and step
 * in a server).
 */
export function sampleToken(logits: ArrayLike<number>, offset: number, n: number, o: SampleOptions, rand: () => number): number {
  if (o.temperature === 0) return argmax(logits, offset, n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[offset + i]!);
  if (probs.length < n) probs = new Float64Array(n);
  const p = probs.length === n ? probs : probs.subarray(0, n);
  let sum = 0; // in id order
  for (let i = 0; i < n; i++) sum += p[i] = Math.exp((logits[offset + i]! - max) / o.temperature);
  if ((o.topK <= 0 || o.topK >= n) && o.topP >= 1) {
    // no filter: the candidates' order does not change the distribution, so
    // walk them in id order (no sort); the last one with p > 0 takes any
    // rounding remainder
    let r = rand() * sum;
    let last = 0;
    for (let i = 0; i < n; i++) {
      const v = p[i]!;
      if (v === 0) continue;
      r -= v;
      if (r < 0) return i;
      last = i;
    }
    return last;
  }
  // candidates by probability, descending (ties: lower id first), as far as the filters read them
  let order: Int32Array;
  let keep: number;
  let total: number;
  if (o.topK > 0 && o.topK < n) {
    order = topKByProbability(p, o.topK);
    keep = o.topK;
    total = 0;
    for (let i = 0; i < keep; i++) total += p[order[i]!]!;
  } else {
    // top-p alone: the nucleus is usually a few tokens, so select the best m
    // (64, then 8x more) until their mass reaches topP; the full sort only
    // when the nucleus is a large part of the vocabulary
    order = new Int32Array(0);
    keep = n;
    total = sum;
  }
  if (o.topP < 1) {
    for (let m = 64; ; m *= 8) {
      if (keep === n && order.length < n) order = m < n / 8 ? topKByProbability(p, m) : orderByProbability(p, Int32Array.from({ length: n }, (_, i) => i));
      const len = Math.min(keep, order.length);
      let cum = 0, cut = 0;
      for (let i = 0; i < len; i++) {
        cum += p[order[i]!]! / total;
        if (cum >= o.topP) {
          cut = i + 1;
          break;
        }
      }
      if (cut > 0) {
        keep = cut;
        break;
      }
      if (len === keep) break; // rounding kept the mass below topP: keep every candidate
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

function topKBySelection(p: Float64Array, k: number): Int32Array {
  const t = kthLargest(Float64Array.from(p), k);
  const ids = new Int32Array(k);
  let m = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > t) ids[m++] = i;
  // ties at the threshold: the lowest ids, as the stable order keeps them first
  for (let i = 0; i < p.length && m < k; i++) if (p[i] === t) ids[m++] = i;
  return ids.sort((a, b) => p[b]! - p[a]! || a - b);
}

/** The k-th largest of v (1-based; v is reordered), by quickselect with median-of-three pivots. */
function kthLargest(v: Float64Array, k: number): number {
  let lo = 0, hi = v.length - 1;
  const want = k - 1; // index in descending order
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const a = v[lo]!, b = v[mid]!, c = v[hi]!;
    const pivot = a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
    // three-way partition, descending: [> pivot][== pivot][< pivot]
    let lt = lo, i = lo, gt = hi;
    while (i <= gt) {
      const x = v[i]!;
      if (x > pivot) {
        v[i] = v[lt]!;
        v[lt++] = x;
        i++;
      } else if (x < pivot) {
        v[i] = v[gt]!;
        v[gt--] = x;
      } else i++;
    }
    if (want < lt) hi = lt - 1;
    else if (want > gt) lo = gt + 1;
    else return pivot;
  }
  return v[lo]!;
}

/** sampleToken's probabilities (one call at a time: it never yields), grown to the largest vocabulary seen. */
let probs = new Float64Array(0);

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
 * id ascending). Small k: insertion into a sorted list of k (one pass over
 * p; most values fail the comparison with the k-th best). Larger k, where
 * the insertions cost k per value that enters: the k-th largest value by
 * selection, then the ids above it (and the first ones equal to it) sorted.
 */
export function topKByProbability(p: Float64Array, k: number): Int32Array {
  if (k > 64 && k < p.length) return topKBySelection(p, k);
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
