#!/usr/bin/env node
/**
 * The `quantkit` command line (compiled to dist/cli/main.js, the package's
 * bin). Commands: inspect, quantize, generate, ppl, report, fill-mask, embed, serve;
 * see --help.
 *
 * run(argv, io) is the whole CLI as a function (tests call it in-process):
 * it never exits the process and returns the exit code. Every error ends
 * as one line "quantkit: <message>" on stderr and a non-zero code (no stack
 * trace); usage errors are reported by commander the same way.
 */
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { QuantkitError } from '../errors.js';
import { type CliIO, choiceOption, floatOption, intOption, listOption, processIO } from './io.js';

// Commands are imported when run, so that even a failure to load the native
// addon (at import time) ends as a one-line message instead of a stack trace.
const commands = {
  inspect: async () => (await import('./inspect.js')).inspectCommand,
  quantize: async () => (await import('./quantize.js')).quantizeCommand,
  generate: async () => (await import('./generate.js')).generateCommand,
  ppl: async () => (await import('./ppl.js')).pplCommand,
  report: async () => (await import('./report.js')).reportCommand,
  fillMask: async () => (await import('./encoder.js')).fillMaskCommand,
  embed: async () => (await import('./encoder.js')).embedCommand,
  serve: async () => (await import('./serve.js')).serveCommand,
};

const VERSION = '0.1.0';

function quantOpts(cmd: Command, withBits: boolean): Command {
  if (withBits) {
    // one vocabulary: --weights int8|int4 as on every other command; --bits 8|4 is the same choice
    cmd.addOption(new Option('--weights <w>', 'weight format: int8 or int4 (default: int8)').argParser(choiceOption(['int8', 'int4'] as const)));
    cmd.addOption(new Option('--bits <n>', 'the same as --weights: 8 or 4').argParser(choiceOption(['8', '4'])));
  }
  return cmd
    .addOption(
      new Option('--scheme <s>', 'sym / symmetric, or asym / asymmetric (with zero points) (default: sym for int8, asym for int4)')
        .argParser(choiceOption(['sym', 'asym', 'symmetric', 'asymmetric'] as const)),
    )
    .addOption(new Option('--group <n>', 'values per scale along K (int4 default 32; int8 default: per channel)').argParser(intOption(2, 1 << 20)))
    .addOption(new Option('--granularity <g>', 'channel, group or tensor (default: channel for int8, group for int4)').argParser(choiceOption(['channel', 'group', 'tensor'] as const)))
    .addOption(
      new Option('--group-fallback <f>', 'a layer whose K the group size does not divide: tail (a shorter last group), divisor (largest even divisor below the group size), channel, keep (float) or error')
        .argParser(choiceOption(['tail', 'divisor', 'channel', 'keep', 'error'] as const))
        .default('tail'),
    )
    .option('--exclude <names>', 'layer names/globs left in float, replacing the default lm_head (repeatable, comma-separated; * within a name segment, ** across)', listOption)
    .addOption(
      new Option(
        '--activations <a>',
        'none (weight-only, the default), int8 (W8A8 with int8 weights, W4A8 with int4), int8-prefill (int8 for prompts, weight-only for generated tokens) or llm.int8 (int8 sym per-channel weights)',
      ).argParser(choiceOption(['none', 'int8', 'int8-prefill', 'llm.int8'] as const)),
    )
    .addOption(new Option('--threshold <t>', 'LLM.int8() outlier threshold (default 6)').argParser(floatOption(0, 1e6)))
    .addOption(new Option('--scale-dtype <d>', 'f32 (default) or f16: scales stored in half precision (int4 g32: 0.5625 bytes per weight instead of 0.625, as ggml Q4_0)').argParser(choiceOption(['f32', 'f16'] as const)))
    .addOption(new Option('--calib <file>', 'calibration text: quantize with GPTQ (or --method) against each layer\'s inputs on it (causal LMs; use other text than you evaluate on)'))
    .addOption(new Option('--calib-tokens <n>', 'calibration tokens read from --calib').argParser(intOption(2, 2 ** 31)).default(4096))
    .addOption(
      new Option('--method <m>', 'rtn (round to nearest), gptq, awq (activation-aware scales folded into the norms) or awq+gptq; all but rtn need --calib (default: gptq with --calib, else rtn)').argParser(
        choiceOption(['rtn', 'gptq', 'awq', 'awq+gptq'] as const),
      ),
    );
}

/** quantize's --weights / --bits: one choice, two spellings; both given must agree. */
function quantizeBits(weights: 'int8' | 'int4' | undefined, bits: '8' | '4' | undefined): 8 | 4 {
  const fromWeights = weights === undefined ? undefined : weights === 'int8' ? 8 : 4;
  const fromBits = bits === undefined ? undefined : (Number(bits) as 8 | 4);
  if (fromWeights !== undefined && fromBits !== undefined && fromWeights !== fromBits) {
    throw new QuantkitError('ERR_UNSUPPORTED', `--weights ${weights} and --bits ${bits} disagree; give one of them`);
  }
  return fromWeights ?? fromBits ?? 8;
}

const tokenizerOpt = () => new Option('--tokenizer <file>', 'tokenizer file (llama2.c tokenizer.bin, tokenizer.json) when not found next to the model');
const weightsOpt = () => new Option('--weights <w>', 'quantize the float model first: int8, int4 (or fp32: as loaded)').argParser(choiceOption(['int8', 'int4', 'fp32'] as const));

function buildProgram(io: CliIO): Command {
  const program = new Command('quantkit')
    .description('Quantize language-model weights to int8/int4 and evaluate them (footprint, perplexity, generation, error report).')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s), outputError: (s, write) => write(s.startsWith('error:') ? `quantkit: ${s.slice(7)}` : s) })
    .exitOverride();
  const modelArg = '<model>';
  const modelHelp = 'a Hugging Face model folder, a quantkit checkpoint folder, or a llama2.c .bin (with --tokenizer); inspect also takes encoder (DistilBERT) folders';

  quantOpts(
    program
      .command('inspect')
      .description('show a model: what it is, config, layers, footprint, module tree (with --weights: also after quantization)')
      .argument(modelArg, modelHelp)
      .addOption(weightsOpt()),
    false,
  )
    .addOption(tokenizerOpt())
    .option('--json', 'machine-readable output')
    .action(async (model: string, o) => (await commands.inspect())(io, model, o));

  quantOpts(
    program
      .command('quantize')
      .description('quantize the Linear layers and save a quantkit checkpoint folder')
      .argument(modelArg, modelHelp)
      .requiredOption('--out <dir>', 'output folder, written atomically (required)')
      .option('--force', 'replace --out if it already exists')
      .addOption(
        new Option('--budget <ratio>', 'choose each layer\'s format (int4 g128, int4 g32, int8, float) for the fewest bytes whose perplexity on --calib stays within this ratio of float (e.g. 1.01); needs --calib').argParser(
          floatOption(1.000001, 1e6),
        ),
      ),
    true,
  )
    .addOption(tokenizerOpt())
    .option('--json', 'machine-readable output')
    .action(async (model: string, o) => (await commands.quantize())(io, model, { ...o, weights: o.weights ?? o.bits, bits: quantizeBits(o.weights, o.bits) }));

  quantOpts(
    program
      .command('generate')
      .description('generate text (streamed to stdout)')
      .argument(modelArg, modelHelp)
      .option('--prompt <text>', 'prompt (empty: start from BOS)', '')
      .addOption(new Option('--max-new-tokens <n>', 'tokens to generate').argParser(intOption(0, 1 << 20)).default(50))
      .addOption(weightsOpt())
      .addOption(new Option('--temperature <t>', '0 = greedy').argParser(floatOption(0, 100)).default(0))
      .addOption(new Option('--top-k <k>', 'sample from the k most likely tokens (0 = all)').argParser(intOption(0, 1 << 30)).default(0))
      .addOption(new Option('--top-p <p>', 'nucleus sampling threshold (1 = off)').argParser(floatOption(1e-9, 1)).default(1))
      .addOption(new Option('--seed <n>', 'sampling seed').argParser(intOption(0, 2 ** 32 - 1)).default(0))
      .option('--stop <s>', 'stop string (repeatable)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v]),
    false,
  )
    .addOption(tokenizerOpt())
    .option('--json', 'machine-readable output')
    .action(async (model: string, o) => (await commands.generate())(io, model, o));

  quantOpts(
    program
      .command('ppl')
      .description('perplexity of a text (sliding windows, Hugging Face method)')
      .argument(modelArg, modelHelp)
      .requiredOption('--text <file>', 'text file; blank-line separated paragraphs each start with BOS (required)')
      .addOption(weightsOpt())
      .addOption(new Option('--context <n>', "window length in tokens (default: 256, or the model's context if shorter)").argParser(intOption(2, 1 << 20)))
      .addOption(new Option('--stride <n>', 'window advance (default: context)').argParser(intOption(1, 1 << 20)))
      .addOption(new Option('--max-tokens <n>', 'evaluate at most this many tokens').argParser(intOption(2, 2 ** 31)).default(16384)),
    false,
  )
    .addOption(tokenizerOpt())
    .option('--json', 'machine-readable output')
    .action(async (model: string, o) => (await commands.ppl())(io, model, o));

  quantOpts(
    program
      .command('report')
      .description('fp32 vs quantized: footprint, perplexity, generations, per-layer error table and SVG charts')
      .argument(modelArg, modelHelp)
      .requiredOption('--out <dir>', 'folder for report.md, report.json and the SVGs, replaced atomically (required)')
      .option('--force', 'replace --out if it already exists')
      .addOption(new Option('--weights <list>', 'configs to compare, comma-separated').argParser((v) => v.split(',').map((s) => choiceOption(['int8', 'int4'] as const)(s.trim()))).default(['int8', 'int4']))
      .option('--text <file>', 'text for perplexity (default: a bundled sample of simple English stories)')
      .addOption(new Option('--max-tokens <n>', 'perplexity tokens').argParser(intOption(2, 2 ** 31)).default(4096))
      .addOption(new Option('--context <n>', "perplexity window (default: 256, or the model's context if shorter)").argParser(intOption(2, 1 << 20)))
      .option('--prompt <text>', 'generation prompt (repeatable; default: "" and "Once upon a time")', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
      .addOption(new Option('--max-new-tokens <n>', 'tokens per sample generation').argParser(intOption(0, 1 << 20)).default(40))
      .option('--layer <name>', 'layer for the weight histogram (default: the first quantized layer)'),
    false,
  )
    .addOption(tokenizerOpt())
    .option('--json', 'machine-readable output')
    .action(async (model: string, o) => (await commands.report())(io, model, o));

  const encoderHelp = 'a Hugging Face encoder folder (DistilBERT: config.json, safetensors, tokenizer.json or vocab.txt)';
  quantOpts(
    program
      .command('fill-mask')
      .description('the most likely tokens for each [MASK] of a text (a masked-LM encoder)')
      .argument(modelArg, encoderHelp)
      .argument('<text>', 'text with one or more [MASK] tokens')
      .addOption(new Option('--top-k <k>', 'predictions per [MASK]').argParser(intOption(1, 1 << 20)).default(5))
      .addOption(weightsOpt()),
    false,
  )
    .option('--json', 'machine-readable output')
    .action(async (model: string, text: string, o) => (await commands.fillMask())(io, model, text, o));

  quantOpts(
    program
      .command('embed')
      .description('a sentence embedding (mean of the last hidden states) per line of a text file')
      .argument(modelArg, encoderHelp)
      .requiredOption('--text <file>', 'one sentence per line (required)')
      .option('--out <file>', 'write the vectors as raw little-endian f32 [lines, dim] (default: one JSON array per line on stdout)')
      .addOption(new Option('--batch <n>', 'lines per forward').argParser(intOption(1, 4096)).default(32))
      .addOption(weightsOpt()),
    false,
  )
    .option('--json', 'with --out: print a JSON summary')
    .action(async (model: string, o) => (await commands.embed())(io, model, o));

  quantOpts(
    program
      .command('serve')
      .description('serve an OpenAI-compatible completions API (continuous batching) until SIGTERM')
      .argument(modelArg, modelHelp)
      .addOption(weightsOpt())
      .option('--host <host>', 'address to bind', '127.0.0.1')
      .addOption(new Option('--port <n>', 'port (0: any free port)').argParser(intOption(0, 65535)).default(8080))
      .option('--api-key <key>', 'require Authorization: Bearer <key> (default: $QUANTKIT_API_KEY, else open)')
      .addOption(new Option('--workers <n>', 'processes serving the port (node:cluster); they map the same weight files').argParser(intOption(1, 256)).default(1))
      .addOption(new Option('--max-sequences <n>', 'sequences batched per step').argParser(intOption(1, 4096)).default(16))
      .addOption(new Option('--prefill-chunk <n>', 'prompt tokens per step (chunked prefill)').argParser(intOption(1, 1 << 20)).default(64))
      .addOption(new Option('--kv-budget-mb <n>', 'KV cache memory all sequences may reserve (MiB)').argParser(intOption(1, 1 << 24)).default(1024))
      .addOption(new Option('--max-concurrent <n>', 'completion requests in flight (beyond: 429)').argParser(intOption(1, 1 << 20)).default(64))
      .addOption(new Option('--max-tokens <n>', 'largest max_tokens a request may ask').argParser(intOption(1, 1 << 24)).default(4096))
      .addOption(new Option('--max-prompt-tokens <n>', 'longest prompt in tokens (default: the context - 1)').argParser(intOption(1, 1 << 24)))
      .addOption(new Option('--body-limit <bytes>', 'largest request body (beyond: 413)').argParser(intOption(64, 1 << 30)).default(1 << 20))
      .addOption(new Option('--grace <s>', 'seconds in-flight requests get to finish at shutdown').argParser(floatOption(0, 86400)).default(30))
      .option('--name <id>', 'model id reported by /v1/models (default: the folder name)'),
    false,
  )
    .addOption(tokenizerOpt())
    .action(async (model: string, o) => (await commands.serve())(io, model, o));

  // --threads on every command: the native pool size for this run (default:
  // QUANTKIT_THREADS, else the CPUs this process may use)
  for (const cmd of program.commands) {
    cmd.addOption(new Option('--threads <n>', 'native threads (default: $QUANTKIT_THREADS, else the CPUs available)').argParser(intOption(1, 1024)));
  }
  program.hook('preAction', async (_program, action) => {
    const n = action.opts().threads as number | undefined;
    if (n !== undefined) (await import('../runtime.js')).setThreads(n);
  });
  return program;
}

/** Library option -> the CLI flag that sets it, where the names differ beyond kebab-case. */
const FLAG_OF: Record<string, string> = {
  groupSize: '--group',
  groupFallback: '--group-fallback',
  scaleDtype: '--scale-dtype',
  histogramLayer: '--layer',
  tokenizerPath: '--tokenizer',
  maxNewTokens: '--max-new-tokens',
  topK: '--top-k',
  topP: '--top-p',
};
const FLAGS = new Set(['groupFallback', 'activations', 'bits', 'context', 'exclude', 'granularity', 'scheme', 'seed', 'stop', 'stride', 'temperature', 'threshold', 'weights']);

/**
 * A library message names its option ("quantizeModel: 'options.exclude' ...");
 * the CLI user typed a flag, so say that flag ("--exclude ...").
 */
export function cliWording(msg: string): string {
  const flag = (name: string) => FLAG_OF[name] ?? (FLAGS.has(name) ? `--${name}` : undefined);
  return msg
    .replace(/^\w+: 'options\.(\w+)'/, (m, name: string) => flag(name) ?? m)
    .replace(/'options\.(\w+)'/g, (m, name: string) => flag(name) ?? m);
}

/** One line, no stack: the message of an error (its first line), in CLI words. */
function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return cliWording(msg.split('\n')[0]!.trim());
}

/** Run the CLI on `argv` (without the node/script entries); resolves to the exit code. */
export async function run(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed help, the version, or a usage error
      return err.exitCode;
    }
    io.err(`quantkit: ${oneLine(err)}\n`);
    return 1;
  }
}

function isMain(): boolean {
  if (process.argv[1] === undefined) return false;
  try {
    return fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`quantkit: ${oneLine(err)}\n`);
      process.exitCode = 1;
    },
  );
}
