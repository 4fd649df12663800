/**
 * Quantization error report, per Linear layer, for one weights config, on
 * the float model (which is left unchanged):
 *   - weight:  W vs dequantize(quantize(W))
 *   - output:  X·W^T + b vs the QLinear's output on the same X, where X are
 *              real activations: each layer's inputs recorded during a float
 *              forward over a few tokens.
 * Each as SQNR in dB = 10 log10(sum ref^2 / sum (ref - test)^2), max absolute
 * error, and relative Frobenius error ||ref - test|| / ||ref||.
 *
 * Activations are captured by swapping each Linear for a RecordingLinear (a
 * Linear over the same weight that also copies its input) through
 * parent.replaceChild, running the forward, and swapping the originals back,
 * even when the forward throws.
 */
import { rangeError, typeError } from '../errors.js';
import type { CausalLM } from '../models/causal-lm.js';
import { Linear, QLinear } from '../nn/linear.js';
import type { Module } from '../nn/module.js';
import { findLinears, layerQuantizeOptions, makeExcludeMatcher, resolveQuantConfig, type QuantizeModelOptions, type ScaleGroupResult } from '../nn/quantize-model.js';
import { quantize, toFloat32 } from '../quant/quantize.js';
import { Tensor } from '../tensor.js';
import { barChartSvg, histogramSvg } from './svg.js';

export interface ErrorMetrics {
  /** dB; Infinity when there is no error. */
  sqnrDb: number;
  maxAbsErr: number;
  relFrobErr: number;
}

export interface LayerErrorRow {
  name: string;
  /** [out_features, in_features] */
  shape: [number, number];
  bits: 8 | 4;
  granularity: string;
  groupSize: number | undefined;
  weight: ErrorMetrics;
  output: ErrorMetrics;
  /** Activation rows the output metrics were computed on. */
  rows: number;
}

export interface ErrorReport {
  weights: string;
  rows: LayerErrorRow[];
  table: string;
  /** SVG bar chart of weight and output SQNR per layer. */
  sqnrSvg: string;
  /** SVG histogram of original vs dequantized weights of `histogramLayer`. */
  histogramSvg: string;
  histogramLayer: string;
}

export interface ErrorReportOptions {
  /** Most activation rows kept per layer (default 256). */
  maxRows?: number;
  /** Layer for the histogram (default: the first reported layer). */
  histogramLayer?: string;
}

export function errorMetrics(ref: ArrayLike<number>, test: ArrayLike<number>): ErrorMetrics {
  let sig = 0;
  let err = 0;
  let maxAbs = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]!;
    const d = r - test[i]!;
    sig += r * r;
    err += d * d;
    maxAbs = Math.max(maxAbs, Math.abs(d));
  }
  return {
    sqnrDb: err === 0 ? Infinity : 10 * Math.log10(sig / err),
    maxAbsErr: maxAbs,
    relFrobErr: sig === 0 ? (err === 0 ? 0 : Infinity) : Math.sqrt(err / sig),
  };
}

/** A Linear over the same weight and bias that keeps a copy of the first `maxRows` input rows. */
class RecordingLinear extends Linear {
  readonly recorded: Float32Array[] = [];
  rowCount = 0;
  constructor(
    inner: Linear,
    private readonly maxRows: number,
  ) {
    super(inner.weight, inner.bias);
  }
  override forward(x: Tensor): Tensor<'f32'> {
    const K = this.inFeatures;
    const rows = x.size / K;
    const take = Math.min(rows, this.maxRows - this.rowCount);
    if (take > 0) {
      this.recorded.push((x.data as Float32Array).slice(0, take * K));
      this.rowCount += take;
    }
    return super.forward(x);
  }
  inputs(): Tensor<'f32'> {
    const out = new Float32Array(this.rowCount * this.inFeatures);
    let off = 0;
    for (const r of this.recorded) {
      out.set(r, off);
      off += r.length;
    }
    return new Tensor('f32', [this.rowCount, this.inFeatures], out);
  }
}

/** Inputs [rows <= maxRows, K] of `layers` (Linears of the float model) in one forward over tokens; the layers are back afterwards. */
function recordInputs(model: CausalLM, layers: readonly { parent: Module; local: string; layer: Linear }[], tokens: readonly number[], maxRows: number): Tensor<'f32'>[] {
  const recorders = layers.map((l) => new RecordingLinear(l.layer, maxRows));
  try {
    layers.forEach((l, i) => l.parent.replaceChild(l.local, recorders[i]!));
    model.forward(tokens.slice(0, model.config.maxPositions), model.createCache(Math.min(tokens.length, model.config.maxPositions)));
  } finally {
    layers.forEach((l) => l.parent.replaceChild(l.local, l.layer));
  }
  return recorders.map((r) => r.inputs());
}

/** Per-layer output error of one quantized model, against the float model on the float model's own activations. */
export interface LayerOutputErrors {
  /** The float model's Linear layers that are quantized (QLinear) in the other model, in model order. */
  names: string[];
  output: ErrorMetrics[];
  /** Activation rows the metrics were computed on. */
  rows: number;
}

/**
 * How far each quantized layer of `quantized` (a copy of `float` given to
 * quantizeModel, by any method) moves that layer's output, each layer on its
 * own: X·W^T + b of the float layer vs the quantized layer's output on the
 * same X, the activations of a float forward over `tokens` (as errorReport's
 * Y columns; with round to nearest the figures are the same). A layer
 * quantized with activation-aware scales (`scaled`, from the summary) reads
 * X / s and, when it is a scale group's prev, gives y / s on those rows:
 * both are undone, so every method is compared on the same footing.
 */
export function layerOutputErrors(float: CausalLM, quantized: Module, tokens: readonly number[], scaled: readonly ScaleGroupResult[] = [], options: { maxRows?: number } = {}): LayerOutputErrors {
  if (!Array.isArray(tokens) || tokens.length === 0) throw typeError('layerOutputErrors', 'tokens', 'must be a non-empty array of token ids');
  const qmods = new Map(quantized.namedModules());
  const layers = findLinears(float).filter((l) => qmods.get(l.name) instanceof QLinear);
  const inputs = recordInputs(float, layers, tokens, options.maxRows ?? 256);
  const inScale = new Map<string, Float32Array>();
  const outScale = new Map<string, { s: Float32Array; off: number }>();
  for (const g of scaled) {
    for (const n of g.layers) inScale.set(n, g.scales);
    outScale.set(g.prev, { s: g.scales, off: g.rowOffset });
  }
  const output = layers.map((l, i) => {
    const x = inputs[i]!;
    const K = l.layer.inFeatures, N = l.layer.outFeatures, T = x.shape[0]!;
    const sIn = inScale.get(l.name);
    const xq = sIn ? new Tensor('f32', [T, K], x.data.map((v, j) => v / sIn[j % K]!)) : x;
    const y = (qmods.get(l.name) as QLinear).forward(xq).data;
    const so = outScale.get(l.name);
    if (so) for (let t = 0; t < T; t++) for (let c = 0; c < so.s.length; c++) y[t * N + so.off + c] = y[t * N + so.off + c]! * so.s[c]!;
    return errorMetrics(l.layer.forward(x).data, y);
  });
  return { names: layers.map((l) => l.name), output, rows: inputs[0]?.shape[0] ?? 0 };
}

/** A fixed-width text table of output SQNR (dB) per layer, a column per method. */
export function methodTable(columns: readonly { label: string; errors: LayerOutputErrors }[]): string {
  const names = columns[0]?.errors.names ?? [];
  const head = ['layer', ...columns.map((c) => `${c.label} Y SQNR dB`)];
  const body = names.map((n) => [n, ...columns.map((c) => {
    const i = c.errors.names.indexOf(n);
    return i < 0 ? '-' : fmt(c.errors.output[i]!.sqnrDb);
  })]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n') + '\n';
}

function fmt(v: number, digits = 2): string {
  if (v === Infinity) return 'inf';
  if (!Number.isFinite(v)) return String(v);
  return Math.abs(v) >= 1e-3 || v === 0 ? v.toFixed(digits) : v.toExponential(1);
}

/** A fixed-width text table of the rows. */
export function errorTable(rows: readonly LayerErrorRow[]): string {
  const head = ['layer', 'shape', 'quant', 'W SQNR dB', 'W max|err|', 'W rel err', 'Y SQNR dB', 'Y max|err|', 'Y rel err'];
  const body = rows.map((r) => [
    r.name,
    `${r.shape[0]}x${r.shape[1]}`,
    `int${r.bits} ${r.granularity === 'group' ? `g${r.groupSize}` : r.granularity}`,
    fmt(r.weight.sqnrDb),
    fmt(r.weight.maxAbsErr, 4),
    fmt(r.weight.relFrobErr, 4),
    fmt(r.output.sqnrDb),
    fmt(r.output.maxAbsErr, 4),
    fmt(r.output.relFrobErr, 4),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n') + '\n';
}

/**
 * Build the report on a float model: `tokens` feed the activation capture
 * (a few dozen tokens suffice). Layers excluded by `quant.exclude` (or kept by
 * its groupFallback) are not reported.
 */
export function errorReport(model: CausalLM, tokens: readonly number[], quant: QuantizeModelOptions, options: ErrorReportOptions = {}): ErrorReport {
  const cfg = resolveQuantConfig(quant, 'errorReport');
  if (!Array.isArray(tokens) || tokens.length === 0) throw typeError('errorReport', 'tokens', 'must be a non-empty array of token ids');
  const maxRows = options.maxRows ?? 256;
  const excluded = makeExcludeMatcher(cfg.exclude);
  const layers = findLinears(model)
    .filter((l) => !excluded(l.name))
    .map((l) => ({ ...l, opts: layerQuantizeOptions(cfg, l.name, l.layer.weight.shape) }))
    .filter((l) => l.opts !== null);

  const histogramLayer = options.histogramLayer ?? layers[0]?.name ?? '';
  if (options.histogramLayer !== undefined && !layers.some((l) => l.name === histogramLayer)) {
    throw rangeError('errorReport', 'options.histogramLayer', `'${histogramLayer}' is not a Linear layer this config quantizes`);
  }
  const inputs = recordInputs(model, layers, tokens, maxRows);

  let histogram = '';
  const rows: LayerErrorRow[] = layers.map((l, i) => {
    const q = quantize(l.layer.weight, l.opts!);
    const w = toFloat32(l.layer.weight);
    const deq = q.dequantize();
    const x = inputs[i]!;
    const yRef = l.layer.forward(x);
    const yQ = new QLinear(q, l.layer.bias).forward(x);
    if (l.name === histogramLayer) {
      histogram = histogramSvg(
        [
          { label: 'original', values: w.data },
          { label: `dequantized (int${cfg.bits})`, values: deq.data },
        ],
        { title: `Weights of ${l.name}: original vs int${cfg.bits}`, valueLabel: 'weight value' },
      );
    }
    return {
      name: l.name,
      shape: [q.shape[0]!, q.shape[1]!],
      bits: cfg.bits,
      granularity: q.granularity,
      groupSize: q.granularity === 'group' ? q.groupSize : undefined,
      weight: errorMetrics(w.data, deq.data),
      output: errorMetrics(yRef.data, yQ.data),
      rows: x.shape[0]!,
    };
  });
  const label = `${cfg.weights} ${cfg.scheme}${cfg.granularity === 'group' ? ` g${cfg.groupSize}` : ` per-${cfg.granularity}`}`;
  const cap = (v: number) => (Number.isFinite(v) ? v : 999);
  return {
    weights: label,
    rows,
    table: errorTable(rows),
    sqnrSvg: barChartSvg(
      rows.flatMap((r) => [`${r.name} (W)`, `${r.name} (Y)`]),
      rows.flatMap((r) => [cap(r.weight.sqnrDb), cap(r.output.sqnrDb)]),
      { title: `SQNR per layer, ${label} (W = weight, Y = output)`, valueLabel: 'SQNR (dB), higher is better', colors: ['#4878d0', '#ee854a'] },
    ),
    histogramSvg: histogram,
    histogramLayer,
  };
}
