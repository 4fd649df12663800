/**
 * Generation, perplexity, the error report and SVG charts, on the tiny test
 * model (stories260K numbers are in test/cli.test.ts and test/checkpoint.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { errorMetrics, errorReport } from '../lib/eval/error-report.js';
import { generate, generateText } from '../lib/eval/generate.js';
import { perplexity, tokenNll } from '../lib/eval/perplexity.js';
import { argmax, mulberry32, sampleToken, topKByProbability } from '../lib/eval/sampling.js';
import { barChartSvg, histogramSvg } from '../lib/eval/svg.js';
import { QLinear } from '../lib/nn/linear.js';
import { quantizeModel } from '../lib/nn/quantize-model.js';
import { CharTokenizer, TinyLM } from './tiny-lm.js';
import { checkWellFormedSvg } from './xml-check.js';

const tok = new CharTokenizer();

describe('sampling', () => {
  it('greedy is argmax; top-k 1 is greedy; a seed reproduces', () => {
    const logits = Float32Array.from([0.1, 2, -1, 1.9, 0.5]);
    expect(argmax(logits)).toBe(1);
    expect(sampleToken(logits, 0, 5, { temperature: 0, topK: 0, topP: 1 }, Math.random)).toBe(1);
    expect(sampleToken(logits, 0, 5, { temperature: 5, topK: 1, topP: 1 }, Math.random)).toBe(1);
    // top-p small enough keeps only the most likely token
    expect(sampleToken(logits, 0, 5, { temperature: 1, topK: 0, topP: 0.01 }, Math.random)).toBe(1);
    const draw = (seed: number) => {
      const r = mulberry32(seed);
      return Array.from({ length: 20 }, () => sampleToken(logits, 0, 5, { temperature: 1, topK: 3, topP: 1 }, r));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(new Set(draw(7))).toEqual(new Set([1, 3, 4])); // top-3 only
  });

  it('argmax of long Float32Arrays (native) picks what the plain loop picks: first of equal maxima, -0 = +0, NaN never, 0 when nothing beats -Infinity', () => {
    const plain = (v: Float32Array, offset: number, n: number) => {
      let best = 0;
      let bv = -Infinity;
      for (let i = 0; i < n; i++) if (v[offset + i]! > bv) (bv = v[offset + i]!), (best = i);
      return best;
    };
    const r = mulberry32(11);
    const cases: [string, Float32Array][] = [];
    for (const n of [2048, 2049, 2063, 4111, 32000]) cases.push([`random ${n}`, Float32Array.from({ length: n }, () => (r() - 0.5) * 20)]);
    const ties = new Float32Array(5000).fill(1);
    ties[17] = ties[4000] = ties[4999] = 3;
    cases.push(['ties', ties]);
    const nan = Float32Array.from({ length: 3001 }, (_, i) => (i % 7 === 0 ? NaN : Math.sin(i)));
    nan[0] = NaN;
    cases.push(['NaN scattered', nan]);
    cases.push(['all NaN', new Float32Array(2500).fill(NaN)]);
    cases.push(['all -Infinity', new Float32Array(2500).fill(-Infinity)]);
    const inf = Float32Array.from({ length: 2500 }, (_, i) => i);
    inf[2400] = inf[2450] = Infinity;
    cases.push(['+Infinity', inf]);
    const zeros = new Float32Array(2100).fill(-0);
    zeros[5] = 0;
    cases.push(['-0 then +0', zeros]);
    const last = Float32Array.from({ length: 2047 + 16 }, (_, i) => -i);
    last[last.length - 1] = 5; // in the tail past the last whole 16
    cases.push(['max in the tail', last]);
    for (const [name, v] of cases) {
      expect(argmax(v), name).toBe(plain(v, 0, v.length));
      expect(argmax(v, 3, v.length - 3), `${name}, offset 3`).toBe(plain(v, 3, v.length - 3));
    }
    // rows of a batch's logits
    const rows = Float32Array.from({ length: 3 * 2500 }, () => r());
    for (let i = 0; i < 3; i++) expect(argmax(rows, i * 2500, 2500)).toBe(plain(rows, i * 2500, 2500));
  });

  it('draws the tokens of the plain algorithm (full comparison sort, top-k, threshold top-p, walk in id order) for every option', () => {
    // the definition, written out: candidates are every id, or the top-k by
    // p descending (ties: lower id); top-p keeps the candidates above the
    // largest value v* whose candidates at or above it hold topP of the
    // candidates' total, and the fewest lowest-id ties at v* that reach it;
    // the draw walks the survivors in id order. Every sum is in id order.
    const reference = (logits: Float32Array, o: { temperature: number; topK: number; topP: number }, rand: () => number): number => {
      const n = logits.length;
      const max = Math.max(...logits);
      const p = Array.from(logits, (l) => Math.exp((l - max) / o.temperature));
      const byP = p.map((_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
      let cand = o.topK > 0 && o.topK < n ? byP.slice(0, o.topK).sort((a, b) => a - b) : p.map((_, i) => i);
      const massOf = (ids: number[]) => ids.reduce((s, i) => s + p[i]!, 0);
      if (o.topP < 1) {
        const target = o.topP * massOf(cand);
        const values = [...new Set(cand.map((i) => p[i]!))].sort((a, b) => b - a);
        const vStar = values.find((v) => massOf(cand.filter((i) => p[i]! >= v)) >= target)!;
        const strict = massOf(cand.filter((i) => p[i]! > vStar));
        const ties = cand.filter((i) => p[i] === vStar);
        let take = 1;
        while (take < ties.length && strict + take * vStar < target) take++;
        const kept = new Set(ties.slice(0, take));
        cand = cand.filter((i) => p[i]! > vStar || kept.has(i));
      }
      let r = rand() * massOf(cand);
      let last = -1;
      for (const i of cand) {
        if (p[i] === 0) continue;
        r -= p[i]!;
        if (r < 0) return i;
        last = i;
      }
      return last;
    };
    const gen = mulberry32(11);
    const logits = Float32Array.from({ length: 3000 }, (_, i) => (i % 97 === 0 ? 2 : Math.round(gen() * 40) / 8)); // many ties
    // nuclei of 30 (top-p 0.05), 1659 and 2048 tokens, ties cut at v*
    for (const o of [{ temperature: 1, topK: 0, topP: 1 }, { temperature: 0.7, topK: 40, topP: 1 }, { temperature: 1.3, topK: 0, topP: 0.9 }, { temperature: 0.5, topK: 0, topP: 0.999 }, { temperature: 1, topK: 0, topP: 0.05 }, { temperature: 0.8, topK: 5, topP: 0.5 }, { temperature: 2, topK: 3000, topP: 1 }, { temperature: 1, topK: 200, topP: 0.7 }]) {
      const a = mulberry32(5), b = mulberry32(5);
      for (let i = 0; i < 60; i++) expect(sampleToken(logits, 0, logits.length, o, a), JSON.stringify(o)).toBe(reference(logits, o, b));
    }
    // a peaked 20k vocabulary (300 likely tokens, ties among them): nuclei of 192 and 242
    const peaked = Float32Array.from({ length: 20000 }, (_, i) => (i % 61 === 0 && i < 18300 ? 6 + Math.round(gen() * 16) / 8 : Math.round(gen() * 32) / 8 - 3));
    for (const o of [{ temperature: 1, topK: 0, topP: 0.8 }, { temperature: 0.7, topK: 0, topP: 0.95 }]) {
      const a = mulberry32(9), b = mulberry32(9);
      for (let i = 0; i < 12; i++) expect(sampleToken(peaked, 0, peaked.length, o, a), JSON.stringify(o)).toBe(reference(peaked, o, b));
    }
    // flat: every value distinct and close, the nucleus most of the vocabulary;
    // and values equal to the last in exp (underflow to 0 at a low temperature)
    const flat = Float32Array.from({ length: 1500 }, () => gen() * 0.5);
    const cliff = Float32Array.from({ length: 1500 }, (_, i) => (i < 40 ? gen() : -2000));
    for (const [l, o] of [[flat, { temperature: 1, topK: 0, topP: 0.95 }], [flat, { temperature: 1, topK: 0, topP: 0.3 }], [cliff, { temperature: 0.9, topK: 0, topP: 0.999 }], [cliff, { temperature: 1, topK: 100, topP: 0.99 }]] as const) {
      const a = mulberry32(4), b = mulberry32(4);
      for (let i = 0; i < 40; i++) expect(sampleToken(l, 0, l.length, o, a), JSON.stringify(o)).toBe(reference(l, o, b));
    }
  });

  it('keeps the smallest nucleus: ties at the threshold by id, the most likely token always', () => {
    // probabilities 0.4, 0.2, 0.2, 0.2 (ids 3, 0, 1, 2): top-p 0.5 needs one tie, 0.7 two
    const l = Float32Array.from([Math.log(0.2), Math.log(0.2), Math.log(0.2), Math.log(0.4)]);
    const seen = (topP: number) => new Set(Array.from({ length: 300 }, (_, i) => sampleToken(l, 0, 4, { temperature: 1, topK: 0, topP }, mulberry32(i))));
    expect(seen(0.3)).toEqual(new Set([3]));
    expect(seen(0.4)).toEqual(new Set([3])); // exactly the mass of token 3: the pass in id order decides
    expect(seen(0.5)).toEqual(new Set([3, 0]));
    expect(seen(0.7)).toEqual(new Set([3, 0, 1]));
    expect(seen(0.95)).toEqual(new Set([3, 0, 1, 2]));
  });

  it('selects the top k exactly as the comparison sort it replaced (ties by id, zeros, denormals)', () => {
    const r = mulberry32(3);
    for (const n of [1, 2, 7, 300, 32000]) {
      const p = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const u = r();
        // repeated values, exact zeros (exp underflow), denormals and ordinary ones
        p[i] = u < 0.2 ? 0.25 : u < 0.3 ? 0 : u < 0.35 ? 5e-324 * Math.floor(u * 100) : Math.exp(-40 * r());
      }
      const want = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
      for (const k of [1, 3, 40, 65, 299, 4096].filter((k) => k < n)) expect(Array.from(topKByProbability(p, k))).toEqual(want.slice(0, k));
    }
  });
});

describe('generate', () => {
  it('streams tokens with a KV cache, equal to recomputing the full sequence', async () => {
    const m = new TinyLM();
    const items: { token: number; text: string }[] = [];
    for await (const it of generate(m, tok, 'the cat', { maxNewTokens: 12 })) items.push(it);
    expect(items).toHaveLength(12);
    // greedy check without a cache: re-run the whole prefix every step
    const ids = [0, ...tok.encode('the cat')];
    for (const it of items) {
      const logits = m.forward(ids, m.createCache());
      const V = m.config.vocabSize;
      expect(it.token).toBe(argmax(logits.data, (ids.length - 1) * V, V));
      ids.push(it.token);
    }
    expect(items.map((i) => i.text).join('')).toBe(tok.decode(items.map((i) => i.token)));
  });

  it('starts an empty prompt from BOS; seeds reproduce sampling', async () => {
    const m = new TinyLM();
    const a = await generateText(m, tok, '', { maxNewTokens: 20, temperature: 0.9, topK: 10, topP: 0.95, seed: 3 });
    const b = await generateText(m, tok, '', { maxNewTokens: 20, temperature: 0.9, topK: 10, topP: 0.95, seed: 3 });
    const c = await generateText(m, tok, '', { maxNewTokens: 20, temperature: 0.9, topK: 10, topP: 0.95, seed: 4 });
    expect(a).toEqual(b);
    expect(a.tokens).toHaveLength(20);
    expect(c.tokens).not.toEqual(a.tokens);
    const g = await generateText(m, tok, [0], { maxNewTokens: 5 });
    expect((await generateText(m, tok, '', { maxNewTokens: 5 })).tokens).toEqual(g.tokens);
  });

  it('stops at EOS, at a stop string (not emitted), and at the context size', async () => {
    const m = new TinyLM();
    const free = await generateText(m, tok, 'a', { maxNewTokens: 30 });
    expect(free.finishReason).toBe('length');
    // EOS: make a greedy token (its first occurrence is at k > 0) the model's EOS
    const k = free.tokens.findIndex((t, i) => i > 0 && !free.tokens.slice(0, i).includes(t));
    const eosModel = new TinyLM();
    (eosModel as unknown as { config: object }).config = { ...m.config, eosId: free.tokens[k] };
    const e = await generateText(eosModel, tok, 'a', { maxNewTokens: 30 });
    expect(e.finishReason).toBe('eos');
    expect(e.tokens).toEqual(free.tokens.slice(0, k + 1)); // EOS is the last item
    expect(e.text).toBe(free.text.slice(0, k)); // and adds no text
    // stop string: a piece of the free-running text
    const stop = free.text.slice(6, 9);
    const s = await generateText(m, tok, 'a', { maxNewTokens: 30, stop: [stop] });
    expect(s.finishReason).toBe('stop');
    expect(s.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
    // context: maxPositions 8 with a 3-token prompt ([BOS, 'a', 'b'])
    const small = new TinyLM({ maxPositions: 8 });
    const c = await generateText(small, tok, 'ab', { maxNewTokens: 30 });
    expect(c.finishReason).toBe('length');
    expect(c.tokens.length).toBe(6);
  });

  it('yields to the event loop between tokens', async () => {
    const m = new TinyLM();
    // other callbacks queued with setImmediate run between tokens
    let ticks = 0;
    let done = false;
    const spin = () => {
      if (done) return;
      ticks++;
      setImmediate(spin);
    };
    setImmediate(spin);
    let n = 0;
    try {
      for await (const _ of generate(m, tok, 'a', { maxNewTokens: 40 })) n++;
    } finally {
      done = true;
    }
    expect(n).toBe(40);
    expect(ticks).toBeGreaterThan(1);
  });

  it('validates options', async () => {
    const m = new TinyLM();
    const run = (o: object) => generateText(m, tok, 'a', o);
    await expect(run({ temperature: -1 })).rejects.toThrow(/options\.temperature/);
    await expect(run({ topP: 0 })).rejects.toThrow(/options\.topP/);
    await expect(run({ maxNewTokens: 1.5 })).rejects.toThrow(/options\.maxNewTokens/);
    await expect(run({ stop: [''] })).rejects.toThrow(/options\.stop/);
  });
});

describe('perplexity', () => {
  const m = new TinyLM({ maxPositions: 64 });
  const rand = mulberry32(5);
  const tokens = Array.from({ length: 150 }, () => 2 + Math.floor(rand() * 38));
  const V = m.config.vocabSize;
  /**
   * NLL of token i given tokens[begin..i): an independent forward per token.
   * Those forwards run the GEMM with other row counts than the windows do,
   * so the kernels may sum in another order (gemv vs prefill path): the
   * means agree to f32 rounding (~1e-8 here), while a window or stride
   * mistake would move them by 1e-2 or more. Compare to 6 decimals.
   */
  const nllAt = (begin: number, i: number) => tokenNll(m.forward(tokens.slice(begin, i), m.createCache()).data, (i - 1 - begin) * V, V, tokens[i]!);

  it('stride = context: disjoint windows, each scoring all but its first token', () => {
    const r = perplexity(m, tokens, { context: 64 });
    // windows [0,64) [64,128) [128,150): 63 + 63 + 21 scored
    expect(r.tokens).toBe(147);
    let sum = 0;
    for (const [b, e] of [[0, 64], [64, 128], [128, 150]] as const) for (let i = b + 1; i < e; i++) sum += nllAt(b, i);
    expect(r.nll).toBeCloseTo(sum / 147, 6);
    expect(r.ppl).toBeCloseTo(Math.exp(r.nll), 10);
  });

  it('stride < context: every token after the first scored once, with the HF window', () => {
    const progress: [number, number][] = [];
    const r = perplexity(m, tokens, { context: 64, stride: 32, onProgress: (d, t) => progress.push([d, t]) });
    expect(r.tokens).toBe(149);
    // windows begin at 0, 32, 64, 96 (end = 150 stops); window b scores [max(prevEnd, b+1), end)
    let sum = 0;
    let prevEnd = 0;
    for (const b of [0, 32, 64, 96]) {
      const e = Math.min(b + 64, 150);
      for (let i = Math.max(prevEnd, b + 1); i < e; i++) sum += nllAt(b, i);
      prevEnd = e;
    }
    expect(r.nll).toBeCloseTo(sum / 149, 6);
    expect(progress).toEqual([[1, 4], [2, 4], [3, 4], [4, 4]]);
  });

  it('validates', () => {
    expect(() => perplexity(m, [1], {})).toThrow(/tokens/);
    expect(() => perplexity(m, tokens, { context: 65 })).toThrow(/options\.context/);
    expect(() => perplexity(m, tokens, { context: 16, stride: 17 })).toThrow(/options\.stride/);
    expect(() => perplexity(m, [1, 99], {})).toThrow(/tokens/);
  });
});

describe('error report and SVG', () => {
  it('metrics: SQNR, max error, relative Frobenius error', () => {
    const e = errorMetrics([3, 4], [3, 3]);
    expect(e.sqnrDb).toBeCloseTo(10 * Math.log10(25), 10);
    expect(e.maxAbsErr).toBe(1);
    expect(e.relFrobErr).toBeCloseTo(0.2, 12);
    expect(errorMetrics([1, 2], [1, 2]).sqnrDb).toBe(Infinity);
  });

  it('reports each quantized layer on real activations and restores the model', () => {
    const m = new TinyLM({ bias: true });
    const before = [...m.namedModules()].map(([n, x]) => [n, x]);
    const r8 = errorReport(m, [0, 4, 8, 15, 3, 9], { weights: 'int8' });
    const r4 = errorReport(m, [0, 4, 8, 15, 3, 9], { weights: 'int4', scheme: 'asymmetric' }, { histogramLayer: 'layers.1.fc2' });
    expect([...m.namedModules()].map(([n, x]) => [n, x])).toEqual(before); // float layers back in place
    expect(r8.rows.map((r) => r.name)).toEqual(['layers.0.fc1', 'layers.0.fc2', 'layers.1.fc1', 'layers.1.fc2']);
    for (let i = 0; i < 4; i++) {
      const a = r8.rows[i]!;
      const b = r4.rows[i]!;
      expect(a.rows).toBe(6);
      expect(a.weight.sqnrDb).toBeGreaterThan(35); // int8 ~ 6 dB/bit
      expect(b.weight.sqnrDb).toBeLessThan(a.weight.sqnrDb - 15);
      expect(b.output.relFrobErr).toBeGreaterThan(a.output.relFrobErr);
      expect(a.output.sqnrDb).toBeGreaterThan(25);
    }
    // the output metrics match a quantized model's layer output on the same inputs
    expect(r8.table.split('\n')[0]).toMatch(/layer\s+shape\s+quant\s+W SQNR dB/);
    expect(r8.table).toContain('layers.1.fc2');
    expect(r4.histogramLayer).toBe('layers.1.fc2');
    checkWellFormedSvg(r8.sqnrSvg);
    checkWellFormedSvg(r4.histogramSvg);
    expect(r4.histogramSvg).toContain('layers.1.fc2');
  });

  it('report output error equals the quantized model layer error', () => {
    // whole-model consistency: quantizing for real gives logits near the float ones
    const f = new TinyLM();
    const q = new TinyLM();
    quantizeModel(q, { weights: 'int8' });
    expect(q.child('layers')!.child('0')!.child('fc1')).toBeInstanceOf(QLinear);
    const r = errorReport(f, [0, 3, 5], { weights: 'int8' });
    expect(r.rows.every((x) => Number.isFinite(x.output.sqnrDb))).toBe(true);
  });

  it('SVGs escape text and stay well-formed with odd values', () => {
    const bar = barChartSvg(['a<b>&"c"', 'neg', 'inf'], [3, -2, Infinity], { title: 'T & <x>', valueLabel: "it's" });
    checkWellFormedSvg(bar);
    expect(bar).toContain('a&lt;b&gt;&amp;&quot;c&quot;');
    checkWellFormedSvg(histogramSvg([{ label: 'x', values: [] }], { title: 'empty' }));
    checkWellFormedSvg(histogramSvg([{ label: 'const', values: [1, 1, 1] }, { label: 'y', values: [NaN, 2] }], { title: 'h' }));
    expect(() => checkWellFormedSvg('<svg xmlns="http://www.w3.org/2000/svg"><g></svg>')).toThrow();
  });
});
