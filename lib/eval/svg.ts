/**
 * Minimal standalone SVG charts (hand-written strings, no dependencies): a
 * horizontal bar chart (e.g. SQNR per layer) and an overlaid histogram (e.g.
 * original vs dequantized weights). Output is a complete XML document with
 * the SVG namespace; every text is XML-escaped.
 */

export function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** A number for an SVG attribute: finite, at most 2 decimals. */
function n(v: number): string {
  return Number.isFinite(v) ? String(Math.round(v * 100) / 100) : '0';
}

function doc(width: number, height: number, title: string, body: string[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${n(width)}" height="${n(height)}" viewBox="0 0 ${n(width)} ${n(height)}" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${n(width)}" height="${n(height)}" fill="white"/>`,
    `<text x="${n(width / 2)}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** Tick values from lo to hi: integer multiples of step, so no float drift (no "-5.55e-17"). */
function ticks(lo: number, hi: number, step: number): number[] {
  const out: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) out.push(Number((k * step).toPrecision(12)));
  return out;
}

/** "Nice" tick step for a range: 1, 2 or 5 times a power of ten. */
function tickStep(range: number, target = 5): number {
  if (!(range > 0)) return 1;
  const raw = range / target;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

export interface BarChartOptions {
  title: string;
  /** Axis label for the values, e.g. 'SQNR (dB)'. */
  valueLabel?: string;
  width?: number;
  /** Bar colours, cycled (default one blue). */
  colors?: readonly string[];
}

/** Horizontal bars, one row per label; values may be negative or non-finite (drawn as 0, labelled). */
export function barChartSvg(labels: readonly string[], values: readonly number[], options: BarChartOptions): string {
  const width = options.width ?? 720;
  const colors = options.colors?.length ? options.colors : ['#4878d0'];
  const rowH = 18;
  const labelW = Math.min(320, 12 + 6.5 * Math.max(4, ...labels.map((l) => l.length)));
  const top = 34;
  const plotW = width - labelW - 70;
  const height = top + rowH * labels.length + 40;
  const finite = values.filter(Number.isFinite);
  const lo = Math.min(0, ...finite);
  const hi = Math.max(0, ...finite, 1e-9);
  const x = (v: number) => labelW + ((v - lo) / (hi - lo)) * plotW;
  const body: string[] = [];
  const step = tickStep(hi - lo);
  for (const t of ticks(lo, hi, step)) {
    body.push(`<line x1="${n(x(t))}" y1="${top - 4}" x2="${n(x(t))}" y2="${n(top + rowH * labels.length)}" stroke="#ddd"/>`);
    body.push(`<text x="${n(x(t))}" y="${n(top + rowH * labels.length + 14)}" text-anchor="middle">${escapeXml(String(Math.round(t * 1000) / 1000))}</text>`);
  }
  labels.forEach((label, i) => {
    const v = values[i]!;
    const y = top + i * rowH;
    const fv = Number.isFinite(v) ? v : 0;
    const x0 = x(Math.min(0, fv));
    const w = Math.abs(x(fv) - x(0));
    body.push(`<text x="${n(labelW - 6)}" y="${n(y + rowH * 0.7)}" text-anchor="end">${escapeXml(label)}</text>`);
    body.push(`<rect x="${n(x0)}" y="${n(y + 2)}" width="${n(w)}" height="${n(rowH - 4)}" fill="${escapeXml(colors[i % colors.length]!)}"/>`);
    const shown = Number.isFinite(v) ? (Math.round(v * 100) / 100).toFixed(2) : String(v);
    body.push(`<text x="${n(x(Math.max(0, fv)) + 4)}" y="${n(y + rowH * 0.7)}">${escapeXml(shown)}</text>`);
  });
  if (options.valueLabel) {
    body.push(`<text x="${n(labelW + plotW / 2)}" y="${n(height - 8)}" text-anchor="middle">${escapeXml(options.valueLabel)}</text>`);
  }
  return doc(width, height, options.title, body);
}

export interface HistogramSeries {
  label: string;
  values: ArrayLike<number>;
  color?: string;
}

export interface HistogramOptions {
  title: string;
  bins?: number;
  width?: number;
  height?: number;
  valueLabel?: string;
}

/** Bin counts of `values` over [lo, hi] (the last bin includes hi). */
export function histogram(values: ArrayLike<number>, lo: number, hi: number, bins: number): number[] {
  const counts = new Array<number>(bins).fill(0);
  const w = (hi - lo) / bins || 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    const b = Math.min(bins - 1, Math.max(0, Math.floor((v - lo) / w)));
    counts[b]!++;
  }
  return counts;
}

/** Overlaid step histograms of several series on shared bins. */
export function histogramSvg(series: readonly HistogramSeries[], options: HistogramOptions): string {
  const width = options.width ?? 720;
  const height = options.height ?? 360;
  const bins = options.bins ?? 80;
  const colors = ['#4878d0', '#ee854a', '#6acc64', '#d65f5f'];
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of series) {
    for (let i = 0; i < s.values.length; i++) {
      const v = s.values[i]!;
      if (Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
  }
  if (!Number.isFinite(lo)) {
    lo = 0;
    hi = 1;
  }
  if (hi === lo) hi = lo + 1;
  const counts = series.map((s) => histogram(s.values, lo, hi, bins));
  const maxC = Math.max(1, ...counts.flat());
  const left = 56;
  const right = 16;
  const top = 34;
  const bottom = 44;
  const pw = width - left - right;
  const ph = height - top - bottom;
  const x = (v: number) => left + ((v - lo) / (hi - lo)) * pw;
  const y = (c: number) => top + ph - (c / maxC) * ph;
  const body: string[] = [];
  body.push(`<rect x="${left}" y="${top}" width="${n(pw)}" height="${n(ph)}" fill="none" stroke="#999"/>`);
  const xs = tickStep(hi - lo, 6);
  for (const t of ticks(lo, hi, xs)) {
    body.push(`<line x1="${n(x(t))}" y1="${n(top + ph)}" x2="${n(x(t))}" y2="${n(top + ph + 4)}" stroke="#999"/>`);
    body.push(`<text x="${n(x(t))}" y="${n(top + ph + 16)}" text-anchor="middle">${escapeXml(String(Number(t.toPrecision(3))))}</text>`);
  }
  const ys = tickStep(maxC, 4);
  for (const t of ticks(0, maxC, ys)) {
    body.push(`<text x="${left - 4}" y="${n(y(t) + 4)}" text-anchor="end">${t}</text>`);
  }
  counts.forEach((c, si) => {
    const color = series[si]!.color ?? colors[si % colors.length]!;
    const pts: string[] = [`${n(x(lo))},${n(y(0))}`];
    const bw = (hi - lo) / bins;
    c.forEach((cnt, b) => {
      pts.push(`${n(x(lo + b * bw))},${n(y(cnt))}`, `${n(x(lo + (b + 1) * bw))},${n(y(cnt))}`);
    });
    pts.push(`${n(x(hi))},${n(y(0))}`);
    body.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${escapeXml(color)}" stroke-width="1.5" stroke-opacity="0.85"/>`);
    body.push(`<rect x="${n(left + 10)}" y="${n(top + 8 + si * 16)}" width="10" height="10" fill="${escapeXml(color)}"/>`);
    body.push(`<text x="${n(left + 26)}" y="${n(top + 17 + si * 16)}">${escapeXml(series[si]!.label)}</text>`);
  });
  if (options.valueLabel) body.push(`<text x="${n(left + pw / 2)}" y="${n(height - 8)}" text-anchor="middle">${escapeXml(options.valueLabel)}</text>`);
  return doc(width, height, options.title, body);
}
