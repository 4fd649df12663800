/**
 * `quantkit report <model> --out <dir>`: float vs quantized, side by side.
 * For fp32 and each --weights config: footprint, perplexity on a text
 * (default: the bundled sample), sample greedy generations; per quantized
 * config also the per-layer error table, an SVG bar chart of SQNR per layer
 * and an SVG histogram of one layer's original vs dequantized weights.
 * Writes report.md, report.json and the SVGs into --out, replaced atomically
 * (--force needed when it exists).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { QuantMethod } from '../nn/quantize-model.js';
import { QuantkitError } from '../errors.js';
import { writeDirAtomic } from '../io/atomic.js';
import { errorReport, type LayerErrorRow, type LayerOutputErrors, layerOutputErrors, methodTable } from '../eval/error-report.js';
import { footprint, type Footprint } from '../eval/footprint.js';
import { generateText } from '../eval/generate.js';
import { perplexity, type PerplexityResult } from '../eval/perplexity.js';
import { barChartSvg } from '../eval/svg.js';
import { findLinears, makeExcludeMatcher, quantizeModel, type WeightsFormat } from '../nn/quantize-model.js';
import { type CliIO, formatBytes, printJson, progressBar } from './io.js';
import { contextLength, loadCliModel, readTextFile, requireTokenizer, tokenizeText } from './load.js';
import { encoderReportCommand } from './encoder-report.js';
import { isEncoderFolder } from './inspect.js';
import { SAMPLE_TEXT } from './sample-text.js';
import { type QuantFlags, quantLabel, quantOptions, readCalibration, requireFloat } from './weights.js';

export interface ReportFlags extends QuantFlags {
  out: string;
  force?: boolean;
  weights: WeightsFormat[];
  text?: string;
  maxTokens: number;
  context?: number;
  prompt?: string[];
  maxNewTokens: number;
  layer?: string;
  tokenizer?: string;
  json?: boolean;
}

interface ConfigResult {
  label: string;
  footprint: Footprint;
  perplexity: PerplexityResult;
  generations: { prompt: string; text: string }[];
  errors?: { rows: LayerErrorRow[]; table: string; sqnrSvg: string; histogramSvg: string; histogramLayer: string };
  /** quantizeModel's summary: layers kept in float, group-size fallbacks. */
  quantized?: { replaced: number; kept: string[]; fallbacks: string[] };
  /** With --calib, on a round-to-nearest config: each method's per-layer output errors in this format. */
  byMethod?: { label: string; errors: LayerOutputErrors }[];
}

export async function reportCommand(io: CliIO, modelPath: string, flags: ReportFlags): Promise<void> {
  if (isEncoderFolder(modelPath)) return encoderReportCommand(io, modelPath, flags);
  // Everything that can be refused is checked before minutes of evaluation.
  const out = path.resolve(flags.out);
  if (fs.existsSync(out) && !flags.force) throw new QuantkitError('ERR_UNSUPPORTED', `--out ${flags.out} already exists; pass --force to replace it`);
  const load = () => loadCliModel(modelPath, flags.tokenizer);
  const base = load();
  requireFloat(base, 'report');
  const tokenizer = requireTokenizer(base, modelPath);
  if (flags.layer !== undefined) {
    const excluded = makeExcludeMatcher(flags.exclude ?? ['lm_head']);
    const names = findLinears(base.model).map((l) => l.name).filter((n) => !excluded(n));
    if (!names.includes(flags.layer)) {
      throw new QuantkitError('ERR_UNSUPPORTED', `--layer ${flags.layer} is not a quantized Linear layer of this model; choose one of ${names.slice(0, 8).join(', ')}${names.length > 8 ? ', ...' : ''}`);
    }
  }
  const context = contextLength(flags.context, base.model.config.maxPositions);
  const text = flags.text !== undefined ? readTextFile(flags.text) : SAMPLE_TEXT;
  const tokens = tokenizeText(tokenizer, text, flags.maxTokens);
  const prompts = flags.prompt ?? ['', 'Once upon a time'];
  const weights = [...new Set(flags.weights)];
  // With --calib, each format also gets a row per calibrated method (GPTQ,
  // AWQ, both; or only --method's), next to its round-to-nearest row. Their
  // options are built now, so a bad --calib fails before any work.
  const calibration = readCalibration(flags, base, flags.text);
  const methods: QuantMethod[] = flags.method !== undefined && flags.method !== 'rtn' ? [flags.method] : ['gptq', 'awq', 'awq+gptq'];
  const calibrated = new Map(calibration ? weights.map((w) => [w, methods.map((method) => ({ ...quantOptions(w, flags, calibration), method }))] as const) : []);
  const nCalibrated = [...calibrated.values()].reduce((a, v) => a + v.length, 0);
  // steps: per config its generations and perplexity; per quantized config also its error report and quantization; per calibrated config its quantization
  const bar = progressBar(io, 'report', 2 + 4 * weights.length + 3 * nCalibrated);
  let step = 0;
  const next = (what: string) => bar.update(step++, undefined, what);

  const evaluate = async (label: string, m = base.model): Promise<ConfigResult> => {
    next(`${label}: generations`);
    const generations = [];
    for (const prompt of prompts) generations.push({ prompt, text: (await generateText(m, tokenizer, prompt, { maxNewTokens: flags.maxNewTokens })).text });
    next(`${label}: perplexity`);
    return { label, footprint: footprint(m), perplexity: perplexity(m, tokens, { context }), generations };
  };

  const results: ConfigResult[] = [];
  try {
    results.push(await evaluate('fp32'));
    for (const w of weights) {
      const opts = { ...quantOptions(w, flags), method: 'rtn' as const };
      const label = quantLabel(opts);
      const fresh = load(); // each config starts from the float weights
      next(`${label}: per-layer errors`);
      const er = errorReport(fresh.model, tokens.slice(0, Math.min(128, context)), opts, { histogramLayer: flags.layer });
      next(`${label}: quantize`);
      const summary = quantizeModel(fresh.model, opts);
      const r = await evaluate(label, fresh.model);
      r.errors = er;
      r.quantized = { replaced: summary.replaced.length, kept: summary.kept, fallbacks: summary.fallbacks };
      results.push(r);
      // the same format, calibrated on --calib: its layers' output errors go
      // in a table beside round to nearest's (the full table is RTN's alone)
      const errTokens = tokens.slice(0, Math.min(128, context));
      const byMethod = calibrated.has(w) ? [{ label: 'rtn', errors: layerOutputErrors(base.model, fresh.model, errTokens) }] : [];
      for (const g of calibrated.get(w) ?? []) {
        const gl = quantLabel(g);
        const fg = load();
        next(`${gl}: quantize`);
        const sg = quantizeModel(fg.model, g);
        byMethod.push({ label: g.method, errors: layerOutputErrors(base.model, fg.model, errTokens, sg.scaled) });
        const rg = await evaluate(gl, fg.model);
        rg.quantized = { replaced: sg.replaced.length, kept: sg.kept, fallbacks: sg.fallbacks };
        results.push(rg);
      }
      if (byMethod.length > 0) r.byMethod = byMethod;
    }
    bar.update(step, undefined, 'done');
  } finally {
    bar.stop();
  }

  const fp32 = results[0]!;
  const slug = (label: string) => label.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '');
  const files: Record<string, string> = {};
  files['footprint.svg'] = barChartSvg(
    results.map((r) => r.label),
    results.map((r) => r.footprint.bytes / 1024),
    { title: 'Model footprint (KiB)', valueLabel: 'KiB' },
  );
  files['perplexity.svg'] = barChartSvg(
    results.map((r) => r.label),
    results.map((r) => r.perplexity.ppl),
    { title: 'Perplexity (lower is better)', valueLabel: 'perplexity' },
  );
  for (const r of results) {
    if (!r.errors) continue;
    files[`sqnr-${slug(r.label)}.svg`] = r.errors.sqnrSvg;
    files[`weights-${slug(r.label)}.svg`] = r.errors.histogramSvg;
  }

  const pct = (a: number, b: number) => `${a >= b ? '+' : ''}${(((a - b) / b) * 100).toFixed(2)} %`;
  const md: string[] = [
    `# quantkit report: ${path.basename(modelPath)}`,
    '',
    `Model: \`${modelPath}\` (${base.source}, ${base.model.config.arch}). Perplexity on ${flags.text ? `\`${flags.text}\`` : 'the bundled sample text'}: ${fp32.perplexity.tokens} scored tokens, context ${context}.`,
    '',
    '| weights | footprint (bytes) | vs fp32 | perplexity | vs fp32 | mean NLL |',
    '|---|---:|---:|---:|---:|---:|',
    ...results.map(
      (r) =>
        `| ${r.label} | ${r.footprint.bytes.toLocaleString('en-US')} (${formatBytes(r.footprint.bytes)}) | ${(fp32.footprint.bytes / r.footprint.bytes).toFixed(2)}x smaller | ${r.perplexity.ppl.toFixed(4)} | ${r === fp32 ? '-' : pct(r.perplexity.ppl, fp32.perplexity.ppl)} | ${r.perplexity.nll.toFixed(5)} |`,
    ),
    '',
    '![footprint](footprint.svg)',
    '![perplexity](perplexity.svg)',
    '',
    '## Sample generations (greedy)',
    '',
  ];
  for (const r of results) {
    md.push(`### ${r.label}`, '');
    for (const g of r.generations) md.push(`- prompt ${JSON.stringify(g.prompt)}: ${JSON.stringify(g.prompt + g.text)}`);
    md.push('');
  }
  for (const r of results) {
    if (!r.errors) continue;
    const q = r.quantized!;
    md.push(`## Quantization error, ${r.label}`, '');
    md.push(`${q.replaced} Linear layers quantized; kept in float: ${q.kept.join(', ') || 'none'}.`);
    if (q.fallbacks.length) md.push(`Group size does not divide K, quantized with the finer group shown in the table: ${q.fallbacks.join(', ')}.`);
    md.push('', 'Per layer: weight (W) and output on real activations (Y): SQNR, max |error|, relative Frobenius error.', '', '```', r.errors.table.trimEnd(), '```', '');
    md.push(`![SQNR per layer](sqnr-${slug(r.label)}.svg)`, '', `![weights of ${r.errors.histogramLayer}](weights-${slug(r.label)}.svg)`, '');
    if (r.byMethod) {
      md.push(`### Output SQNR by method, ${r.label}`, '');
      md.push(`Each layer on its own, on the float model's activations (${r.byMethod[0]!.errors.rows} rows): round to nearest vs the calibrated methods (activation-aware scales undone on the layer's input and output).`, '');
      md.push('```', methodTable(r.byMethod).trimEnd(), '```', '');
    }
  }
  const json = {
    model: modelPath,
    source: base.source,
    context,
    text: flags.text ?? '(bundled sample)',
    results: results.map((r) => ({
      label: r.label,
      footprint: r.footprint,
      perplexity: r.perplexity,
      generations: r.generations,
      quantized: r.quantized,
      layers: r.errors?.rows,
      ...(r.byMethod
        ? { outputSqnrByMethod: r.byMethod[0]!.errors.names.map((name, i) => ({ name, sqnrDb: Object.fromEntries(r.byMethod!.map((m) => [m.label, m.errors.output[i]!.sqnrDb])) })) }
        : {}),
    })),
  };
  // The folder is replaced whole and atomically: no stale SVG of an earlier
  // run's configs survives, and a kill leaves the old report or the new one.
  await fsp.mkdir(path.dirname(out), { recursive: true });
  await writeDirAtomic(out, async (dir) => {
    for (const [name, content] of Object.entries(files)) await fsp.writeFile(path.join(dir, name), content);
    await fsp.writeFile(path.join(dir, 'report.md'), md.join('\n'));
    await fsp.writeFile(path.join(dir, 'report.json'), JSON.stringify(json, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : x), 2) + '\n');
  });
  if (flags.json) return printJson(io, json);
  io.out(
    results.map((r) => `${r.label.padEnd(24)} footprint ${r.footprint.bytes.toLocaleString('en-US').padStart(12)} B   ppl ${r.perplexity.ppl.toFixed(4)}`).join('\n') +
      `\nwrote ${path.join(flags.out, 'report.md')}, report.json and ${Object.keys(files).length} SVGs\n`,
  );
}
