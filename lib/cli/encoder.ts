/**
 * The encoder commands:
 *   quantkit fill-mask <model> "The capital of France is [MASK]."  top-k tokens per [MASK]
 *   quantkit embed <model> --text lines.txt [--out vectors.f32]     one mean-pooled vector per line
 * Both take --weights int8|int4 (and the quantization flags) to run the
 * quantized model.
 */
import * as path from 'node:path';
import { QuantkitError } from '../errors.js';
import { writeAllSync, writeFileAtomicSync } from '../io/atomic.js';
import { DistilBertForMaskedLM, type DistilBertModel, meanPool } from '../models/distilbert.js';
import { type LoadedEncoder, loadEncoderSync } from '../models/load-encoder.js';
import type { WeightsFormat } from '../nn/quantize-model.js';
import type { Tensor } from '../tensor.js';
import { type CliIO, printJson } from './io.js';
import { readTextFile } from './load.js';
import { type QuantFlags, quantOptions, readCalibration, quantizeWithProgress } from './weights.js';

interface EncoderFlags extends QuantFlags {
  weights?: WeightsFormat | 'fp32';
  json?: boolean;
}

function loadForCli(io: CliIO, modelPath: string, flags: EncoderFlags): LoadedEncoder {
  const enc = loadEncoderSync(modelPath);
  if (flags.weights !== undefined && flags.weights !== 'fp32') quantizeWithProgress(io, enc.model, quantOptions(flags.weights, flags, readCalibration(flags)));
  return enc;
}

export interface FillMaskFlags extends EncoderFlags {
  topK: number;
}

export async function fillMaskCommand(io: CliIO, modelPath: string, text: string, flags: FillMaskFlags): Promise<void> {
  const enc = loadForCli(io, modelPath, flags);
  if (enc.kind !== 'masked-lm') throw new QuantkitError('ERR_UNSUPPORTED', `${modelPath} has no masked-LM head (vocab_transform, vocab_projector): fill-mask needs one`);
  const tok = enc.tokenizer;
  if (!tok) throw new QuantkitError('ERR_NOT_FOUND', `${modelPath}: no tokenizer.json or vocab.txt`);
  const maskId = (tok as { tokenToId?: (t: string) => number | undefined }).tokenToId?.('[MASK]');
  if (maskId === undefined) throw new QuantkitError('ERR_UNSUPPORTED', `${modelPath}: the tokenizer has no [MASK] token`);
  const ids = enc.encode(text);
  const positions = ids.flatMap((id, i) => (id === maskId ? [i] : []));
  if (positions.length === 0) throw new RangeError(`fill-mask: the text has no [MASK] token: ${JSON.stringify(text)}`);
  const [logits] = await (enc.model as DistilBertForMaskedLM).forwardAsync([ids]);
  const V = enc.config.vocabSize;
  const masks = positions.map((pos) => {
    const row = logits!.data.subarray(pos * V, (pos + 1) * V);
    let m = -Infinity;
    for (const v of row) m = Math.max(m, v);
    let z = 0;
    for (const v of row) z += Math.exp(v - m);
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b]! - row[a]!);
    return {
      position: pos,
      predictions: order.slice(0, flags.topK).map((id) => ({ token: tok.idToToken(id) ?? `<${id}>`, id, probability: Math.exp(row[id]! - m) / z })),
    };
  });
  if (flags.json) return printJson(io, { model: modelPath, text, masks });
  const lines: string[] = [];
  for (const mk of masks) {
    lines.push(`[MASK] at token ${mk.position}:`);
    for (const p of mk.predictions) lines.push(`  ${p.token.padEnd(16)} ${p.probability.toFixed(4)}`);
  }
  io.out(lines.join('\n') + '\n');
}

export interface EmbedFlags extends EncoderFlags {
  text: string;
  out?: string;
  batch: number;
}

export async function embedCommand(io: CliIO, modelPath: string, flags: EmbedFlags): Promise<void> {
  const enc = loadForCli(io, modelPath, flags);
  const encoder: DistilBertModel = enc.model instanceof DistilBertForMaskedLM ? enc.model.distilbert : (enc.model as DistilBertModel);
  const lines = readTextFile(flags.text)
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (lines.length === 0) throw new RangeError(`embed: --text ${flags.text} has no non-empty line`);
  const P = enc.config.maxPositions;
  const vectors: Tensor<'f32'>[] = [];
  for (let i = 0; i < lines.length; i += flags.batch) {
    // a line longer than the model's context keeps its first tokens and the final [SEP]
    const batch = lines.slice(i, i + flags.batch).map((l) => {
      const ids = enc.encode(l);
      return ids.length <= P ? ids : [...ids.slice(0, P - 1), ids[ids.length - 1]!];
    });
    vectors.push(meanPool(await encoder.forwardAsync(batch)));
  }
  const D = enc.config.dim;
  const all = new Float32Array(lines.length * D);
  let off = 0;
  for (const v of vectors) {
    all.set(v.data, off);
    off += v.data.length;
  }
  if (flags.out !== undefined) {
    const out = path.resolve(flags.out);
    writeFileAtomicSync(out, (fd) => writeAllSync(fd, new Uint8Array(all.buffer, all.byteOffset, all.byteLength)));
    const summary = { model: modelPath, lines: lines.length, dim: D, out: flags.out, format: 'f32 little-endian, row-major [lines, dim]' };
    if (flags.json) return printJson(io, summary);
    io.out(`wrote ${lines.length} x ${D} f32 (little-endian, one row per line) to ${flags.out}\n`);
    return;
  }
  // JSON lines: one vector per input line
  const rows: string[] = [];
  for (let r = 0; r < lines.length; r++) rows.push(JSON.stringify(Array.from(all.subarray(r * D, (r + 1) * D))));
  io.out(rows.join('\n') + '\n');
}
