/**
 * Test helpers: a tiny causal LM made of Linear layers (and a char-level
 * tokenizer), so quantizeModel, footprint, generation, perplexity, the error
 * report and checkpoints can be tested without the real model loaders.
 *
 * Model: h_t = E[x_t] + 0.5 * mean(E[x_0..t]) (the running mean lives in the
 * KV cache, so a prefill and token-by-token steps must agree), then two
 * residual MLP blocks layers.{0,1}.{fc1,fc2} and lm_head (optionally tied to
 * E). Module names: embed, layers.0.fc1, layers.0.fc2, layers.1.fc1,
 * layers.1.fc2, lm_head.
 */
import { CausalLM, type KVCache, type ModelConfigBase } from '../lib/models/causal-lm.js';
import { Linear } from '../lib/nn/linear.js';
import { Module } from '../lib/nn/module.js';
import { Tensor } from '../lib/tensor.js';
import type { StreamDecoder, Tokenizer } from '../lib/tokenizers/types.js';
import { mulberry32 } from '../lib/eval/sampling.js';

export class Container extends Module {
  add<T extends Module>(name: string, m: T): T {
    return this.addModule(name, m);
  }
}

export class TableEmbedding extends Module {
  constructor(readonly weight: Tensor<'f32'>) {
    super();
  }
  override ownTensors(): Iterable<[string, Tensor]> {
    return [['weight', this.weight]];
  }
}

class TinyCache implements KVCache {
  length = 0;
  sum: Float64Array;
  constructor(
    readonly capacity: number,
    dim: number,
  ) {
    this.sum = new Float64Array(dim);
  }
  reset(): void {
    this.length = 0;
    this.sum.fill(0);
  }
}

export interface TinyOptions {
  vocab?: number;
  dim?: number;
  hidden?: number;
  tied?: boolean;
  bias?: boolean;
  seed?: number;
  maxPositions?: number;
  bosId?: number;
  eosId?: number;
}

function randTensor(rand: () => number, shape: number[], scale: number): Tensor<'f32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  // roughly normal (sum of uniforms), with a few outliers like real weights
  for (let i = 0; i < n; i++) d[i] = (rand() + rand() + rand() - 1.5) * scale * (rand() < 0.01 ? 4 : 1);
  return new Tensor('f32', shape, d);
}

export class TinyLM extends CausalLM {
  readonly config: ModelConfigBase;
  readonly dim: number;

  constructor(o: TinyOptions = {}) {
    super();
    const V = o.vocab ?? 40;
    const D = o.dim ?? 64;
    const H = o.hidden ?? 128;
    const rand = mulberry32(o.seed ?? 1);
    this.dim = D;
    this.config = { arch: 'tiny', vocabSize: V, maxPositions: o.maxPositions ?? 128, bosId: o.bosId ?? 0, eosId: o.eosId ?? 1 };
    const embed = this.addModule('embed', new TableEmbedding(randTensor(rand, [V, D], 1)));
    const layers = this.addModule('layers', new Container());
    for (let i = 0; i < 2; i++) {
      const blk = layers.add(String(i), new Container());
      const b = (n: number) => (o.bias ? randTensor(rand, [n], 0.1) : null);
      blk.add('fc1', new Linear(randTensor(rand, [H, D], 0.3), b(H)));
      blk.add('fc2', new Linear(randTensor(rand, [D, H], 0.15), b(D)));
    }
    this.addModule('lm_head', new Linear(o.tied ? embed.weight : randTensor(rand, [V, D], 0.4)));
  }

  createCache(capacity = this.config.maxPositions): KVCache {
    return new TinyCache(capacity, this.dim);
  }

  private lin(path: string): Linear {
    let m: Module = this;
    for (const p of path.split('.')) m = m.child(p)!;
    return m as Linear;
  }

  forward(tokens: readonly number[], cacheArg: KVCache): Tensor<'f32'> {
    const cache = cacheArg as TinyCache;
    if (cache.length + tokens.length > cache.capacity) throw new RangeError('TinyLM: cache full');
    const D = this.dim;
    const E = (this.child('embed') as TableEmbedding).weight.data;
    const x = new Float32Array(tokens.length * D);
    tokens.forEach((t, r) => {
      cache.length++;
      for (let j = 0; j < D; j++) {
        const e = E[t * D + j]!;
        cache.sum[j]! += e;
        x[r * D + j] = e + (0.5 * cache.sum[j]!) / cache.length;
      }
    });
    let h = new Tensor('f32', [tokens.length, D], x);
    for (let i = 0; i < 2; i++) {
      const a = this.lin(`layers.${i}.fc1`).forward(h);
      for (let k = 0; k < a.data.length; k++) a.data[k] = Math.max(0, a.data[k]!);
      const y = this.lin(`layers.${i}.fc2`).forward(a);
      for (let k = 0; k < y.data.length; k++) y.data[k]! += h.data[k]!;
      h = y;
    }
    return this.lin('lm_head').forward(h);
  }
}

/** ids: 0 = <s>, 1 = </s>, then one id per character of CHARS. */
export const CHARS = " abcdefghijklmnopqrstuvwxyz.,!?'-\n0123";

export class CharTokenizer implements Tokenizer {
  readonly vocabSize = 2 + CHARS.length;
  readonly bosId = 0;
  readonly eosId = 1;
  encode(text: string, opts?: { bos?: boolean; eos?: boolean }): number[] {
    const ids = [...text].map((c) => {
      const i = CHARS.indexOf(c);
      if (i < 0) throw new RangeError(`CharTokenizer: no id for '${c}'`);
      return i + 2;
    });
    if (opts?.bos) ids.unshift(0);
    if (opts?.eos) ids.push(1);
    return ids;
  }
  decode(ids: readonly number[]): string {
    return ids
      .filter((i) => i >= 2)
      .map((i) => CHARS[i - 2])
      .join('');
  }
  decodeStream(): StreamDecoder {
    return { push: (id) => this.decode([id]), flush: () => '' };
  }
  idToToken(id: number): string | undefined {
    return id === 0 ? '<s>' : id === 1 ? '</s>' : CHARS[id - 2];
  }
}
