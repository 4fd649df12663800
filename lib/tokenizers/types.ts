/**
 * The tokenizer interface shared by the llama2.c tokenizer and Hugging Face
 * tokenizers, so model and evaluation code need not know which one it has.
 */

export interface EncodeOptions {
  /** Prepend the BOS token (default false). Ignored when the tokenizer has none. */
  bos?: boolean;
  /** Append the EOS token (default false). Ignored when the tokenizer has none. */
  eos?: boolean;
}

/**
 * Streaming decode for generation: push ids one at a time and get the text
 * they complete. Bytes of a character split across tokens (byte-fallback or
 * byte-level pieces) are held back until the character is complete.
 */
export interface StreamDecoder {
  /** Text made printable by this token (possibly ''). */
  push(id: number): string;
  /** Whatever is still held back (an incomplete character comes out as U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  /** Number of ids: every id is in [0, vocabSize). */
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  /** Text to ids. Special tokens are only added as `opts` asks. */
  encode(text: string, opts?: EncodeOptions): number[];
  /**
   * Ids to text; BOS/EOS ids are dropped. Bytes are assembled before UTF-8
   * decoding, so decode(encode(text)) === text for any well-formed text the
   * tokenizer can represent losslessly.
   */
  decode(ids: readonly number[]): string;
  /**
   * A fresh streaming decoder (stateful; one per generated sequence).
   * `context`: the ids already there (the prompt); the stream continues after
   * them, so `decode(context) + pushed text === decode([...context, ...pushed])`
   * (the first generated word keeps its leading space). Without it the stream
   * decodes as from the start of a text.
   */
  decodeStream(context?: readonly number[]): StreamDecoder;
  /** The piece/token string of an id, or undefined when out of range. */
  idToToken(id: number): string | undefined;
}
