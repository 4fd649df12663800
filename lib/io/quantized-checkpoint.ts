/**
 * Quantized checkpoints: a Hugging Face-style folder holding a model whose
 * Linear layers are QLinear, loadable without the original weights and
 * giving outputs bit-identical to the in-memory quantized model (the stored
 * codes, scales and zero points are the very arrays QLinear runs on).
 *
 * Folder layout:
 *   config.json         the source model's config.json plus
 *                       "quantization_config": {
 *                         "quant_method": "quantkit", "format_version": 1,
 *                         "bits": 8 | 4, "scheme": "symmetric" | "asymmetric",
 *                         "granularity": "channel" | "group" | "tensor",
 *                         "group_size": G | null,
 *                         "modules_to_not_convert": [Linear layers left in float],
 *                         "module_overrides": { name: { "granularity", "group_size",
 *                                               "bits"?, "scheme"? } }
 *                           (layers whose K the group size does not divide,
 *                           see quantizeModel's groupFallback, and layers in
 *                           another format, see quantizeModel's overrides and
 *                           quantizeToBudget; "bits"/"scheme" there need
 *                           format_version 2)
 *                       }
 *   model.safetensors   for every QLinear named <name> (dotted module name,
 *                       e.g. model.layers.0.self_attn.q_proj):
 *                         <name>.qweight  int8: I8 [N, K] codes;
 *                                         int4: U8 [N, K/2] packed codes, two per
 *                                         byte, even column in the low nibble,
 *                                         symmetric codes as two's-complement
 *                                         nibbles (-8..7), asymmetric as 0..15
 *                         <name>.scales   F32 (or F16, quantizeModel's
 *                                         scaleDtype 'f16'): [N] per channel,
 *                                         [N, ceil(K/G)] per group, [1] per tensor
 *                         <name>.zeros    asymmetric only, shape of scales:
 *                                         I8 (int8) or U8 (int4, 0..15)
 *                         <name>.bias     F32 [N], if the layer has one
 *                       and every other tensor as is (float), under its HF
 *                       name; a tensor shared by two modules (tied embedding)
 *                       is stored once, under the first name (the model's
 *                       config says how to tie it back). Value:
 *                       w = (q - zero) * scale (zero = 0 when symmetric).
 *                       __metadata__: { format: "pt", quantkit: "<format_version>" }.
 *   tokenizer files     copied as given (tokenizer.json, tokenizer.bin, ...)
 *
 * The folder is written atomically: it is built in a temporary sibling of
 * outDir and renamed into place, so a failure leaves nothing half-written.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { QuantkitError, describe, typeError } from '../errors.js';
import { ACTIVATION_MODES, type ActivationMode, Linear, QLinear, isActivationMode } from '../nn/linear.js';
import type { Module } from '../nn/module.js';
import { QuantizedTensor } from '../quant/qtensor.js';
import type { QuantizeModelSummary, ResolvedQuantConfig } from '../nn/quantize-model.js';
import { type Granularity, type Scheme, scaleCount } from '../quant/qtypes.js';
import type { QuantMethod } from '../nn/quantize-model.js';
import { Tensor } from '../tensor.js';
import { writeDirAtomic } from './atomic.js';
import { type ReadOptions, SAFETENSORS_SINGLE, loadSafetensorsFolder, writeSafetensors, type SafetensorsCheckpoint } from './safetensors.js';

export const QUANT_METHOD = 'quantkit';
/** Written when every layer has the global bits and scheme (readers of version 1 load it). */
export const QUANT_FORMAT_VERSION = 1;
/** Written when a layer overrides bits or scheme (a mixed-format checkpoint, e.g. from quantizeToBudget). */
export const QUANT_FORMAT_VERSION_MIXED = 2;

export interface QuantizationConfigJson {
  quant_method: 'quantkit';
  format_version: number;
  bits: 8 | 4;
  scheme: Scheme;
  granularity: Granularity;
  group_size: number | null;
  modules_to_not_convert: string[];
  module_overrides?: Record<string, ModuleOverrideJson>;
  /** Activation handling of the quantized layers ('none' when absent). */
  activations?: ActivationMode;
  /** LLM.int8() threshold, with activations 'llm.int8'. */
  threshold?: number;
  /** How the codes were chosen: 'gptq', 'awq', 'awq+gptq' (calibrated); absent: round to nearest. Informational. */
  method?: Exclude<QuantMethod, 'rtn'>;
  /** 'f16' when the scales are stored as F16. Informational: each scales tensor's dtype says it. */
  scale_dtype?: 'f16';
}

export interface ModuleOverrideJson {
  granularity: Granularity;
  group_size: number | null;
  /** When it differs from the global bits (format_version 2). */
  bits?: 8 | 4;
  /** When it differs from the global scheme (format_version 2). */
  scheme?: Scheme;
}

function isQuantConfig(v: unknown): v is ResolvedQuantConfig {
  return typeof v === 'object' && v !== null && 'bits' in v && 'scheme' in v && 'granularity' in v;
}

/** The tensors to store, by name (see the header), in storage order. */
export function quantizedTensorMap(model: Module): { tensors: Map<string, Tensor>; qlinears: Map<string, QLinear>; floatLinears: string[] } {
  const tensors = new Map<string, Tensor>();
  const qlinears = new Map<string, QLinear>();
  const floatLinears: string[] = [];
  const seen = new Set<ArrayBufferView>();
  const add = (name: string, t: Tensor) => {
    if (seen.has(t.data)) return; // shared (tied) tensor: stored once
    seen.add(t.data);
    tensors.set(name, t);
  };
  for (const [mname, m] of model.namedModules()) {
    const prefix = mname ? `${mname}.` : '';
    if (m instanceof QLinear) {
      qlinears.set(mname, m);
      const q = m.qweight;
      const [N, K] = q.shape as [number, number];
      add(`${prefix}qweight`, q.bits === 8 ? new Tensor('i8', [N, K], q.data as Int8Array) : new Tensor('u8', [N, q.data.length / N], q.data as Uint8Array));
      const sShape = q.granularity === 'group' ? [N, scaleCount('group', 1, K, q.groupSize)] : q.granularity === 'channel' ? [N] : [1];
      add(`${prefix}scales`, q.scaleData instanceof Uint16Array ? new Tensor('f16', sShape, q.scaleData) : new Tensor('f32', sShape, q.scaleData));
      if (q.zeroPoints) {
        add(`${prefix}zeros`, q.zeroPoints instanceof Int8Array ? new Tensor('i8', sShape, q.zeroPoints) : new Tensor('u8', sShape, q.zeroPoints));
      }
      if (m.bias) add(`${prefix}bias`, m.bias);
      continue;
    }
    if (m instanceof Linear) floatLinears.push(mname);
    for (const [tname, t] of m.ownTensors()) {
      if (t instanceof QuantizedTensor) {
        throw new QuantkitError('ERR_UNSUPPORTED', `saveQuantized: '${prefix}${tname}' is a QuantizedTensor outside a QLinear; only QLinear weights can be stored`);
      }
      add(`${prefix}${tname}`, t);
    }
  }
  // module order; the safetensors writer lays the data out aligned (lines, then element sizes)
  return { tensors, qlinears, floatLinears };
}

/** The quantization_config block for a quantized model. */
export function quantizationConfigJson(model: Module, quant: QuantizeModelSummary | ResolvedQuantConfig): QuantizationConfigJson {
  const cfg = 'config' in quant && isQuantConfig(quant.config) ? quant.config : quant;
  if (!isQuantConfig(cfg)) throw typeError('saveQuantized', 'quant', `must be a quantizeModel summary or its config, got ${describe(quant)}`);
  const { qlinears, floatLinears } = quantizedTensorMap(model);
  if (qlinears.size === 0) throw new QuantkitError('ERR_UNSUPPORTED', 'saveQuantized: the model has no QLinear layer; run quantizeModel first');
  const overrides: Record<string, ModuleOverrideJson> = {};
  const globalG = cfg.granularity === 'group' ? (cfg.groupSize ?? null) : null;
  let mixed = false;
  for (const [name, q] of qlinears) {
    const { bits, scheme } = q.qweight;
    if (bits !== 8 && bits !== 4) throw new QuantkitError('ERR_UNSUPPORTED', `saveQuantized: layer '${name}' is int${bits}; checkpoints hold int8 and int4 layers`);
    const g = q.qweight.granularity === 'group' ? q.qweight.groupSize : null;
    const other = bits !== cfg.bits || scheme !== cfg.scheme;
    mixed ||= other;
    if (other || q.qweight.granularity !== cfg.granularity || g !== globalG) {
      overrides[name] = { granularity: q.qweight.granularity, group_size: g, ...(other ? { bits, scheme } : {}) };
    }
  }
  return {
    quant_method: QUANT_METHOD,
    format_version: mixed ? QUANT_FORMAT_VERSION_MIXED : QUANT_FORMAT_VERSION,
    bits: cfg.bits,
    scheme: cfg.scheme,
    granularity: cfg.granularity,
    group_size: globalG,
    modules_to_not_convert: floatLinears,
    ...(Object.keys(overrides).length > 0 ? { module_overrides: overrides } : {}),
    ...(cfg.activations && cfg.activations !== 'none' ? { activations: cfg.activations } : {}),
    ...(cfg.threshold !== undefined ? { threshold: cfg.threshold } : {}),
    ...(cfg.method !== 'rtn' ? { method: cfg.method } : {}),
    ...([...qlinears.values()].some((q) => q.qweight.scaleDtype === 'f16') ? { scale_dtype: 'f16' as const } : {}),
  };
}

/**
 * Write `model` (already quantized) to the folder `outDir` (replaced if it
 * exists), atomically. `sourceConfig` is the original config.json object;
 * `tokenizerFiles` are copied in under their base names.
 */
export async function saveQuantized(
  model: Module,
  quant: QuantizeModelSummary | ResolvedQuantConfig,
  tokenizerFiles: readonly string[],
  outDir: string,
  sourceConfig: Record<string, unknown>,
): Promise<void> {
  if (typeof outDir !== 'string' || outDir === '') throw typeError('saveQuantized', 'outDir', `must be a folder path, got ${describe(outDir)}`);
  if (sourceConfig === null || typeof sourceConfig !== 'object' || Array.isArray(sourceConfig)) {
    throw typeError('saveQuantized', 'sourceConfig', `must be the config.json object, got ${describe(sourceConfig)}`);
  }
  const qc = quantizationConfigJson(model, quant);
  const { tensors } = quantizedTensorMap(model);
  for (const f of tokenizerFiles) {
    if (!fs.existsSync(f)) throw new QuantkitError('ERR_NOT_FOUND', `saveQuantized: tokenizer file not found: ${f}`);
  }
  const config = { ...sourceConfig, quantization_config: qc };
  await fsp.mkdir(path.dirname(path.resolve(outDir)), { recursive: true });
  await writeDirAtomic(path.resolve(outDir), async (tmp) => {
    await writeSafetensors(path.join(tmp, SAFETENSORS_SINGLE), tensors, { format: 'pt', quantkit: String(qc.format_version) });
    await fsp.writeFile(path.join(tmp, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    for (const f of tokenizerFiles) await fsp.copyFile(f, path.join(tmp, path.basename(f)));
  });
}

// ------------------------------------------------------------------ loading

/** A name -> tensor lookup (what lib/models' WeightReader reads). */
export interface TensorLookup {
  has(name: string): boolean;
  get(name: string): Tensor;
}

export interface QuantizedWeights {
  folder: string;
  /** config.json as stored (with quantization_config). */
  config: Record<string, unknown>;
  quantization: QuantizationConfigJson;
  /** Module name -> QLinear built from the stored codes (zero-copy views of the file). */
  qlinears: ReadonlyMap<string, QLinear>;
  /**
   * The float tensors, plus for every quantized layer <name> a '<name>.weight'
   * placeholder: an f32 [N, K] of zeros (views of one shared buffer, so they
   * cost the largest layer once), so an unchanged model builder can create
   * its Linear layers; applyTo() then swaps those for the QLinears.
   */
  lookup: TensorLookup;
  /** Replace each quantized layer of a model built from `lookup` by its QLinear (parent.replaceChild). */
  applyTo(model: Module): void;
}

function bad(file: string, what: string): QuantkitError {
  return new QuantkitError('ERR_BAD_FILE', `${file}: not a valid quantkit checkpoint: ${what}`);
}

/** True when config.json (an object) declares a quantkit checkpoint. */
export function isQuantkitConfig(json: unknown): boolean {
  const qc = (json as { quantization_config?: { quant_method?: unknown } } | null)?.quantization_config;
  return typeof qc === 'object' && qc !== null && qc.quant_method === QUANT_METHOD;
}

/** True when `folder` holds a quantkit checkpoint (config.json with quant_method "quantkit"). */
export function isQuantizedCheckpoint(folder: string): boolean {
  const cfg = path.join(folder, 'config.json');
  if (!fs.existsSync(cfg)) return false;
  try {
    return isQuantkitConfig(JSON.parse(fs.readFileSync(cfg, 'utf8')));
  } catch {
    return false;
  }
}

function parseQuantConfig(file: string, json: Record<string, unknown>): QuantizationConfigJson {
  const qc = json.quantization_config as Record<string, unknown> | undefined;
  if (!isQuantkitConfig(json) || !qc) throw bad(file, `"quantization_config.quant_method" is not "${QUANT_METHOD}"`);
  if (qc.format_version !== QUANT_FORMAT_VERSION && qc.format_version !== QUANT_FORMAT_VERSION_MIXED) {
    throw new QuantkitError('ERR_UNSUPPORTED', `${file}: quantkit checkpoint format_version ${describe(qc.format_version)} is not supported (this build reads ${QUANT_FORMAT_VERSION} and ${QUANT_FORMAT_VERSION_MIXED})`);
  }
  const mo = qc.module_overrides;
  if (mo !== undefined) {
    if (mo === null || typeof mo !== 'object' || Array.isArray(mo)) throw bad(file, '"module_overrides" must be an object');
    for (const [name, o] of Object.entries(mo as Record<string, Record<string, unknown> | null>)) {
      if (o === null || typeof o !== 'object') throw bad(file, `"module_overrides.${name}" must be an object`);
      if ((o.bits !== undefined || o.scheme !== undefined) && qc.format_version !== QUANT_FORMAT_VERSION_MIXED) {
        throw bad(file, `"module_overrides.${name}" sets bits or scheme, which needs format_version ${QUANT_FORMAT_VERSION_MIXED}`);
      }
      if (o.bits !== undefined && o.bits !== 8 && o.bits !== 4) throw bad(file, `"module_overrides.${name}.bits" must be 8 or 4, got ${describe(o.bits)}`);
      if (o.scheme !== undefined && o.scheme !== 'symmetric' && o.scheme !== 'asymmetric') throw bad(file, `"module_overrides.${name}.scheme" is ${describe(o.scheme)}`);
    }
  }
  if (qc.bits !== 8 && qc.bits !== 4) throw bad(file, `"bits" must be 8 or 4, got ${describe(qc.bits)}`);
  if (qc.scheme !== 'symmetric' && qc.scheme !== 'asymmetric') throw bad(file, `"scheme" must be "symmetric" or "asymmetric", got ${describe(qc.scheme)}`);
  if (qc.granularity !== 'channel' && qc.granularity !== 'group' && qc.granularity !== 'tensor') throw bad(file, `"granularity" is ${describe(qc.granularity)}`);
  if (!Array.isArray(qc.modules_to_not_convert)) throw bad(file, '"modules_to_not_convert" must be an array');
  if (qc.activations !== undefined && !isActivationMode(qc.activations)) {
    throw bad(file, `"activations" must be ${ACTIVATION_MODES.map((m) => `"${m}"`).join(', ')}, got ${describe(qc.activations)}`);
  }
  if (qc.threshold !== undefined && (typeof qc.threshold !== 'number' || !(qc.threshold >= 0))) throw bad(file, `"threshold" must be a number >= 0, got ${describe(qc.threshold)}`);
  return qc as unknown as QuantizationConfigJson;
}

function view(st: SafetensorsCheckpoint, name: string, dtype: Tensor['dtype']): Tensor {
  const t = st.get(name);
  if (t.dtype !== dtype) throw bad(st.folder, `tensor '${name}' has dtype ${t.dtype}, expected ${dtype}`);
  return t;
}

/**
 * Read a quantkit checkpoint folder: QLinears for the quantized layers and
 * a lookup for everything else. See QuantizedWeights for how a model
 * builder uses it (lib/models/load.ts).
 */
export function loadQuantizedWeights(folder: string, options: ReadOptions = {}): QuantizedWeights {
  const cfgFile = path.join(folder, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new QuantkitError('ERR_NOT_FOUND', `model config not found: ${cfgFile}`);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new QuantkitError('ERR_BAD_CONFIG', `${cfgFile}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  const quantization = parseQuantConfig(cfgFile, config);
  const st = loadSafetensorsFolder(folder, options);
  const file = path.join(folder, SAFETENSORS_SINGLE);
  const qlinears = new Map<string, QLinear>();
  const shapes = new Map<string, [number, number]>();
  for (const tname of st.names) {
    if (!tname.endsWith('.qweight')) continue;
    const name = tname.slice(0, -'.qweight'.length);
    const override = quantization.module_overrides?.[name];
    const bits = override?.bits ?? quantization.bits;
    const scheme = override?.scheme ?? quantization.scheme;
    const qw = view(st, tname, bits === 8 ? 'i8' : 'u8');
    if (qw.shape.length !== 2) throw bad(file, `'${tname}' must be 2-D, got [${qw.shape.join(', ')}]`);
    const N = qw.shape[0]!;
    const K = bits === 8 ? qw.shape[1]! : 2 * qw.shape[1]!;
    const scales = st.get(`${name}.scales`);
    if (scales.dtype !== 'f32' && scales.dtype !== 'f16') throw bad(st.folder, `tensor '${name}.scales' has dtype ${scales.dtype}, expected f32 or f16`);
    let granularity: Granularity;
    let groupSize: number | undefined;
    const expected = override?.granularity ?? quantization.granularity;
    const expectedG = override ? override.group_size : quantization.group_size;
    if (scales.shape.length === 2) {
      granularity = 'group';
      // ceil(K / G) groups per row (the last one shorter when G does not divide K)
      groupSize = expectedG ?? undefined;
      if (groupSize !== undefined && Math.ceil(K / groupSize) !== scales.shape[1]) {
        throw bad(file, `'${name}.scales' has shape [${scales.shape.join(', ')}], but a [${N}, ${K}] weight in groups of ${groupSize} has ${Math.ceil(K / groupSize)} per row`);
      }
    } else if (scales.shape.length === 1 && scales.shape[0] === N) {
      granularity = 'channel';
    } else if (scales.shape.length === 1 && scales.shape[0] === 1) {
      granularity = 'tensor';
    } else {
      throw bad(file, `'${name}.scales' has shape [${scales.shape.join(', ')}], which fits no granularity for a [${N}, ${K}] weight`);
    }
    if (granularity !== expected && !(N === 1 && expected !== 'group' && granularity !== 'group')) {
      throw bad(file, `'${name}.scales' has shape [${scales.shape.join(', ')}] (${granularity}), but the config says ${expected}`);
    }
    if (granularity === 'group' && groupSize !== expectedG) {
      throw bad(file, `'${name}.scales' has shape [${scales.shape.join(', ')}] (groups of ${groupSize}), but the config says groups of ${expectedG}`);
    }
    let zeroPoints: Int8Array | Uint8Array | null = null;
    if (scheme === 'asymmetric') zeroPoints = view(st, `${name}.zeros`, bits === 8 ? 'i8' : 'u8').data as Int8Array | Uint8Array;
    else if (st.has(`${name}.zeros`)) throw bad(file, `'${name}.zeros' present in a symmetric checkpoint`);
    let qt: QuantizedTensor;
    try {
      qt = new QuantizedTensor({
        bits,
        scheme,
        granularity,
        groupSize,
        shape: [N, K],
        data: qw.data as Int8Array | Uint8Array,
        scales: scales.data as Float32Array | Uint16Array,
        zeroPoints,
        name: `${name}.weight`,
      });
    } catch (err) {
      throw bad(file, `layer '${name}': ${(err as Error).message}`);
    }
    const bias = st.has(`${name}.bias`) ? (view(st, `${name}.bias`, 'f32') as Tensor<'f32'>) : null;
    let layer: QLinear;
    try {
      layer = new QLinear(qt, bias, { activations: quantization.activations ?? 'none', ...(quantization.threshold !== undefined ? { threshold: quantization.threshold } : {}) });
    } catch (err) {
      throw bad(file, `layer '${name}': ${(err as Error).message}`);
    }
    qlinears.set(name, layer);
    shapes.set(`${name}.weight`, [N, K]);
  }
  if (qlinears.size === 0) throw bad(file, 'no <name>.qweight tensor found');

  // one zero buffer, as large as the largest placeholder, shared by all placeholders
  let maxElems = 0;
  for (const [N, K] of shapes.values()) maxElems = Math.max(maxElems, N * K);
  let zeros: Float32Array | undefined;
  const lookup: TensorLookup = {
    has: (name) => shapes.has(name) || st.has(name),
    get: (name) => {
      const s = shapes.get(name);
      if (s === undefined) return st.get(name);
      zeros ??= new Float32Array(maxElems);
      return new Tensor('f32', s, zeros.subarray(0, s[0] * s[1]), name);
    },
  };
  const applyTo = (model: Module) => {
    const byName = new Map(model.namedModules());
    for (const [name, q] of qlinears) {
      const cut = name.lastIndexOf('.');
      const parent = byName.get(cut < 0 ? '' : name.slice(0, cut));
      const local = name.slice(cut + 1);
      if (parent === undefined || parent.child(local) === undefined) {
        throw bad(file, `the model has no layer '${name}' for the stored '${name}.qweight'`);
      }
      parent.replaceChild(local, q);
    }
    zeros = undefined; // the placeholders are gone with the replaced Linears
  };
  return { folder, config, quantization, qlinears, lookup, applyTo };
}

/**
 * The whole load for a model loader (lib/models/load.ts): read the folder,
 * let `build` construct the model from the lookup exactly as for a float
 * checkpoint (quantized layers get zero placeholders), then swap in the
 * stored QLinears. Typical use in load.ts, folder branch:
 *
 *   if (isQuantizedCheckpoint(folder)) {
 *     const { model } = loadQuantizedModel(folder, (_json, lookup, file) => buildModel(config, lookup, file, opts));
 *     ...tokenizer discovery as usual...
 *   }
 */
export function loadQuantizedModel<M extends Module>(
  folder: string,
  build: (config: Record<string, unknown>, lookup: TensorLookup, file: string) => M,
  options: ReadOptions = {},
): { model: M; weights: QuantizedWeights } {
  const weights = loadQuantizedWeights(folder, options);
  const model = build(weights.config, weights.lookup, path.join(folder, SAFETENSORS_SINGLE));
  weights.applyTo(model);
  return { model, weights };
}
