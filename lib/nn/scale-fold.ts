/**
 * Where activation-aware channel scales (lib/quant/awq.ts) can be folded so
 * inference pays nothing for them: the layers that read one input x [T, K]
 * get W diag(s), and the op that makes x divides its output by s. That op
 * is a norm (RMSNorm/LayerNorm: weight and bias / s), or a Linear whose
 * output rows [rowOffset, rowOffset + K) are x, either directly (v_proj ->
 * o_proj, the attention mixes positions but is linear per channel in v) or
 * through an elementwise op that commutes with a positive scale per channel
 * (up_proj -> down_proj: silu(g) * (u / s) = (silu(g) * u) / s; ReLU).
 *
 * An architecture lists its groups (scaleGroups()); a model that lists none
 * is quantized without scales. The fold is exact in float: a model with
 * scales folded and float weights gives the same logits up to rounding.
 */
import { scaleColumns } from '../quant/awq.js';
import { toFloat32 } from '../quant/quantize.js';
import { Tensor } from '../tensor.js';
import { Linear } from './linear.js';
import type { Module } from './module.js';

export interface ScaleGroup {
  /** Dotted name of the op that makes the input: a norm, or a Linear (see rowOffset). */
  prev: string;
  /** For a Linear prev: the first of its output rows that form the input (default 0). */
  rowOffset?: number;
  /** Dotted names of the Linear layers that read that input (one K). */
  layers: string[];
}

/**
 * Rows [off, off + K) of a prev Linear's weight w [N, Kp] (and bias) / s, in
 * place: its output channels off + c become y / s_c.
 */
export function divideRows(w: Float32Array, bias: Float32Array | null, Kp: number, off: number, s: Float32Array): void {
  for (let c = 0; c < s.length; c++) {
    const r = off + c;
    for (let k = 0; k < Kp; k++) w[r * Kp + k] = w[r * Kp + k]! / s[c]!;
    if (bias) bias[r] = bias[r]! / s[c]!;
  }
}

/** What a model implements to allow activation-aware scaling. */
export interface ScaleFoldable {
  scaleGroups(): ScaleGroup[];
}

export function scaleGroupsOf(model: Module): ScaleGroup[] {
  const m = model as Partial<ScaleFoldable>;
  return typeof m.scaleGroups === 'function' ? m.scaleGroups() : [];
}

/** A norm that can take the fold (RMSNorm, LayerNorm with a weight). */
export interface ChannelDivisible {
  divideChannels(s: Float32Array): boolean;
}

export function isChannelDivisible(m: Module | undefined): m is Module & ChannelDivisible {
  return m !== undefined && typeof (m as Partial<ChannelDivisible>).divideChannels === 'function';
}

/**
 * Fold scales s [K] (positive) into a float model for one group: the
 * layers' weight columns * s, the prev op's output / s. The model's outputs
 * stay the same up to float rounding; quantizeModel does the same on its
 * working copies before quantizing. Returns false (and changes nothing)
 * when the group does not apply to this model (a layer is not a float
 * Linear, K differs, or prev cannot take the fold).
 */
export function foldChannelScales(model: Module, group: ScaleGroup, s: Float32Array): boolean {
  const modules = new Map(model.namedModules());
  const parentOf = (name: string): [Module, string] => {
    const cut = name.lastIndexOf('.');
    return [modules.get(cut < 0 ? '' : name.slice(0, cut))!, name.slice(cut + 1)];
  };
  const K = s.length;
  const layers = group.layers.map((n) => modules.get(n));
  if (layers.length === 0 || !layers.every((l) => l instanceof Linear && l.inFeatures === K)) return false;
  const prev = modules.get(group.prev);
  const off = group.rowOffset ?? 0;
  if (prev instanceof Linear) {
    if (prev.outFeatures < off + K) return false;
    const w = Float32Array.from(toFloat32(prev.weight).data), Kp = prev.inFeatures;
    const b = prev.bias ? Float32Array.from(prev.bias.data) : null;
    divideRows(w, b, Kp, off, s);
    const [parent, local] = parentOf(group.prev);
    parent.replaceChild(local, new Linear(new Tensor('f32', [prev.outFeatures, Kp], w, prev.weight.name), b ? new Tensor('f32', [b.length], b, prev.bias!.name) : null));
  } else if (!isChannelDivisible(prev) || !prev.divideChannels(s)) {
    return false;
  }
  group.layers.forEach((n, i) => {
    const l = layers[i] as Linear;
    const w = scaleColumns(Float32Array.from(toFloat32(l.weight).data), l.outFeatures, K, s);
    const [parent, local] = parentOf(n);
    parent.replaceChild(local, new Linear(new Tensor('f32', [l.outFeatures, K], w, l.weight.name), l.bias));
  });
  return true;
}
