/**
 * Where a loaded tensor's bytes live. A mapped load (ReadOptions.mmap) gives
 * tensors that are views of the page cache; the exceptions are tensors the
 * loader had to convert or copy (bf16/f16 norms widened to f32, GPT-2's
 * Conv1D weights transposed, a tensor misaligned in its file). The loaders
 * record both facts here, keyed by the ArrayBuffer (weakly, so nothing is
 * kept alive), and `quantkit inspect` lists the copies with their reason.
 */

const mapped = new WeakSet<ArrayBufferLike>();
const copies = new WeakMap<ArrayBufferLike, string>();

/** `buffer` holds the bytes of a mapped file. */
export function noteMapped(buffer: ArrayBufferLike): void {
  mapped.add(buffer);
}

/** Whether a view's bytes are those of a mapped file (not a copy). */
export function isMapped(view: ArrayBufferView): boolean {
  return mapped.has(view.buffer);
}

/** `view`'s buffer was made at load from file bytes, for `reason` (e.g. 'bf16 -> f32'). */
export function noteCopy(view: ArrayBufferView, reason: string): void {
  copies.set(view.buffer, reason);
}

/** Why a view's buffer was made at load, if a loader said so. */
export function copyReason(view: ArrayBufferView): string | undefined {
  return copies.get(view.buffer);
}
