/** `quantkit inspect <model>`: architecture, size, layers and footprint. */
import { footprint } from '../eval/footprint.js';
import { Linear, QLinear } from '../nn/linear.js';
import { type CliIO, formatBytes, printJson } from './io.js';
import { loadCliModel } from './load.js';

export interface InspectFlags {
  tokenizer?: string;
  json?: boolean;
}

export function inspectCommand(io: CliIO, modelPath: string, flags: InspectFlags): void {
  const m = loadCliModel(modelPath, flags.tokenizer);
  let params = 0;
  const layers: { name: string; kind: string; shape: number[]; format: string }[] = [];
  const seen = new Set<ArrayBufferView>();
  for (const [, t] of m.model.namedTensors()) {
    if (seen.has(t.data)) continue; // a tied weight is one set of parameters
    seen.add(t.data);
    params += t.size;
  }
  for (const [name, mod] of m.model.namedModules()) {
    if (mod instanceof QLinear) {
      const q = mod.qweight;
      layers.push({ name, kind: 'QLinear', shape: [...q.shape], format: `int${q.bits} ${q.scheme} ${q.granularity === 'group' ? `g${q.groupSize}` : q.granularity}` });
    } else if (mod instanceof Linear) {
      layers.push({ name, kind: 'Linear', shape: [...mod.weight.shape], format: mod.weight.dtype });
    }
  }
  const fp = footprint(m.model);
  const info = {
    model: modelPath,
    source: m.source,
    arch: m.model.config.arch,
    config: m.model.config,
    quantization: m.source === 'quantkit' ? m.sourceConfig.quantization_config : null,
    parameters: params,
    footprint: fp,
    tokenizer: m.tokenizer ? { vocabSize: m.tokenizer.vocabSize, bosId: m.tokenizer.bosId ?? null, eosId: m.tokenizer.eosId ?? null } : null,
    linearLayers: layers,
  };
  if (flags.json) return printJson(io, info);
  const c = m.model.config as unknown as Record<string, unknown>;
  const lines = [
    `model:       ${modelPath} (${m.source})`,
    `arch:        ${c.arch}`,
    `config:      ${Object.entries(c)
      .filter(([k, v]) => k !== 'arch' && (typeof v === 'number' || typeof v === 'boolean'))
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
    `parameters:  ${params.toLocaleString('en-US')} (weights counted once per distinct tensor: ${fp.tensors} tensors)`,
    `footprint:   ${fp.bytes.toLocaleString('en-US')} bytes (${formatBytes(fp.bytes)}); ${Object.entries(fp.byDtype)
      .map(([k, v]) => `${k}: ${v.toLocaleString('en-US')}`)
      .join(', ')}`,
    `tokenizer:   ${m.tokenizer ? `vocab ${m.tokenizer.vocabSize}, bos ${m.tokenizer.bosId ?? '-'}, eos ${m.tokenizer.eosId ?? '-'}` : 'none found (pass --tokenizer)'}`,
  ];
  if (info.quantization) lines.push(`quantized:   ${JSON.stringify(info.quantization)}`);
  lines.push(`linear layers (${layers.length}):`);
  for (const l of layers) lines.push(`  ${l.name.padEnd(40)} ${l.kind.padEnd(8)} ${l.shape.join('x').padEnd(10)} ${l.format}`);
  io.out(lines.join('\n') + '\n');
}
