/**
 * Next-token selection: greedy argmax, or temperature sampling with top-k and
 * top-p (nucleus) filtering driven by a seeded PRNG, so a seed reproduces a
 * generation exactly. Probabilities are computed in float64.
 */
import { addon } from '../binding.js';

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

/**
 * From this many values on, a Float32Array's argmax runs natively (the same
 * answer: two vectorized passes, ~9 us for 32,000 logits against ~29 us
 * here, which a batched server step pays once per sequence).
 */
const NATIVE_ARGMAX_MIN = 2048;

/** Index of the largest value (the first one on ties, like torch.argmax; NaN never chosen; 0 if none is above -Infinity). */
export function argmax(v: ArrayLike<number>, offset = 0, n = v.length - offset): number {
  if (v instanceof Float32Array && n >= NATIVE_ARGMAX_MIN && Number.isInteger(n) && Number.isInteger(offset) && offset >= 0 && offset + n <= v.length) {
    return addon.argmax(v, offset, n);
  }
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
 * survivors' renormalised mass; the most likely token always survives.
 *
 * Top-p keeps the tokens whose probability is above a threshold v*, and the
 * lowest ids among those equal to it: v* is the largest probability such
 * that the candidates at or above it hold at least topP of the candidates'
 * total, and of the ties at v* only as many are kept as that mass needs.
 * Every mass is a float64 sum in id order, so the cut is defined without
 * sorting the vocabulary: a flat 32k distribution, whose nucleus is most of
 * it, took a 4.3 ms sort per token and now takes 1.1 ms in all (nucleus()).
 *
 * The draw walks the survivors in id order subtracting rand() * their total
 * (the last survivor with p > 0 takes any rounding remainder); the
 * survivors' order does not change the distribution, and no filter at all
 * is the same walk over every id.
 */
export function sampleToken(logits: ArrayLike<number>, offset: number, n: number, o: SampleOptions, rand: () => number): number {
  if (o.temperature === 0) return argmax(logits, offset, n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[offset + i]!);
  if (probs.length < n) probs = new Float64Array(n);
  const p = probs.length === n ? probs : probs.subarray(0, n);
  let sum = 0; // in id order
  for (let i = 0; i < n; i++) sum += p[i] = Math.exp((logits[offset + i]! - max) / o.temperature);
  // candidates in id order: every id (null), or the top-k's
  let ids: Int32Array | null = null;
  let total = sum;
  if (o.topK > 0 && o.topK < n) {
    ids = topKByProbability(p, o.topK).sort();
    total = 0;
    for (let i = 0; i < ids.length; i++) total += p[ids[i]!]!;
  }
  if (o.topP < 1) {
    ids = nucleus(p, ids, total, o.topP * total);
    total = 0;
    for (let i = 0; i < ids.length; i++) total += p[ids[i]!]!;
  }
  let r = rand() * total;
  let last = -1;
  const count = ids ? ids.length : n;
  for (let j = 0; j < count; j++) {
    const i = ids ? ids[j]! : j;
    const v = p[i]!;
    if (v === 0) continue;
    r -= v;
    if (r < 0) return i;
    last = i;
  }
  return last >= 0 ? last : ids ? ids[0]! : argmax(p); // no p > 0 at all: cannot happen after exp(0) = 1 at the max
}

/** sampleToken's probabilities (one call at a time: it never yields), grown to the largest vocabulary seen. */
let probs = new Float64Array(0);

/** Sum of p over the candidates (ids ascending; null: every id) with p >= v, or p > v when `strict`, in id order. */
function massAbove(p: Float64Array, ids: Int32Array | null, v: number, strict: boolean): number {
  let s = 0;
  const n = ids ? ids.length : p.length;
  for (let j = 0; j < n; j++) {
    const x = p[ids ? ids[j]! : j]!;
    if (x > v || (!strict && x === v)) s += x;
  }
  return s;
}

/**
 * Top-p's survivors among `ids` (ascending; null: every id), ascending: see
 * sampleToken. `target` = topP x the candidates' total. The mass at or
 * above v only grows as v falls (a rounded sum of more non-negative terms),
 * so v* is found by a quickselect over the candidates' values, three-way
 * partitions around a pivot, descending. Each pivot's mass is first taken
 * from the partition itself (the values above the range plus the part >=
 * the pivot); only when that lands within rounding distance of the target
 * does a pass in id order decide, so the search costs ~2n comparisons
 * rather than a pass per pivot.
 */
function nucleus(p: Float64Array, ids: Int32Array | null, total: number, target: number): Int32Array {
  const n = ids ? ids.length : p.length;
  const vals = new Float64Array(n);
  for (let j = 0; j < n; j++) vals[j] = p[ids ? ids[j]! : j]!;
  // a sum of n non-negative terms in any order is within ~n ulp of the
  // total of any other order: margins far wider than that
  const tol = total * (n + 16) * 2 ** -48;
  // the values still in question are vals[lo..hi]; larger ones failed (their
  // mass, `above`, is below target), smaller ones lose to `best`, the largest that passed
  let lo = 0, hi = n - 1, above = 0;
  let best = -1; // vals are >= 0; the smallest value always passes (its mass is the total)
  while (lo <= hi) {
    const a = vals[lo]!, b = vals[(lo + hi) >>> 1]!, c = vals[hi]!;
    const pivot = a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
    let lt = lo, i = lo, gt = hi, mass = above;
    while (i <= gt) {
      const x = vals[i]!;
      if (x > pivot) {
        vals[i] = vals[lt]!;
        vals[lt++] = x;
        mass += x;
        i++;
      } else if (x < pivot) {
        vals[i] = vals[gt]!;
        vals[gt--] = x;
      } else {
        mass += x;
        i++;
      }
    }
    const pass = Math.abs(mass - target) > tol ? mass >= target : massAbove(p, ids, pivot, false) >= target;
    if (pass) {
      best = pivot;
      hi = lt - 1; // a larger value may pass too
    } else {
      above = mass;
      lo = gt + 1; // v* is smaller
    }
  }
  const out = new Int32Array(n);
  if (best < 0) {
    // rounding: even the total fell short, keep everything
    for (let j = 0; j < n; j++) out[j] = ids ? ids[j]! : j;
    return out;
  }
  // ties at v*: the lowest ids, as few as reach the target (at least one)
  const strict = massAbove(p, ids, best, true);
  let ties = 0;
  for (let j = 0; j < n; j++) if (vals[j] === best) ties++;
  let take = best > 0 ? Math.min(ties, Math.max(1, Math.ceil((target - strict) / best))) : ties;
  while (take > 1 && strict + (take - 1) * best >= target) take--;
  while (take < ties && strict + take * best < target) take++;
  let m = 0;
  for (let j = 0; j < n; j++) {
    const id = ids ? ids[j]! : j, x = p[id]!;
    if (x > best || (x === best && take-- > 0)) out[m++] = id;
  }
  return out.subarray(0, m);
}

/**
 * The k most likely ids, by p descending, ties by id ascending (what a
 * stable comparison sort of all ids would put first). Small k: insertion into a sorted list of k (one pass over
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
