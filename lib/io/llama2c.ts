/**
 * llama2.c checkpoint reader (the legacy "v0" .bin written by export.py /
 * used by run.c): a 7 x int32 little-endian header, then fp32 weights.
 *
 * Weights are exposed under Hugging Face Llama names as zero-copy f32 views,
 * in the RAW llama2.c layout. In particular q_proj/k_proj rows are NOT
 * permuted: llama2.c applies RoPE to interleaved pairs (x[2i], x[2i+1]) of
 * each head while HF Llama rotates halves (x[i], x[i + hs/2]). The HF layout
 * of a head is the llama2.c rows reordered as [even rows, then odd rows]:
 *   HF[h*hs + i] = L2C[h*hs + 2i],  HF[h*hs + hs/2 + i] = L2C[h*hs + 2i + 1]
 * (verified on stories260K; see test/llama2c-io.test.ts). Model code picks
 * the RoPE variant (or permutes) according to `format`.
 */
import { QuantkitError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { hugeArray } from '../ops/huge-pages.js';
import { noteCopy } from '../provenance.js';
import { type ReadOptions, asBuffer, mapFileBuffer, readFileUnpooled } from './safetensors.js';
import { assertFinite } from './finite.js';

export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** |vocab_size| from the header. */
  vocabSize: number;
  seqLen: number;
  /** True when the classifier shares the token embedding (header vocab_size > 0). */
  sharedClassifier: boolean;
  headSize: number;
  kvDim: number;
}

export interface Llama2cCheckpoint {
  readonly file: string;
  readonly config: Llama2cConfig;
  /** Always 'llama2c': q/k rows are in llama2.c's interleaved-pair RoPE order. */
  readonly format: 'llama2c';
  /** HF-style names in file order. */
  readonly names: readonly string[];
  readonly tensors: ReadonlyMap<string, Tensor<'f32'>>;
  has(name: string): boolean;
  /** Throws ERR_NOT_FOUND naming the tensor and the file. */
  get(name: string): Tensor<'f32'>;
  /** The whole file; the tensors view into it. */
  readonly buffer: Uint8Array;
}

export const LLAMA2C_HEADER_BYTES = 28;

function bad(file: string, problem: string): QuantkitError {
  return new QuantkitError('ERR_BAD_FILE', `${file}: not a valid llama2.c checkpoint: ${problem}`);
}

/** Parse the 28-byte header and check it is self-consistent (not yet the file size). */
export function parseLlama2cHeader(bytes: Uint8Array, file = '<buffer>'): Llama2cConfig {
  const buf = asBuffer(bytes);
  if (buf.length < LLAMA2C_HEADER_BYTES) throw bad(file, `truncated: ${buf.length} bytes, the header alone needs ${LLAMA2C_HEADER_BYTES}`);
  const h = [0, 1, 2, 3, 4, 5, 6].map((i) => buf.readInt32LE(4 * i));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = h as [number, number, number, number, number, number, number];
  const fields = { dim, hidden_dim: hiddenDim, n_layers: nLayers, n_heads: nHeads, n_kv_heads: nKvHeads, seq_len: seqLen };
  for (const [k, v] of Object.entries(fields)) if (v <= 0) throw bad(file, `header ${k} = ${v} must be positive`);
  if (vocabRaw === 0 || vocabRaw === -2147483648) throw bad(file, `header vocab_size = ${vocabRaw} is invalid`);
  if (dim % nHeads !== 0) throw bad(file, `dim ${dim} is not divisible by n_heads ${nHeads}`);
  if (nKvHeads > nHeads || nHeads % nKvHeads !== 0) throw bad(file, `n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads}`);
  const headSize = dim / nHeads;
  if (headSize % 2 !== 0) throw bad(file, `head size ${headSize} (dim / n_heads) must be even for RoPE`);
  return {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize: Math.abs(vocabRaw),
    seqLen,
    sharedClassifier: vocabRaw > 0,
    headSize,
    kvDim: (dim * nKvHeads) / nHeads,
  };
}

/** [name, shape] in file order; null names mark the skipped RoPE tables. */
function layout(c: Llama2cConfig): [string | null, number[]][] {
  const { dim, hiddenDim: hid, nLayers: L, kvDim: kv, vocabSize: V } = c;
  const per = (field: string, shape: number[]): [string, number[]][] =>
    Array.from({ length: L }, (_, i) => [`model.layers.${i}.${field}.weight`, shape] as [string, number[]]);
  // run.c's weight order: all layers of one kind, then the next kind
  const out: [string | null, number[]][] = [
    ['model.embed_tokens.weight', [V, dim]],
    ...per('input_layernorm', [dim]),
    ...per('self_attn.q_proj', [dim, dim]),
    ...per('self_attn.k_proj', [kv, dim]),
    ...per('self_attn.v_proj', [kv, dim]),
    ...per('self_attn.o_proj', [dim, dim]),
    ...per('post_attention_layernorm', [dim]),
    ...per('mlp.gate_proj', [hid, dim]), // w1
    ...per('mlp.down_proj', [dim, hid]), // w2
    ...per('mlp.up_proj', [hid, dim]), // w3
    ['model.norm.weight', [dim]],
    // freq_cis_real and freq_cis_imag: legacy RoPE tables, unused; run.c skips
    // seq_len * head_size / 2 floats for each
    [null, [(c.seqLen * c.headSize) / 2]],
    [null, [(c.seqLen * c.headSize) / 2]],
  ];
  if (!c.sharedClassifier) out.push(['lm_head.weight', [V, dim]]);
  return out;
}

/** Parse a llama2.c checkpoint already in memory. `file` names it in errors. */
export function parseLlama2c(buffer: Uint8Array, file = '<buffer>'): Llama2cCheckpoint {
  const buf = asBuffer(buffer);
  const config = parseLlama2cHeader(buf, file);
  // Size check first, by arithmetic: a corrupt header can claim 2^31 layers,
  // and the per-tensor layout must never be built for such a file.
  const { dim, hiddenDim: hid, nLayers: L, kvDim: kv, vocabSize: V, seqLen, headSize } = config;
  const perLayer = 2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hid * dim;
  const floats = V * dim + L * perLayer + dim + 2 * ((seqLen * headSize) / 2) + (config.sharedClassifier ? 0 : V * dim);
  const expected = LLAMA2C_HEADER_BYTES + 4 * floats;
  if (!Number.isSafeInteger(expected)) throw bad(file, 'header sizes are absurdly large');
  if (buf.length !== expected) {
    throw bad(
      file,
      `${buf.length} bytes, but the header (dim ${config.dim}, hidden_dim ${config.hiddenDim}, n_layers ${config.nLayers}, ` +
        `n_heads ${config.nHeads}, n_kv_heads ${config.nKvHeads}, vocab ${config.vocabSize}${config.sharedClassifier ? ' tied' : ' untied'}, ` +
        `seq_len ${config.seqLen}) implies exactly ${expected} bytes` + (buf.length < expected ? ' (truncated?)' : ''),
    );
  }
  const parts = layout(config);
  const tensors = new Map<string, Tensor<'f32'>>();
  let off = LLAMA2C_HEADER_BYTES; // 4-aligned, so every f32 view is zero-copy when the Buffer is
  for (const [name, shape] of parts) {
    const n = shape.reduce((a, d) => a * d, 1);
    if (name !== null) {
      const t = Tensor.fromBuffer('f32', shape, buf, off, name);
      assertFinite(t, file, name);
      tensors.set(name, t);
    }
    off += 4 * n;
  }
  return {
    file,
    config,
    format: 'llama2c',
    names: Object.freeze([...tensors.keys()]),
    tensors,
    buffer: buf,
    has: (name) => tensors.has(name),
    get(name) {
      const t = tensors.get(name);
      if (t === undefined) throw new QuantkitError('ERR_NOT_FOUND', `${file}: no tensor named '${name}' in the llama2.c checkpoint`);
      return t;
    },
  };
}

/** Read (or map, see ReadOptions.mmap) a llama2.c .bin checkpoint and parse it. */
export function readLlama2c(file: string, options: ReadOptions = {}): Llama2cCheckpoint {
  const what = 'llama2.c checkpoint';
  // the weights follow the 28-byte header in sizes of whole lines (dims that are multiples of 16)
  return parseLlama2c(options.mmap ? mapFileBuffer(file, what) : readFileUnpooled(file, what, LLAMA2C_HEADER_BYTES), file);
}

/**
 * Reorder the rows of a llama2.c q/k weight ([nHeads * headSize, cols]) into
 * HF rotate-half order (a copy). Provided for model code and tests; the
 * reader itself never permutes.
 */
export function llama2cToHfRoPERows(w: Tensor<'f32'>, nHeads: number): Tensor<'f32'> {
  const [rows, cols] = w.shape as [number, number];
  const hs = rows / nHeads;
  if (w.shape.length !== 2 || !Number.isInteger(hs) || hs % 2 !== 0) {
    throw new RangeError(`llama2cToHfRoPERows: shape [${w.shape.join(', ')}] does not split into ${nHeads} heads of even size`);
  }
  const out = hugeArray(Float32Array, rows * cols); // a weight: on a 64-byte line, as the file's others
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < hs / 2; i++) {
      out.set(w.data.subarray((h * hs + 2 * i) * cols, (h * hs + 2 * i + 1) * cols), (h * hs + i) * cols);
      out.set(w.data.subarray((h * hs + 2 * i + 1) * cols, (h * hs + 2 * i + 2) * cols), (h * hs + hs / 2 + i) * cols);
    }
  }
  noteCopy(out, 'permuted: llama2.c RoPE rows -> rotate-half order');
  return new Tensor('f32', w.shape, out, w.name);
}
