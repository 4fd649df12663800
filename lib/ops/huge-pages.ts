/**
 * Weight arrays on huge pages. A decode step streams every weight from
 * memory once; through 4 KiB pages each page is a TLB miss and a page walk
 * in that stream. Arrays of 2 MiB and more that quantize() allocates are
 * advised onto transparent huge pages (Linux, MADV_HUGEPAGE, native/binding/
 * map_binding.cpp) before the kernel writes them, so their pages are 2 MiB
 * from the first touch. Measured on one core of a Sapphire Rapids-class VM,
 * 24 layers of 4096 x 4096 cycled (three runs each way): M = 1 int8
 * 1.55-1.70 -> 1.38-1.45 ms a layer, W4A8 1.06-1.21 -> 0.95-1.01 ms.
 * A file the loaders read whole (safetensors, checkpoints, llama2.c; not
 * when mapped) is read into such an array too, so float weights read in
 * place (an f32 lm_head) get them: the synthetic 12-layer model (~500 MB
 * f32) read from its safetensors file decoded at 31-32 ms a token against
 * 37.6-37.9 ms, its W8A8 checkpoint at 11.3-11.6 against 13.2-13.7 ms (the
 * f32 lm_head), while loading took 0.6-1.7 s against 0.4-0.8 s (faulting
 * in 2 MiB pages).
 * Only the 2 MiB-aligned interior of an array can move; THP set to
 * "never", or no free huge page, leaves 4 KiB pages; elsewhere nothing
 * happens. The bytes are the same either way. QUANTKIT_HUGE_PAGES=0 turns
 * it off.
 */
import { addon } from '../binding.js';

const HUGE = 2 << 20;
let enabled = process.env.QUANTKIT_HUGE_PAGES !== '0' && process.platform === 'linux';

/**
 * Stop advising (for the rest of the process). What it can cost is at
 * allocation: on the VM above the first touch of fresh 2 MiB pages was slow
 * (8 int8 4096 x 4096 weights kept alive: quantized in 233-296 ms against
 * 93-100 ms), though quantize() over and over ran as fast either way. Code
 * that quantizes only to write a checkpoint (`quantkit quantize`) turns it
 * off.
 */
export function disableHugePages(): void {
  enabled = false;
}

interface Ctor<T> {
  new (n: number): T;
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/** Arrays from this size on start on a 64-byte line (smaller ones are not worth the 64 spare bytes). */
const ALIGN_FROM = 1024;

/**
 * new C(n) (zeros), starting on a 64-byte cache line and advised onto huge
 * pages when it spans one (untouched: advise before writing it). V8 places
 * a large ArrayBuffer's bytes 16 bytes past a page, so a weight array
 * allocated plainly starts mid-line; the kernels' 64-byte vectors and AMX
 * tile rows then span two lines each, and the AMX W8A8 kernel copies such
 * weights onto lines before reading them (native/kernels/x86/w8a8_amx.cpp).
 * Here the buffer is 64 bytes longer and the view starts at its first line.
 */
export function hugeArray<T extends ArrayBufferView>(C: Ctor<T>, n: number): T {
  const a = lineArray(C, n);
  if (enabled && a.byteLength >= HUGE) addon.adviseHugePages(a);
  return a;
}

/**
 * new C(n) (zeros) starting on a 64-byte line (from ALIGN_FROM bytes), not
 * advised onto huge pages: for short-lived results (a call's output), where
 * a huge-page fault could stall on compaction for memory used once.
 */
export function lineArray<T extends ArrayBufferView>(C: Ctor<T>, n: number): T {
  const bytes = n * C.BYTES_PER_ELEMENT;
  if (bytes < ALIGN_FROM) return new C(n);
  const buf = new ArrayBuffer(bytes + 64);
  return new C(buf, addon.lineOffset(new Uint8Array(buf, 0, 64)), n);
}
