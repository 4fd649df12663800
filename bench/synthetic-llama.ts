/**
 * The synthetic Llama the end-to-end benchmarks run (bench/e2e.ts, and
 * bench/llama-cpp.ts, which runs it through llama.cpp too): its config,
 * seeded random weights, the quantkit weight formats compared, and one
 * timed prefill + decode.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { llamaConfigToHf, loadCliModel } from '../lib/cli/load.js';
import { Tensor, buildModel, quantizeModel, type KVCache, type QuantizeModelOptions } from '../lib/index.js';
import { saveQuantized } from '../lib/io/quantized-checkpoint.js';
import { writeSafetensors } from '../lib/io/safetensors.js';
import { hugeArray } from '../lib/ops/huge-pages.js';
import type { TensorLookup } from '../lib/models/config.js';
import { type LlamaConfig, type LlamaForCausalLM, parseLlamaConfig } from '../lib/models/llama.js';

export const VOCAB = 32000;

// ------------------------------------------------------------------ synthetic model

/** The HF config.json a model of this shape would ship, parsed by the real parser (so defaults match loadModel's). */
export function makeConfig(layers: number, dim: number): LlamaConfig {
  if (dim % 64 !== 0) throw new Error(`--dim must be a multiple of 64 (head size 64), got ${dim}`);
  const heads = dim / 64;
  const kvHeads = heads % 3 === 0 ? heads / 3 : heads; // 12 -> 4: the GQA ratio of Llama-3-8B-like small models
  return parseLlamaConfig(
    {
      model_type: 'llama',
      hidden_size: dim,
      intermediate_size: Math.ceil((8 * dim) / 3 / 256) * 256, // SwiGLU's 2/3 * 4D, rounded like Llama (768 -> 2048)
      num_hidden_layers: layers,
      num_attention_heads: heads,
      num_key_value_heads: kvHeads,
      vocab_size: VOCAB,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      hidden_act: 'silu',
      tie_word_embeddings: false,
    },
    'synthetic config',
  );
}

/**
 * N(0, std) values from a seeded xorshift32 + Box-Muller pair: ~125M values
 * take ~1-2 s, and every run (and every config) sees the same weights.
 */
export function gaussianF32(n: number, seed: number, std: number): Float32Array {
  // as the library's file reader holds weights: on huge pages when large
  const out = hugeArray(Float32Array, n);
  let s = (seed * 2654435761) >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 1) / 4294967297; // (0, 1): log() stays finite
  };
  for (let i = 0; i < n; i += 2) {
    const r = std * Math.sqrt(-2 * Math.log(next()));
    const a = 2 * Math.PI * next();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

/**
 * HF-named f32 tensors for `c` (what model.safetensors would hold). Norm
 * weights are 1, except `outlierDims` hidden dims set to 10 in every norm: a
 * crude stand-in for the few huge activation channels of trained LLMs, so
 * LLM.int8's outlier path can be exercised (random weights have none).
 */
export function makeWeights(c: LlamaConfig, outlierDims: number): TensorLookup {
  const { hiddenSize: D, intermediateSize: F, numHeads: nH, numKvHeads: nKv, headDim: hd, vocabSize: V } = c;
  const m = new Map<string, Tensor>();
  let seed = 1;
  const mat = (name: string, out: number, inp: number) => m.set(name, new Tensor('f32', [out, inp], gaussianF32(out * inp, seed++, 0.02)));
  const ones = (name: string) => {
    const w = new Float32Array(D).fill(1);
    for (let i = 0; i < outlierDims; i++) w[(i * 97) % D] = 10;
    m.set(name, new Tensor('f32', [D], w));
  };
  mat('model.embed_tokens.weight', V, D);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    mat(`${p}.self_attn.q_proj.weight`, nH * hd, D);
    mat(`${p}.self_attn.k_proj.weight`, nKv * hd, D);
    mat(`${p}.self_attn.v_proj.weight`, nKv * hd, D);
    mat(`${p}.self_attn.o_proj.weight`, D, nH * hd);
    mat(`${p}.mlp.gate_proj.weight`, F, D);
    mat(`${p}.mlp.up_proj.weight`, F, D);
    mat(`${p}.mlp.down_proj.weight`, D, F);
    ones(`${p}.input_layernorm.weight`);
    ones(`${p}.post_attention_layernorm.weight`);
  }
  ones('model.norm.weight');
  mat('lm_head.weight', V, D);
  return {
    has: (name) => m.has(name),
    get: (name) => {
      const t = m.get(name);
      if (t === undefined) throw new Error(`synthetic model has no tensor '${name}'`);
      return t;
    },
  };
}

// ------------------------------------------------------------------ configs

export interface Variant {
  name: string;
  /** null: fp32, no quantization. */
  q: QuantizeModelOptions | null;
}

export const INT8: QuantizeModelOptions = { weights: 'int8', scheme: 'symmetric', granularity: 'channel' };
export const INT4: QuantizeModelOptions = { weights: 'int4', scheme: 'symmetric', granularity: 'group', groupSize: 32 };
export const ALL_VARIANTS: Variant[] = [
  { name: 'fp32', q: null },
  { name: 'int8', q: INT8 },
  { name: 'int4-g32', q: INT4 },
  { name: 'int4-g32-asym', q: { ...INT4, scheme: 'asymmetric' } },
  { name: 'w8a8', q: { ...INT8, activations: 'int8' } },
  { name: 'llm.int8', q: { ...INT8, activations: 'llm.int8', threshold: 6 } },
  { name: 'w4a8', q: { ...INT4, activations: 'int8' } },
  // exclude [] quantizes the lm_head too: at 768 x 32000 it is ~20% of the f32 weights
  { name: 'int8+head', q: { ...INT8, exclude: [] } },
  { name: 'int4-g32+head', q: { ...INT4, exclude: [] } },
  { name: 'w4a8+head', q: { ...INT4, activations: 'int8', exclude: [] } },
  // f16 scales: 0.5625 bytes per weight at g32, the bytes of ggml's Q4_0
  { name: 'int4-g32-f16s', q: { ...INT4, scaleDtype: 'f16' } },
  { name: 'w4a8-f16s', q: { ...INT4, activations: 'int8', scaleDtype: 'f16' } },
  { name: 'int4-g32+head-f16s', q: { ...INT4, exclude: [], scaleDtype: 'f16' } },
  { name: 'w4a8+head-f16s', q: { ...INT4, activations: 'int8', exclude: [], scaleDtype: 'f16' } },
  // int8 activations for prompts only: W4A8 / W8A8 prefill, weight-only decode
  { name: 'int4-g32-pf8', q: { ...INT4, activations: 'int8-prefill' } },
  { name: 'int4-g32+head-pf8', q: { ...INT4, activations: 'int8-prefill', exclude: [] } },
  { name: 'int8-pf8', q: { ...INT8, activations: 'int8-prefill' } },
];

export function build(config: LlamaConfig, lookup: TensorLookup, v: Variant): { model: LlamaForCausalLM; quantMs: number } {
  // buildModel keeps f32 tensors without copying, so every build shares the lookup's weights
  const model = buildModel(config, lookup, 'synthetic', { dtype: 'auto' }) as LlamaForCausalLM;
  const t0 = performance.now();
  if (v.q) quantizeModel(model, v.q);
  return { model, quantMs: performance.now() - t0 };
}

/**
 * The variant as a user serving it would hold it: written to a folder under
 * `dir` (fp32: a Hugging Face folder, config.json + model.safetensors;
 * quantized: a quantkit checkpoint of the model quantized in memory) and
 * loaded back through the library's loader with the file mapped, so the
 * weights are page-cache pages as llama.cpp's mapped GGUF are.
 */
export async function buildFromFile(config: LlamaConfig, lookup: TensorLookup, v: Variant, dir: string): Promise<LlamaForCausalLM> {
  const folder = path.join(dir, `quantkit-${v.name}`);
  const model = buildModel(config, lookup, 'synthetic', { dtype: 'auto' });
  if (v.q === null) {
    // a Llama module's tensor names are the Hugging Face ones (all float here)
    fs.mkdirSync(folder, { recursive: true });
    await writeSafetensors(path.join(folder, 'model.safetensors'), new Map([...model.namedTensors()].filter((e): e is [string, Tensor] => e[1] instanceof Tensor)));
    fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(llamaConfigToHf(config)));
  } else {
    await saveQuantized(model, quantizeModel(model, v.q), [], folder, llamaConfigToHf(config));
  }
  return loadCliModel(folder, undefined, undefined, { mmap: true }).model as LlamaForCausalLM;
}

// ------------------------------------------------------------------ measurement

export function argmaxLast(logits: Tensor<'f32'>): number {
  const V = logits.shape[1]!;
  const d = logits.data;
  const o = d.length - V;
  let best = 0;
  for (let i = 1; i < V; i++) if (d[o + i]! > d[o + best]!) best = i;
  return best;
}

/** A fixed pseudo-random prompt (ids avoid 0..2: bos/eos/pad in Llama vocabularies). */
export function makePrompt(T: number): number[] {
  return Array.from({ length: T }, (_, i) => 3 + ((i * 7919 + 17) % (VOCAB - 3)));
}

/**
 * One prefill + `steps` greedy decode steps; ms of each phase. With `cache`
 * (capacity >= prompt + steps) the run starts from cache.reset() on it, as
 * llama.cpp's llama-bench reuses one context and `quantkit serve` one pooled
 * cache per sequence: the prompt's activation buffers and KV pages are then
 * already allocated and touched. Without, on a fresh cache, whose first
 * prefill also allocates and first-touches them (~1-3 ms of a 128-token
 * prompt of the 12-layer model on one thread, AMD EPYC).
 */
export function runOnce(model: LlamaForCausalLM, prompt: number[], steps: number, cache?: KVCache): { prefillMs: number; decodeMs: number } {
  if (cache) cache.reset();
  else cache = model.createCache(prompt.length + steps);
  let t0 = performance.now();
  let tok = argmaxLast(model.forward(prompt, cache, { logits: 'last' }));
  const prefillMs = performance.now() - t0;
  t0 = performance.now();
  for (let s = 0; s < steps; s++) tok = argmaxLast(model.forward([tok], cache));
  return { prefillMs, decodeMs: performance.now() - t0 };
}

/** The synthetic model of one variant, built from scratch: a factory a WorkerEngine can load in its thread. */
export function makeVariantModel(args: { layers: number; dim: number; variant: string }): LlamaForCausalLM {
  const v = ALL_VARIANTS.find((x) => x.name === args.variant);
  if (!v) throw new Error(`unknown config '${args.variant}' (known: ${ALL_VARIANTS.map((x) => x.name).join(', ')})`);
  const config = makeConfig(args.layers, args.dim);
  return build(config, makeWeights(config, 0), v).model;
}
