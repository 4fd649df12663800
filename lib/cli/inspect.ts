/**
 * `quantkit inspect <model>`: what the folder holds (a causal LM, an encoder,
 * an encoder with its masked-LM head), its config, size, layers, footprint
 * and module tree; with --weights, also the tree after quantizeModel (which
 * layers became QLinear, with what format, and which stayed float).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QuantkitError } from '../errors.js';
import { configFootprint } from '../eval/config-footprint.js';
import { footprint } from '../eval/footprint.js';
import { ENCODER_MODEL_TYPES } from '../models/config.js';
import { loadEncoderSync } from '../models/load-encoder.js';
import { Linear, QLinear } from '../nn/linear.js';
import type { Module } from '../nn/module.js';
import { moduleTree } from '../nn/module-tree.js';
import { copyReason, isMapped } from '../provenance.js';
import { QuantizedTensor } from '../quant/qtensor.js';
import { getThreads, isa } from '../runtime.js';
import type { QuantizeModelSummary, WeightsFormat } from '../nn/quantize-model.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { type CliIO, formatBytes, printJson } from './io.js';
import { loadCliModel } from './load.js';
import { type QuantFlags, fallbackLines, quantLabel, quantOptions, readCalibration, quantizeWithProgress, requireFloat } from './weights.js';

export interface InspectFlags extends QuantFlags {
  tokenizer?: string;
  weights?: WeightsFormat | 'fp32';
  json?: boolean;
}

interface Inspected {
  kind: 'causal-lm' | 'encoder' | 'masked-lm';
  model: Module & { config: object };
  source: string;
  tokenizer: Tokenizer | undefined;
  quantization: unknown;
}

/** A folder whose config.json names an encoder architecture (DistilBERT). */
export function isEncoderFolder(p: string): boolean {
  if (!fs.existsSync(p) || !fs.statSync(p).isDirectory()) return false;
  const cfg = path.join(p, 'config.json');
  if (!fs.existsSync(cfg)) return false;
  try {
    const mt = (JSON.parse(fs.readFileSync(cfg, 'utf8')) as { model_type?: unknown }).model_type;
    return typeof mt === 'string' && ENCODER_MODEL_TYPES.includes(mt);
  } catch {
    return false; // the causal-LM loader reports a bad config.json
  }
}

// Loaded mapped (as `quantkit serve` loads), so the report can tell which
// tensors are views of the file and which the loader had to convert.
function load(io: CliIO, modelPath: string, flags: InspectFlags): Inspected {
  if (fs.existsSync(modelPath) && fs.statSync(modelPath).isDirectory() && isEncoderFolder(modelPath)) {
    const e = loadEncoderSync(modelPath, { mmap: true });
    return { kind: e.kind, model: e.model, source: 'hf', tokenizer: e.tokenizer, quantization: null };
  }
  const m = loadCliModel(modelPath, flags.tokenizer, io, { mmap: true });
  if (flags.weights !== undefined && flags.weights !== 'fp32') requireFloat(m, '--weights');
  return { kind: 'causal-lm', model: m.model, source: m.source, tokenizer: m.tokenizer, quantization: m.source === 'quantkit' ? m.sourceConfig.quantization_config : null };
}

function linearLayers(model: Module): { name: string; kind: string; shape: number[]; format: string }[] {
  const layers: { name: string; kind: string; shape: number[]; format: string }[] = [];
  for (const [name, mod] of model.namedModules()) {
    if (mod instanceof QLinear) {
      const q = mod.qweight;
      layers.push({ name, kind: 'QLinear', shape: [...q.shape], format: `int${q.bits} ${q.scheme} ${q.granularity === 'group' ? `g${q.groupSize}${q.shape[1]! % q.groupSize ? ` (last ${q.shape[1]! % q.groupSize})` : ''}` : q.granularity}${q.scaleDtype === 'f16' ? ' f16 scales' : ''}` });
    } else if (mod instanceof Linear) {
      layers.push({ name, kind: 'Linear', shape: [...mod.weight.shape], format: mod.weight.dtype });
    }
  }
  return layers;
}

interface Converted {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
  reason: string;
}

/**
 * Of a model loaded with mmap: the tensors that are views of the mapped
 * files, and those the loader converted or copied (each with its reason;
 * 'made at load' when no loader recorded one). A tied weight counts once.
 */
export function mappedLoad(model: Module): { mappedTensors: number; mappedBytes: number; converted: Converted[] } {
  let mappedTensors = 0, mappedBytes = 0;
  const converted: Converted[] = [];
  const seen = new Set<ArrayBufferView>();
  for (const [name, t] of model.namedTensors()) {
    if (seen.has(t.data)) continue;
    seen.add(t.data);
    const views: ArrayBufferView[] = t instanceof QuantizedTensor ? [t.data, t.scaleData, ...(t.zeroPoints ? [t.zeroPoints] : [])] : [t.data];
    const copied = views.filter((v) => !isMapped(v));
    if (copied.length === 0) {
      mappedTensors++;
      mappedBytes += views.reduce((a, v) => a + v.byteLength, 0);
      continue;
    }
    converted.push({
      name,
      dtype: t instanceof QuantizedTensor ? `int${t.bits}` : t.dtype,
      shape: [...t.shape],
      bytes: copied.reduce((a, v) => a + v.byteLength, 0),
      reason: copied.map((v) => copyReason(v)).find((r) => r !== undefined) ?? 'made at load',
    });
  }
  return { mappedTensors, mappedBytes, converted };
}

function mappedLoadLines(r: ReturnType<typeof mappedLoad>): string[] {
  const total = r.mappedTensors + r.converted.length;
  if (r.converted.length === 0) return [`mapped load: all ${total} tensors (${formatBytes(r.mappedBytes)}) are views of the mapped file(s), none converted`];
  const copied = r.converted.reduce((a, c) => a + c.bytes, 0);
  const w = Math.max(...r.converted.map((c) => c.name.length));
  return [
    `mapped load: ${r.mappedTensors} of ${total} tensors (${formatBytes(r.mappedBytes)}) are views of the mapped file(s); ${r.converted.length} converted at load (${formatBytes(copied)} of private memory per process):`,
    ...r.converted.map((c) => `  ${c.name.padEnd(w)}  ${c.dtype} [${c.shape.join(', ')}]  ${formatBytes(c.bytes)}  ${c.reason}`),
  ];
}

/** A folder with config.json and no weights: what the model would take, from the config alone. */
function isConfigOnly(p: string): boolean {
  return (
    fs.existsSync(p) &&
    fs.statSync(p).isDirectory() &&
    fs.existsSync(path.join(p, 'config.json')) &&
    !fs.readdirSync(p).some((f) => f.endsWith('.safetensors') || f === 'model.safetensors.index.json')
  );
}

function inspectConfigOnly(io: CliIO, folder: string, flags: InspectFlags): void {
  const file = path.join(folder, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new QuantkitError('ERR_BAD_CONFIG', `${file}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new QuantkitError('ERR_BAD_CONFIG', `${file}: must hold a JSON object`);
  const r = configFootprint(json as Record<string, unknown>, file);
  if (flags.json) return printJson(io, { model: folder, source: 'config only (no weights read)', ...r });
  const n = (b: number | undefined) => (b === undefined ? '-' : b.toLocaleString('en-US')).padStart(16);
  const lines = [
    `model:       ${folder} (config only: no weights read or allocated)`,
    `kind:        ${r.kind}`,
    `arch:        ${r.arch}`,
    `parameters:  ${r.parameters.toLocaleString('en-US')}`,
    `footprint in bytes, as quantkit would hold it (norms, biases, position tables and scales in f32):`,
    `  ${'weights'.padEnd(30)}${`${r.head ?? 'head'} float`.padStart(16)}${`${r.head ?? 'head'} quantized`.padStart(24)}`,
    ...r.rows.map((x) => `  ${x.label.padEnd(30)}${n(x.bytes)}${x.weights === 'float' ? '-'.padStart(24) : n(x.bytesHeadQuantized).padStart(24)}`),
  ];
  io.out(lines.join('\n') + '\n');
}

export function inspectCommand(io: CliIO, modelPath: string, flags: InspectFlags): void {
  if (isConfigOnly(modelPath)) return inspectConfigOnly(io, modelPath, flags);
  const m = load(io, modelPath, flags);
  let params = 0;
  const seen = new Set<ArrayBufferView>();
  for (const [, t] of m.model.namedTensors()) {
    if (seen.has(t.data)) continue; // a tied weight is one set of parameters
    seen.add(t.data);
    params += t.size;
  }
  const fp = footprint(m.model);
  const mapped = mappedLoad(m.model);
  const treeBefore = moduleTree(m.model);
  let quantized: { label: string; summary: QuantizeModelSummary; tree: string; footprint: number } | undefined;
  if (flags.weights !== undefined && flags.weights !== 'fp32') {
    const opts = quantOptions(flags.weights, flags, readCalibration(flags, m));
    const summary = quantizeWithProgress(io, m.model, opts);
    quantized = { label: quantLabel(opts), summary, tree: moduleTree(m.model), footprint: footprint(m.model).bytes };
  }
  const c = m.model.config as Record<string, unknown>;
  const info = {
    model: modelPath,
    kind: m.kind,
    source: m.source,
    arch: c.arch,
    config: c,
    quantization: m.quantization,
    parameters: params,
    footprint: fp,
    tokenizer: m.tokenizer ? { vocabSize: m.tokenizer.vocabSize, bosId: m.tokenizer.bosId ?? null, eosId: m.tokenizer.eosId ?? null } : null,
    linearLayers: linearLayers(m.model),
    mappedLoad: mapped,
    moduleTree: treeBefore,
    // what this run computes with: the kernels picked for this CPU and the pool size (--threads, QUANTKIT_THREADS)
    runtime: { isa: isa(), threads: getThreads() },
    ...(quantized
      ? { quantizedAs: { quantization: quantized.label, replaced: quantized.summary.replaced, kept: quantized.summary.kept, layers: quantized.summary.layers, footprint: quantized.footprint, moduleTree: quantized.tree } }
      : {}),
  };
  if (flags.json) return printJson(io, info);
  const kindText = { 'causal-lm': 'causal language model', encoder: 'encoder (last hidden states)', 'masked-lm': 'encoder with a masked-LM head' }[m.kind];
  const lines = [
    `model:       ${modelPath} (${m.source})`,
    `kind:        ${kindText}`,
    `arch:        ${c.arch}`,
    `config:      ${Object.entries(c)
      .filter(([k, v]) => k !== 'arch' && (typeof v === 'number' || typeof v === 'boolean'))
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
    `parameters:  ${params.toLocaleString('en-US')} (weights counted once per distinct tensor: ${fp.tensors} tensors)`,
    `footprint:   ${fp.bytes.toLocaleString('en-US')} bytes (${formatBytes(fp.bytes)}); ${Object.entries(fp.byDtype)
      .map(([k, v]) => `${k}: ${v.toLocaleString('en-US')}`)
      .join(', ')}`,
    `runtime:     ${isa()} kernels, ${getThreads()} thread${getThreads() === 1 ? '' : 's'}`,
    `tokenizer:   ${m.tokenizer ? `vocab ${m.tokenizer.vocabSize}, bos ${m.tokenizer.bosId ?? '-'}, eos ${m.tokenizer.eosId ?? '-'}` : 'none found (pass --tokenizer)'}`,
  ];
  if (m.quantization) lines.push(`quantized:   ${JSON.stringify(m.quantization)}`);
  lines.push(...mappedLoadLines(mapped));
  lines.push('module tree:', treeBefore);
  if (quantized) {
    const s = quantized.summary;
    lines.push(
      `after quantizeModel (${quantized.label}): ${s.replaced.length} Linear layers became QLinear; kept in float: ${s.kept.join(', ') || 'none'}; footprint ${fp.bytes.toLocaleString('en-US')} -> ${quantized.footprint.toLocaleString('en-US')} bytes`,
      ...fallbackLines(s).map((l) => `  group fallback: ${l}`),
      quantized.tree,
    );
  }
  io.out(lines.join('\n') + '\n');
}
