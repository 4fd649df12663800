/** Process-wide native settings: thread count and the active instruction set. */
import { addon, ISA_NAMES, type IsaName } from './binding.js';
import { describe, rangeError, typeError } from './errors.js';

export type { IsaName };

/** Size of the native thread pool used by every kernel (default: the number of CPUs). */
export function setThreads(n: number): void {
  if (typeof n !== 'number') throw typeError('setThreads', 'n', `must be a number, got ${describe(n)}`);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw rangeError('setThreads', 'n', `must be an integer in [1, 1024], got ${n}`);
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
  if (typeof microseconds !== 'number') throw typeError('setSpin', 'microseconds', `must be a number, got ${describe(microseconds)}`);
  if (!Number.isInteger(microseconds) || microseconds < 0 || microseconds > 1_000_000) throw rangeError('setSpin', 'microseconds', `must be an integer in [0, 1000000], got ${microseconds}`);
  addon.setSpin(microseconds);
}

export function getSpin(): number {
  return addon.getSpin();
}

/** The instruction set the kernels run with: 'avx512', 'avx2', 'neon' or 'scalar'. */
export function isa(): IsaName {
  return addon.isa();
}

/** Every ISA level this CPU can run, lowest first (always includes 'scalar'). */
export function availableIsas(): IsaName[] {
  const f = addon.cpuFeatures();
  const out: IsaName[] = ['scalar'];
  if (f.avx2) out.push('avx2');
  if (f.avx512) out.push('avx512');
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
