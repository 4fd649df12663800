/**
 * Footprints from a config alone: parameter count and the exact bytes
 * quantkit would hold for a model, in f32 or bf16, as loaded or after
 * quantizeModel, computed from the tensors its builder reads (WeightSpec)
 * without reading or allocating a weight. The byte rules are footprint()'s:
 * Linear weights and embeddings in the file's dtype, norms, biases and
 * position tables in f32, a quantized layer as its codes + f32 scales (+ one
 * zero point byte per scale when asymmetric), a tied tensor once.
 */
import type { WeightSpec } from '../models/config.js';
import { distilbertWeightSpecs, parseDistilBertConfig } from '../models/distilbert.js';
import { archSpec, parseModelConfig } from '../models/registry.js';
import { type QuantizeModelOptions, layerQuantizeOptions, makeExcludeMatcher, resolveQuantConfig } from '../nn/quantize-model.js';
import { packedRowBytes, rowsK, scaleCount } from '../quant/qtypes.js';

export interface SpecFootprintOptions {
  /** The stored dtype of Linear weights and embeddings. */
  dtype: 'f32' | 'bf16';
  /** quantizeModel options; absent: as loaded. */
  quantize?: QuantizeModelOptions;
}

export function parameterCount(specs: readonly WeightSpec[]): number {
  return specs.filter((s) => s.tiedTo === undefined).reduce((a, s) => a + s.shape.reduce((x, d) => x * d, 1), 0);
}

/** Bytes quantkit holds for the model `specs` describe (see the header). */
export function footprintFromSpecs(specs: readonly WeightSpec[], o: SpecFootprintOptions): number {
  const el = o.dtype === 'f32' ? 4 : 2;
  const cfg = o.quantize ? resolveQuantConfig(o.quantize, 'footprintFromSpecs') : undefined;
  const excluded = cfg ? makeExcludeMatcher(cfg.exclude) : () => true;
  let bytes = 0;
  for (const s of specs) {
    const n = s.shape.reduce((x, d) => x * d, 1);
    if (s.kind === 'f32') bytes += 4 * n;
    else if (s.kind === 'matrix') bytes += el * n;
    else {
      const module = s.name.replace(/\.weight$/, '');
      const q = cfg && !excluded(module) ? layerQuantizeOptions(cfg, module, s.shape) : null;
      if (q === null) {
        if (s.tiedTo === undefined) bytes += el * n; // a tied float head shares its embedding
        continue;
      }
      const [rows, K] = rowsK(s.shape);
      const scales = scaleCount(q.granularity!, rows, K, q.groupSize);
      bytes += rows * packedRowBytes(q.bits, K) + 4 * scales + (q.scheme === 'asymmetric' ? scales : 0);
    }
  }
  return bytes;
}

export interface ConfigFootprintRow {
  /** 'f32', 'bf16', 'int8 per-channel (bf16 rest)', ... */
  label: string;
  dtype: 'f32' | 'bf16';
  weights: 'float' | 'int8' | 'int4';
  /** The output head (lm_head, vocab_projector) left in float. */
  bytes: number;
  /** The head quantized too (quantized rows only). */
  bytesHeadQuantized?: number;
}

export interface ConfigFootprint {
  arch: string;
  kind: 'causal-lm' | 'encoder' | 'masked-lm';
  /** The output projection's module name. */
  head: string | null;
  parameters: number;
  rows: ConfigFootprintRow[];
}

/** Parameter count and footprints of the model a config.json describes (no weights needed). */
export function configFootprint(json: Record<string, unknown>, file = 'config.json'): ConfigFootprint {
  let specs: WeightSpec[];
  let arch: string;
  let kind: ConfigFootprint['kind'];
  let head: string | null;
  if (json.model_type === 'distilbert') {
    const c = parseDistilBertConfig(json, file);
    const archs = Array.isArray(json.architectures) ? json.architectures : [];
    const mlm = archs.includes('DistilBertForMaskedLM');
    specs = distilbertWeightSpecs(c, mlm);
    [arch, kind, head] = ['distilbert', mlm ? 'masked-lm' : 'encoder', mlm ? 'vocab_projector' : null];
  } else {
    const c = parseModelConfig(json, file);
    specs = archSpec(c.arch).weightSpecs(c);
    [arch, kind, head] = [c.arch, 'causal-lm', 'lm_head'];
  }
  const rows: ConfigFootprintRow[] = [];
  for (const dtype of ['f32', 'bf16'] as const) rows.push({ label: dtype, dtype, weights: 'float', bytes: footprintFromSpecs(specs, { dtype }) });
  for (const weights of ['int8', 'int4'] as const) {
    for (const dtype of ['f32', 'bf16'] as const) {
      const q = (exclude: string[]) => footprintFromSpecs(specs, { dtype, quantize: { weights, exclude } });
      rows.push({
        label: `${weights === 'int8' ? 'int8 per-channel' : 'int4 g32'} (${dtype} rest)`,
        dtype,
        weights,
        bytes: q(head ? [head] : []),
        ...(head ? { bytesHeadQuantized: q([]) } : {}),
      });
    }
  }
  return { arch, kind, head, parameters: parameterCount(specs), rows };
}
