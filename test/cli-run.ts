/**
 * Runs the quantkit CLI as users do: a child process of its entry point
 * (lib/cli/main.ts, the source of the published dist/cli/main.js bin,
 * through tsx), stdout and stderr as pipes (so no progress bars), the exit
 * code as the process's own. What a test sees is what a shell would: exit
 * status, output streams, and anything that only shows in a real process
 * (an unhandled rejection, a handle that keeps the process alive, a stack
 * trace printed instead of one line).
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLI_ENTRY = path.join(ROOT, 'lib/cli/main.ts');

export interface CliResult {
  /** Exit status (null only if the process was killed by a signal). */
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/** `quantkit ...argv` in a child process; resolves when it exits (2 minutes at most). */
export function runCli(argv: readonly string[], options: { env?: Record<string, string | undefined>; nodeArgs?: readonly string[] } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', CLI_ENTRY, ...argv], {
      cwd: ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => void (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => void (err += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err });
    });
  });
}

/** runCli with `--json`, parsed; throws with the CLI's stderr when it fails. */
export async function runCliJson<T = Record<string, unknown>>(argv: readonly string[]): Promise<T> {
  const r = await runCli([...argv, '--json']);
  if (r.code !== 0) throw new Error(`quantkit ${argv.join(' ')} exited ${r.code ?? r.signal}: ${r.err}`);
  return JSON.parse(r.out) as T;
}

/** runCli that hands the child's stdout and stderr to `io` (the shape of lib/cli's CliIO) and returns its exit code. */
export async function runCliInto(argv: readonly string[], io: { out: (s: string) => void; err: (s: string) => void }): Promise<number | null> {
  const r = await runCli(argv);
  io.out(r.out);
  io.err(r.err);
  return r.code;
}
