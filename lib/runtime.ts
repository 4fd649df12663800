/** Process-wide native settings: thread count and the active instruction set. */
import { addon, ISA_NAMES, type IsaName } from './binding.js';
import { describe, rangeError, typeError } from './errors.js';

export type { IsaName };

/** A TypeError unless v is a number, a RangeError unless it is an integer in [lo, hi]. */
function checkInt(fn: string, arg: string, v: unknown, lo: number, hi: number): asserts v is number {
  if (typeof v !== 'number') throw typeError(fn, arg, `must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < lo || v > hi) throw rangeError(fn, arg, `must be an integer in [${lo}, ${hi}], got ${v}`);
}

/** Size of the native thread pool used by every kernel (default: the number of CPUs). */
export function setThreads(n: number): void {
  checkInt('setThreads', 'n', n, 1, 1024);
  addon.setThreads(n);
}

export function getThreads(): number {
  return addon.getThreads();
}

/**
 * How long the pool's threads spin (microseconds) after a product before
 * sleeping (default 300; QUANTKIT_SPIN_US at load). Spinning makes the next
 * product of a decode start in a microsecond; 0 frees the cores at once,
 * better when other processes need them all.
 */
export function setSpin(microseconds: number): void {
  checkInt('setSpin', 'microseconds', microseconds, 0, 1_000_000);
  addon.setSpin(microseconds);
}

export function getSpin(): number {
  return addon.getSpin();
}

/** The instruction set the kernels run with: 'amx', 'avx512', 'avx2', 'neon' or 'scalar'. */
export function isa(): IsaName {
  return addon.isa();
}

/** Every ISA level this CPU can run, lowest first (always includes 'scalar'). */
export function availableIsas(): IsaName[] {
  const f = addon.cpuFeatures();
  const out: IsaName[] = ['scalar'];
  if (f.avx2) out.push('avx2');
  if (f.avx512) out.push('avx512');
  if (f.amx) out.push('amx');
  if (f.neon) out.push('neon');
  return out;
}

/**
 * Cap the active ISA at `name` for the whole process (what QUANTKIT_ISA does
 * at load). Meant for tests and benchmarks; returns the ISA now active.
 */
export function selectIsa(name: IsaName): IsaName {
  if (typeof name !== 'string' || !(ISA_NAMES as readonly string[]).includes(name)) {
    throw rangeError('selectIsa', 'name', `must be one of ${ISA_NAMES.join(', ')}, got ${describe(name)}`);
  }
  return addon.selectIsa(name);
}
