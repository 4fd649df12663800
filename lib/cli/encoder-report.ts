/**
 * `quantkit report` on an encoder (DistilBERT): perplexity does not apply, so
 * fp32 and each quantized config are compared on what encoders are used for,
 * over the sentences of a text (one per line; default: the bundled sample):
 *   - sentence embeddings (mean pooling): cosine similarity to fp32, mean and minimum;
 *   - fill-mask (masked-LM models): the middle token of each sentence masked,
 *     how often the top-1 prediction agrees with fp32's;
 *   - hidden states: SQNR of each block's output against fp32's, in dB.
 * Writes report.md and report.json into --out (replaced atomically).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { QuantkitError } from '../errors.js';
import { footprint } from '../eval/footprint.js';
import { writeDirAtomic } from '../io/atomic.js';
import { DistilBertForMaskedLM, type DistilBertModel, meanPool } from '../models/distilbert.js';
import { loadEncoderSync } from '../models/load-encoder.js';
import { type WeightsFormat, quantizeModel } from '../nn/quantize-model.js';
import type { Tensor } from '../tensor.js';
import { type CliIO, printJson, progressBar } from './io.js';
import { readTextFile } from './load.js';
import { SAMPLE_TEXT } from './sample-text.js';
import { type QuantFlags, quantLabel, quantOptions, readCalibration } from './weights.js';

export interface EncoderReportFlags extends QuantFlags {
  out: string;
  force?: boolean;
  weights: WeightsFormat[];
  text?: string;
  json?: boolean;
}

/** At most this many sentences: enough for stable averages, quick on a CPU. */
const MAX_SENTENCES = 64;

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

function sqnrDb(ref: Float32Array, x: Float32Array): number {
  let sig = 0;
  let err = 0;
  for (let i = 0; i < ref.length; i++) {
    sig += ref[i]! * ref[i]!;
    err += (ref[i]! - x[i]!) ** 2;
  }
  return err === 0 ? Infinity : 10 * Math.log10(sig / err);
}

interface Measured {
  label: string;
  footprint: number;
  embeddings: Tensor<'f32'>;
  top1: number[] | null;
  layers: Tensor<'f32'>[];
}

export async function encoderReportCommand(io: CliIO, modelPath: string, flags: EncoderReportFlags): Promise<void> {
  const out = path.resolve(flags.out);
  if (fs.existsSync(out) && !flags.force) throw new QuantkitError('ERR_UNSUPPORTED', `--out ${flags.out} already exists; pass --force to replace it`);
  const first = loadEncoderSync(modelPath);
  if (!first.tokenizer) throw new QuantkitError('ERR_NOT_FOUND', `${modelPath}: no tokenizer.json or vocab.txt; report needs text`);
  const P = first.config.maxPositions;
  const sentences = (flags.text !== undefined ? readTextFile(flags.text) : SAMPLE_TEXT)
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(0, MAX_SENTENCES);
  if (sentences.length === 0) throw new RangeError(`report: the text has no non-empty line`);
  const batch = sentences.map((s) => {
    const ids = first.encode(s);
    return ids.length <= P ? ids : [...ids.slice(0, P - 1), ids[ids.length - 1]!];
  });
  const maskId = (first.tokenizer as { tokenToId?: (t: string) => number | undefined }).tokenToId?.('[MASK]');
  const fillMask = first.kind === 'masked-lm' && maskId !== undefined;
  // the middle token of each sentence (between [CLS] and [SEP]) masked
  const masked = batch.map((ids) => {
    const m = [...ids];
    if (m.length >= 3) m[1 + Math.floor((m.length - 2) / 2)] = maskId!;
    return m;
  });
  const maskPos = masked.map((ids) => ids.indexOf(maskId!));

  const measure = async (label: string, enc: ReturnType<typeof loadEncoderSync>): Promise<Measured> => {
    const encoder: DistilBertModel = enc.model instanceof DistilBertForMaskedLM ? enc.model.distilbert : (enc.model as DistilBertModel);
    const embeddings = meanPool(await encoder.forwardAsync(batch));
    let top1: number[] | null = null;
    if (fillMask) {
      const logits = await (enc.model as DistilBertForMaskedLM).forwardAsync(masked);
      const V = enc.config.vocabSize;
      top1 = logits.map((l, b) => {
        const p = maskPos[b]!;
        if (p < 0) return -1;
        let best = 0;
        for (let v = 1; v < V; v++) if (l.data[p * V + v]! > l.data[p * V + best]!) best = v;
        return best;
      });
    }
    return { label, footprint: footprint(enc.model).bytes, embeddings, top1, layers: encoder.layerOutputs(batch) };
  };

  const weights = [...new Set(flags.weights)];
  const bar = progressBar(io, 'report', 1 + weights.length);
  const results: Measured[] = [];
  try {
    results.push(await measure('fp32', first));
    bar.update(1);
    for (const w of weights) {
      const opts = quantOptions(w, flags, readCalibration(flags));
      const enc = loadEncoderSync(modelPath); // each config starts from the float weights
      quantizeModel(enc.model, opts); // (the report's own bar is on screen)
      results.push(await measure(quantLabel(opts), enc));
      bar.update(results.length);
    }
  } finally {
    bar.stop();
  }

  const fp32 = results[0]!;
  const D = first.config.dim;
  const rows = results.map((r) => {
    const cos = sentences.map((_, b) => cosine(fp32.embeddings.data.subarray(b * D, (b + 1) * D), r.embeddings.data.subarray(b * D, (b + 1) * D)));
    const agree = r.top1 && fp32.top1 ? r.top1.filter((t, b) => t >= 0 && t === fp32.top1![b]).length / fp32.top1.filter((t) => t >= 0).length : null;
    return {
      label: r.label,
      footprint: r.footprint,
      cosineMean: cos.reduce((a, c) => a + c, 0) / cos.length,
      cosineMin: Math.min(...cos),
      fillMaskTop1Agreement: agree,
      layerSqnrDb: r.layers.map((x, i) => sqnrDb(fp32.layers[i]!.data, x.data)),
    };
  });
  const json = { model: modelPath, kind: first.kind, sentences: sentences.length, text: flags.text ?? '(bundled sample)', results: rows };
  const f = (x: number, d = 4) => (Number.isFinite(x) ? x.toFixed(d) : 'exact');
  const md = [
    `# quantkit report: ${path.basename(modelPath)} (${first.kind === 'masked-lm' ? 'encoder with a masked-LM head' : 'encoder'})`,
    '',
    `${sentences.length} sentences of ${flags.text ? `\`${flags.text}\`` : 'the bundled sample text'}, one per line. Perplexity does not apply to an encoder; instead, against fp32:`,
    '',
    '| weights | footprint (bytes) | embedding cosine, mean | min | fill-mask top-1 agreement |',
    '|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.label} | ${r.footprint.toLocaleString('en-US')} | ${f(r.cosineMean, 6)} | ${f(r.cosineMin, 6)} | ${r.fillMaskTop1Agreement === null ? '-' : `${(100 * r.fillMaskTop1Agreement).toFixed(1)} %`} |`),
    '',
    '## Hidden-state SQNR per block (dB, higher is closer to fp32)',
    '',
    `| weights | ${fp32.layers.map((_, i) => `block ${i}`).join(' | ')} |`,
    `|---|${fp32.layers.map(() => '---:').join('|')}|`,
    ...rows.slice(1).map((r) => `| ${r.label} | ${r.layerSqnrDb.map((x) => f(x, 1)).join(' | ')} |`),
    '',
  ];
  await fsp.mkdir(path.dirname(out), { recursive: true });
  await writeDirAtomic(out, async (dir) => {
    await fsp.writeFile(path.join(dir, 'report.md'), md.join('\n'));
    await fsp.writeFile(path.join(dir, 'report.json'), JSON.stringify(json, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : x), 2) + '\n');
  });
  if (flags.json) return printJson(io, json);
  io.out(
    rows.map((r) => `${r.label.padEnd(24)} footprint ${r.footprint.toLocaleString('en-US').padStart(12)} B   cosine ${f(r.cosineMean, 6)}   fill-mask top-1 ${r.fillMaskTop1Agreement === null ? '-' : `${(100 * r.fillMaskTop1Agreement).toFixed(1)} %`}`).join('\n') +
      `\nwrote ${path.join(flags.out, 'report.md')} and report.json\n`,
  );
}
