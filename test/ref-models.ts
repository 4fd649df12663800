/**
 * Float64 reference math for the model tests, written from the Hugging Face
 * modeling code's definitions and sharing nothing with lib/: a Maker that
 * writes random weights in HF layout (keeping the exact stored values), and
 * the layers (torch Linear, Conv1D, LayerNorm, GELU, causal attention).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { writeSafetensorsSync } from '../lib/io/safetensors.js';
import type { CausalLM } from '../lib/models/causal-lm.js';
import type { QuantizeModelOptions } from '../lib/nn/quantize-model.js';
import { Tensor } from '../lib/tensor.js';
import { bf16BitsToNumber, rng, toBf16Bits } from './helpers.js';

// ------------------------------------------------------------ weight making

export type F64 = Float64Array<ArrayBufferLike>;
/** Reference weights (float64, values exactly as stored) keyed by HF name. */
export type Weights = Map<string, { shape: number[]; v: F64 }>;

export class Maker {
  readonly ref: Weights = new Map();
  readonly file = new Map<string, Tensor>();
  readonly #r: () => number;
  constructor(
    seed: number,
    readonly bf16: boolean,
  ) {
    this.#r = rng(seed);
  }
  /** Uniform in [center - scale, center + scale); stored f32 or bf16 (the reference keeps the stored value). */
  add(name: string, shape: number[], scale: number, center = 0): void {
    const n = shape.reduce((a, d) => a * d, 1);
    const v = new Float64Array(n);
    if (this.bf16) {
      const bits = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        bits[i] = toBf16Bits(center + scale * (2 * this.#r() - 1));
        v[i] = bf16BitsToNumber(bits[i]!);
      }
      this.file.set(name, new Tensor('bf16', shape, bits));
    } else {
      const f = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        f[i] = center + scale * (2 * this.#r() - 1);
        v[i] = f[i]!;
      }
      this.file.set(name, new Tensor('f32', shape, f));
    }
    this.ref.set(name, { shape, v });
  }
  /** Write config.json + two safetensors shards and their index (as large HF checkpoints are stored). */
  writeSharded(dir: string, config: object): string {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
    const names = [...this.file.keys()];
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((part, i) => {
      const f = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensorsSync(path.join(dir, f), new Map(part.map((n) => [n, this.file.get(n)!])));
      for (const n of part) weightMap[n] = f;
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    return dir;
  }
  /** Write config.json + model.safetensors; names get `prefix` in the file (the reference keys do not). */
  write(dir: string, config: object, rename: (n: string) => string = (n) => n): string {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
    writeSafetensorsSync(path.join(dir, 'model.safetensors'), new Map([...this.file].map(([n, t]) => [rename(n), t])));
    return dir;
  }
}

// ------------------------------------------------------------ float64 reference math

/** y[n] = sum_k x[k] * W[n, k] + b[n]  (torch Linear, W [N, K]). */
export function linRef(x: F64, W: F64, b: F64 | null, N: number, K: number): F64 {
  const y = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let s = b ? b[n]! : 0;
    for (let k = 0; k < K; k++) s += x[k]! * W[n * K + k]!;
    y[n] = s;
  }
  return y;
}
/** y[n] = sum_k x[k] * W[k, n] + b[n]  (HF Conv1D, W [K, N]). */
export function conv1dRef(x: F64, W: F64, b: F64, K: number, N: number): F64 {
  const y = Float64Array.from(b);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) y[n]! += x[k]! * W[k * N + n]!;
  return y;
}
export function layerNormRef(x: F64, w: F64 | null, b: F64 | null, eps: number): F64 {
  const D = x.length;
  const mean = x.reduce((a, v) => a + v, 0) / D;
  const varr = x.reduce((a, v) => a + (v - mean) ** 2, 0) / D;
  return x.map((v, i) => ((v - mean) / Math.sqrt(varr + eps)) * (w ? w[i]! : 1) + (b ? b[i]! : 0));
}
export const geluTanhRef = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
export const reluRef = (v: number) => Math.max(0, v);

/** Causal multi-head attention over full sequences: q, k, v [T][D]. */
export function mhaRef(q: F64[], k: F64[], v: F64[], nH: number, scale: number): F64[] {
  const T = q.length;
  const D = q[0]!.length;
  const hd = D / nH;
  const out = q.map(() => new Float64Array(D));
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nH; h++) {
      const s: number[] = [];
      for (let j = 0; j <= t; j++) {
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[t]![h * hd + i]! * k[j]![h * hd + i]!;
        s.push(d * scale);
      }
      const m = Math.max(...s);
      const e = s.map((x) => Math.exp(x - m));
      const z = e.reduce((a, x) => a + x, 0);
      for (let j = 0; j <= t; j++) for (let i = 0; i < hd; i++) out[t]![h * hd + i]! += (e[j]! / z) * v[j]![h * hd + i]!;
    }
  }
  return out;
}
export const add = (a: F64, b: F64) => a.map((x, i) => x + b[i]!);

/** Logits of a whole sequence from a fresh cache. */
export function fullLogits(model: CausalLM, tokens: number[]): Float32Array {
  const out = model.forward(tokens, model.createCache());
  expect(out.shape).toEqual([tokens.length, model.config.vocabSize]);
  return out.data;
}

/** max |a - ref| / max(1, max |ref|) */
export function relErr(a: Float32Array, ref: F64[]): number {
  const flat = ref.flatMap((r) => [...r]);
  const scale = Math.max(1, ...flat.map(Math.abs));
  let m = 0;
  for (let i = 0; i < flat.length; i++) m = Math.max(m, Math.abs(a[i]! - flat[i]!));
  if (process.env.QK_VERBOSE) console.log(`relative logit error ${(m / scale).toExponential(2)} (logit scale ${scale.toFixed(2)})`);
  return m / scale;
}

/** Chunked and token-by-token decoding over the KV cache give the full forward's logits; logits 'last' gives its last row. */
export function expectIncrementalMatches(model: CausalLM, tokens: number[], full: Float32Array): void {
  const V = model.config.vocabSize;
  const cache = model.createCache();
  // one prompt chunk of 3, then one token at a time
  const chunks = [tokens.slice(0, 3), ...tokens.slice(3).map((t) => [t])];
  let at = 0;
  for (const ch of chunks) {
    const y = model.forward(ch, cache).data;
    for (let i = 0; i < y.length; i++) expect(Math.abs(y[i]! - full[at * V + i]!)).toBeLessThan(1e-5);
    at += ch.length;
  }
  expect(cache.length).toBe(tokens.length);
  // logits: 'last' on a prompt: the last row only, and the same cache contents
  const c2 = model.createCache();
  const last = model.forward(tokens.slice(0, -1), c2, { logits: 'last' });
  expect(last.shape).toEqual([1, V]);
  const n = tokens.length - 2;
  for (let i = 0; i < V; i++) expect(Math.abs(last.data[i]! - full[n * V + i]!)).toBeLessThan(1e-5);
  const next = model.forward(tokens.slice(-1), c2).data;
  for (let i = 0; i < V; i++) expect(Math.abs(next[i]! - full[(n + 1) * V + i]!)).toBeLessThan(1e-5);
}

/**
 * Every weight format quantkit has, with the relative logit error each may
 * show against a float64 reference on the tiny random models of the tests
 * (null: the model as stored).
 */
export const WEIGHT_FORMATS: readonly [string, QuantizeModelOptions | null, number][] = [
  ['as stored', null, 1e-4],
  ['int8 per channel', { weights: 'int8' }, 0.05],
  ['int4 asym g32', { weights: 'int4', scheme: 'asymmetric' }, 0.3],
  ['W8A8', { weights: 'int8', activations: 'int8' }, 0.1],
  ['LLM.int8', { weights: 'int8', activations: 'llm.int8' }, 0.05],
  ['W4A8', { weights: 'int4', activations: 'int8' }, 0.3],
];
