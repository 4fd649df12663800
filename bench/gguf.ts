/**
 * A GGUF (v3) writer for the benchmark's synthetic Llama, so llama.cpp (through
 * node-llama-cpp) runs the very weights quantkit runs. Bench-only code: the
 * library itself never reads or writes GGUF.
 *
 * Tensors are written as F32, or quantized here with llama.cpp's block
 * formats, from the f32 weights quantkit also starts from:
 *   Q8_0: blocks of 32 values along K: f16 d = absmax / 127, int8 q = round(x / d)
 *   Q4_0: blocks of 32: f16 d = (the value of largest magnitude) / -8,
 *         q = min(15, trunc(x / d + 8.5)); byte j holds q[j] (low nibble) and
 *         q[j + 16] (high nibble)
 * The q/k projection rows are reordered from HF's rotate-half pairing to the
 * interleaved pairing llama.cpp's Llama graph rotates (row 2i of a head =
 * HF row i, row 2i + 1 = HF row i + headDim / 2), so both libraries compute
 * the same model, not just the same amount of work.
 *
 * The vocabulary is synthetic (the model has random weights and is fed
 * token ids, never text): <unk>, <s>, </s>, the 256 byte tokens, then "▁t<i>".
 */
import { closeSync, openSync } from 'node:fs';
import type { Tensor } from '../lib/index.js';
import { alignedChunks, writeAllSync } from '../lib/io/atomic.js';
import { toF16Bits as f16Bits } from '../test/half-floats.js'; // (the library has no f16 writer)
import type { LlamaConfig } from '../lib/models/llama.js';
import type { TensorLookup } from '../lib/models/config.js';

export type GgmlType = 'F32' | 'Q8_0' | 'Q4_0';
const GGML_TYPE_ID: Record<GgmlType, number> = { F32: 0, Q4_0: 2, Q8_0: 8 };
const ALIGN = 32;

// GGUF metadata value types
const T_U32 = 4, T_I32 = 5, T_F32 = 6, T_STR = 8, T_ARR = 9;

/** Q8_0 blocks of a row-major [rows, K] f32 matrix (K % 32 == 0): 34 bytes per block. */
export function quantizeQ8_0(x: Float32Array, K: number): Uint8Array {
  if (K % 32 !== 0) throw new Error(`Q8_0 needs K % 32 == 0, got ${K}`);
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 34);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = Math.fround(amax / 127);
    const id = d ? 1 / d : 0;
    dv.setUint16(b * 34, f16Bits(d), true);
    for (let j = 0; j < 32; j++) {
      const v = Math.fround(x[b * 32 + j]! * id);
      dv.setInt8(b * 34 + 2 + j, Math.sign(v) * Math.round(Math.abs(v))); // roundf: halves away from zero
    }
  }
  return out;
}

/** Q4_0 blocks of a row-major [rows, K] f32 matrix (K % 32 == 0): 18 bytes per block. */
export function quantizeQ4_0(x: Float32Array, K: number): Uint8Array {
  if (K % 32 !== 0) throw new Error(`Q4_0 needs K % 32 == 0, got ${K}`);
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 18);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j]!;
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d ? 1 / d : 0;
    dv.setUint16(b * 18, f16Bits(d), true);
    const q = (j: number) => Math.min(15, Math.trunc(Math.fround(Math.fround(x[b * 32 + j]! * id) + 8.5)));
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = q(j) | (q(j + 16) << 4);
  }
  return out;
}

/** HF rotate-half rows of a q/k projection [heads * hd, K] -> llama.cpp's interleaved order. */
function interleaveRopeRows(w: Float32Array, heads: number, K: number): Float32Array {
  const hd = w.length / K / heads;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      out.set(w.subarray((h * hd + i) * K, (h * hd + i + 1) * K), (h * hd + 2 * i) * K);
      out.set(w.subarray((h * hd + hd / 2 + i) * K, (h * hd + hd / 2 + i + 1) * K), (h * hd + 2 * i + 1) * K);
    }
  }
  return out;
}

class Bytes {
  #parts: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array): void {
    this.#parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.push(b);
  }
  u64(v: number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  parts(): Uint8Array[] {
    return this.#parts;
  }
}

type Meta = [string, 'u32' | 'f32' | 'str' | 'strs' | 'f32s' | 'i32s', unknown];

function writeMeta(o: Bytes, [key, type, v]: Meta): void {
  o.str(key);
  if (type === 'u32') {
    o.u32(T_U32);
    o.u32(v as number);
  } else if (type === 'f32') {
    o.u32(T_F32);
    o.push(new Uint8Array(new Float32Array([v as number]).buffer));
  } else if (type === 'str') {
    o.u32(T_STR);
    o.str(v as string);
  } else {
    const arr = v as ArrayLike<unknown>;
    o.u32(T_ARR);
    o.u32(type === 'strs' ? T_STR : type === 'f32s' ? T_F32 : T_I32);
    o.u64(arr.length);
    if (type === 'strs') for (const s of v as string[]) o.str(s);
    else o.push(new Uint8Array((type === 'f32s' ? Float32Array.from(arr as number[]) : Int32Array.from(arr as number[])).buffer));
  }
}

export interface GgufPlan {
  /** Type of the layers' projection weights. */
  readonly layers: GgmlType;
  /** Type of output.weight (lm_head). */
  readonly head: GgmlType;
}

/**
 * Write `weights` (HF names, the synthetic model's f32 tensors) for `c` as a
 * GGUF file at `file`; returns its size in bytes. The embedding and the norms
 * stay F32.
 */
export async function writeLlamaGguf(file: string, c: LlamaConfig, weights: TensorLookup, plan: GgufPlan): Promise<number> {
  const V = c.vocabSize;
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3]; // unknown, control, control
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6); // byte
  }
  for (let i = tokens.length; i < V; i++) {
    tokens.push(`\u2581t${i}`);
    types.push(1); // normal
  }
  const fileType = plan.layers === 'F32' ? 0 : plan.layers === 'Q8_0' ? 7 : 2;
  const meta: Meta[] = [
    ['general.architecture', 'str', 'llama'],
    ['general.name', 'str', 'quantkit synthetic llama'],
    ['general.file_type', 'u32', fileType],
    ['general.alignment', 'u32', ALIGN],
    ['llama.context_length', 'u32', c.maxPositions],
    ['llama.embedding_length', 'u32', c.hiddenSize],
    ['llama.block_count', 'u32', c.numLayers],
    ['llama.feed_forward_length', 'u32', c.intermediateSize],
    ['llama.rope.dimension_count', 'u32', c.headDim],
    ['llama.attention.head_count', 'u32', c.numHeads],
    ['llama.attention.head_count_kv', 'u32', c.numKvHeads],
    ['llama.attention.layer_norm_rms_epsilon', 'f32', c.rmsNormEps],
    ['llama.rope.freq_base', 'f32', c.ropeTheta],
    ['tokenizer.ggml.model', 'str', 'llama'],
    ['tokenizer.ggml.tokens', 'strs', tokens],
    ['tokenizer.ggml.scores', 'f32s', tokens.map((_, i) => -i)],
    ['tokenizer.ggml.token_type', 'i32s', types],
    ['tokenizer.ggml.bos_token_id', 'u32', 1],
    ['tokenizer.ggml.eos_token_id', 'u32', 2],
    ['tokenizer.ggml.unknown_token_id', 'u32', 0],
  ];

  // [gguf name, data, ne (innermost first), type]
  const tensors: [string, Uint8Array, number[], GgmlType][] = [];
  const f32 = (t: Tensor) => t.data as Float32Array;
  const put = (name: string, x: Float32Array, rows: number, K: number, type: GgmlType) => {
    const data = type === 'F32' ? new Uint8Array(x.buffer, x.byteOffset, x.byteLength) : type === 'Q8_0' ? quantizeQ8_0(x, K) : quantizeQ4_0(x, K);
    tensors.push([name, data, rows === 1 ? [K] : [K, rows], type]);
  };
  const mat = (hf: string, gg: string, type: GgmlType, ropeHeads = 0) => {
    const t = weights.get(hf);
    const [N, K] = t.shape as [number, number];
    put(gg, ropeHeads ? interleaveRopeRows(f32(t), ropeHeads, K) : f32(t), N, K, type);
  };
  const vec = (hf: string, gg: string) => put(gg, f32(weights.get(hf)), 1, c.hiddenSize, 'F32');
  mat('model.embed_tokens.weight', 'token_embd.weight', 'F32');
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    vec(`${p}.input_layernorm.weight`, `blk.${i}.attn_norm.weight`);
    mat(`${p}.self_attn.q_proj.weight`, `blk.${i}.attn_q.weight`, plan.layers, c.numHeads);
    mat(`${p}.self_attn.k_proj.weight`, `blk.${i}.attn_k.weight`, plan.layers, c.numKvHeads);
    mat(`${p}.self_attn.v_proj.weight`, `blk.${i}.attn_v.weight`, plan.layers);
    mat(`${p}.self_attn.o_proj.weight`, `blk.${i}.attn_output.weight`, plan.layers);
    vec(`${p}.post_attention_layernorm.weight`, `blk.${i}.ffn_norm.weight`);
    mat(`${p}.mlp.gate_proj.weight`, `blk.${i}.ffn_gate.weight`, plan.layers);
    mat(`${p}.mlp.up_proj.weight`, `blk.${i}.ffn_up.weight`, plan.layers);
    mat(`${p}.mlp.down_proj.weight`, `blk.${i}.ffn_down.weight`, plan.layers);
  }
  vec('model.norm.weight', 'output_norm.weight');
  mat('lm_head.weight', 'output.weight', plan.head);

  const head = new Bytes();
  head.push(Buffer.from('GGUF', 'ascii'));
  head.u32(3);
  head.u64(tensors.length);
  head.u64(meta.length);
  for (const m of meta) writeMeta(head, m);
  let offset = 0;
  const offsets: number[] = [];
  for (const [name, data, ne, type] of tensors) {
    head.str(name);
    head.u32(ne.length);
    for (const n of ne) head.u64(n);
    head.u32(GGML_TYPE_ID[type]);
    head.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(data.length / ALIGN) * ALIGN;
  }
  const pad = (n: number) => new Uint8Array((ALIGN - (n % ALIGN)) % ALIGN);

  // in aligned 8 MiB pieces, as quantkit's safetensors writer does (see
  // alignedChunks): llama.cpp maps this file right after it is written, and
  // page-cache folios are no larger than the writes that made them
  const parts: Uint8Array[] = [...head.parts(), pad(head.length)];
  for (const [, data] of tensors) parts.push(data, pad(data.length));
  const fd = openSync(file, 'w');
  try {
    for (const c of alignedChunks(parts)) writeAllSync(fd, c);
  } finally {
    closeSync(fd);
  }
  return head.length + pad(head.length).length + offset;
}
