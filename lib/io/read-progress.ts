/**
 * Progress of the whole-file reads the loaders make (safetensors shards,
 * llama2.c checkpoints), for a progress bar while a large model loads.
 * Loading is synchronous, so a listener installed around one load cannot
 * see another's reads.
 */
export type ReadProgress = (bytesRead: number, fileBytes: number, file: string) => void;

let listener: ReadProgress | undefined;

/** Run `f` with `onRead` told about every chunk the loaders read. */
export function withReadProgress<T>(onRead: ReadProgress, f: () => T): T {
  const prev = listener;
  listener = onRead;
  try {
    return f();
  } finally {
    listener = prev;
  }
}

/** Called by the readers after each chunk. */
export function reportRead(bytesRead: number, fileBytes: number, file: string): void {
  listener?.(bytesRead, fileBytes, file);
}
