/**
 * A generated token stream as text, the way a completion API returns it:
 * each token's newly printable text, with stop strings cut. Text that might
 * be the start of a stop string is held back until it is known not to be
 * (as generate() does), so a client never receives a stop string.
 */
import { heldBackLength } from '../eval/generate.js';
import type { Tokenizer } from '../tokenizers/types.js';

export class CompletionText {
  readonly #decoder: ReturnType<Tokenizer['decodeStream']>;
  readonly #stops: readonly string[];
  #pending = '';
  /** Set once a stop string was found: the stream is over. */
  stopped = false;

  constructor(tokenizer: Tokenizer, promptIds: readonly number[], stops: readonly string[]) {
    this.#decoder = tokenizer.decodeStream(promptIds);
    this.#stops = stops;
  }

  /** Text to send for `token` (possibly ''); after a stop string, stopped is true. */
  push(token: number): string {
    this.#pending += this.#decoder.push(token);
    return this.#take(false);
  }

  /** The text still held back, at the end of the stream. */
  flush(): string {
    if (this.stopped) return '';
    this.#pending += this.#decoder.flush();
    return this.#take(true);
  }

  #take(end: boolean): string {
    let hit = -1;
    for (const s of this.#stops) {
      const i = this.#pending.indexOf(s);
      if (i >= 0 && (hit < 0 || i < hit)) hit = i;
    }
    if (hit >= 0) {
      this.stopped = true;
      const out = this.#pending.slice(0, hit);
      this.#pending = '';
      return out;
    }
    const hold = end ? 0 : heldBackLength(this.#pending, this.#stops);
    const out = this.#pending.slice(0, this.#pending.length - hold);
    this.#pending = this.#pending.slice(this.#pending.length - hold);
    return out;
  }
}
