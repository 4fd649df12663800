/**
 * CLI plumbing shared by the commands: where output goes (so tests can run
 * the CLI in-process), progress bars (stderr, only on a TTY), option parsers
 * that reject bad values with a one-line message, and --json output.
 */
import { InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';

export interface CliIO {
  /** Normal output (stdout). */
  out(s: string): void;
  /** Diagnostics (stderr). */
  err(s: string): void;
  /** Where progress bars go; they are drawn only when it is a TTY. */
  progressStream?: NodeJS.WritableStream & { isTTY?: boolean };
}

export const processIO: CliIO = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
  progressStream: process.stderr,
};

export interface Progress {
  /** `step` names what is being done now (shown after the count). */
  update(done: number, total?: number, step?: string): void;
  stop(): void;
}

/** quantizeModel's onProgress drawing a 'quantize' bar (layer by layer), and its stop. */
export function quantizeProgress(io: CliIO): { onProgress: (done: number, total: number, layer: string) => void; stop(): void } {
  let bar: Progress | undefined;
  return {
    onProgress: (done, total, layer) => {
      bar ??= progressBar(io, 'quantize', total);
      bar.update(done, total, layer);
    },
    stop: () => bar?.stop(),
  };
}

/** A progress bar on a TTY stderr, else nothing at all (pipes and logs stay clean). */
export function progressBar(io: CliIO, label: string, total: number): Progress {
  const stream = io.progressStream;
  if (!stream?.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    { stream, format: `${label} [{bar}] {value}/{total}{step} | ETA {eta_formatted}`, clearOnComplete: true, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { step: '' });
  let shown = '';
  return {
    update: (done, t, step) => {
      if (t !== undefined) bar.setTotal(t);
      bar.update(done, step !== undefined ? { step: ` ${step}` } : {});
      // the bar redraws at most 10 times a second; a new step is drawn at once,
      // so a user sees every step's label even when steps are quick
      if (step !== undefined && step !== shown) {
        shown = step;
        bar.render();
      }
    },
    stop: () => bar.stop(),
  };
}

export function intOption(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`must be an integer in [${min}, ${max}].`);
    return n;
  };
}

export function floatOption(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`must be a number in [${min}, ${max}].`);
    return n;
  };
}

export function choiceOption<T extends string>(choices: readonly T[]): (v: string) => T {
  return (v) => {
    if (!(choices as readonly string[]).includes(v)) throw new InvalidArgumentError(`must be one of ${choices.join(', ')}.`);
    return v as T;
  };
}

/** Repeatable / comma-separated list option. */
export function listOption(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), ...v.split(',').map((s) => s.trim()).filter((s) => s !== '')];
}

export function printJson(io: CliIO, v: unknown): void {
  io.out(JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : x), 2) + '\n');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(2)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
