/**
 * footprint(model): the bytes held by a model's tensors, like Hugging Face's
 * get_memory_footprint(). Every tensor of namedTensors() counts once: two
 * names for the same memory (a tied embedding / lm_head, a view) are deduped
 * by the identity of the underlying ArrayBuffer region, so a tensor shared by
 * two modules is not counted twice.
 */
import { describe, typeError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { QuantizedTensor } from '../quant/qtensor.js';
import { Tensor } from '../tensor.js';

export interface Footprint {
  /** Total bytes of the distinct tensors. */
  bytes: number;
  /** Bytes by storage type: 'f32', 'f16', 'bf16', 'i8', ... for float/int tensors, 'int8' / 'int4' / 'int2' for quantized ones (codes + scales + zero points). */
  byDtype: Record<string, number>;
  /** Number of distinct tensors. */
  tensors: number;
}

type Region = ArrayBufferView;

/** Key: the typed array's buffer plus its byte range within it. */
function regionKey(seen: WeakMap<ArrayBufferLike, Set<string>>, v: Region): boolean {
  let ranges = seen.get(v.buffer);
  if (ranges === undefined) {
    ranges = new Set();
    seen.set(v.buffer, ranges);
  }
  const k = `${v.byteOffset}:${v.byteLength}`;
  if (ranges.has(k)) return false;
  ranges.add(k);
  return true;
}

export function footprint(model: Module): Footprint {
  if (model === null || typeof model !== 'object' || typeof (model as Module).namedTensors !== 'function') {
    throw typeError('footprint', 'model', `must be a Module, got ${describe(model)}`);
  }
  const seen = new WeakMap<ArrayBufferLike, Set<string>>();
  const out: Footprint = { bytes: 0, byDtype: {}, tensors: 0 };
  for (const [, t] of model.namedTensors()) {
    let bytes: number;
    let kind: string;
    if (t instanceof QuantizedTensor) {
      // a quantized tensor is identified by its codes array
      if (!regionKey(seen, t.data)) continue;
      bytes = t.nbytes;
      kind = `int${t.bits}`;
    } else if (t instanceof Tensor) {
      if (!regionKey(seen, t.data)) continue;
      bytes = t.nbytes;
      kind = t.dtype;
    } else {
      continue;
    }
    out.bytes += bytes;
    out.byDtype[kind] = (out.byDtype[kind] ?? 0) + bytes;
    out.tensors++;
  }
  return out;
}
