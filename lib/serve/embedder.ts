/**
 * What `POST /v1/embeddings` serves: an encoder's mean-pooled vectors (as
 * `quantkit embed` computes them), one per input text. A request's inputs
 * run as one batch of mixed lengths (DistilBERT masks the padding, so a
 * text's vector does not depend on the others); its native calls run off
 * the main thread (forwardAsync).
 */
import { QuantkitError } from '../errors.js';
import { DistilBertForMaskedLM, type DistilBertModel, meanPool } from '../models/distilbert.js';
import type { LoadedEncoder } from '../models/load-encoder.js';

export interface Embedder {
  /** Vector width. */
  readonly dim: number;
  /** Tokens per input at most (longer inputs keep their first tokens and the final [SEP]). */
  readonly maxTokens: number;
  /** One vector per text, and the tokens they took. */
  embed(texts: readonly string[]): Promise<{ vectors: Float32Array[]; tokens: number }>;
}

export function encoderEmbedder(enc: LoadedEncoder): Embedder {
  if (!enc.tokenizer) throw new QuantkitError('ERR_NOT_FOUND', 'the encoder has no tokenizer (tokenizer.json or vocab.txt)');
  const encoder: DistilBertModel = enc.model instanceof DistilBertForMaskedLM ? enc.model.distilbert : (enc.model as DistilBertModel);
  const P = enc.config.maxPositions;
  const D = enc.config.dim;
  return {
    dim: D,
    maxTokens: P,
    async embed(texts) {
      const batch = texts.map((t) => {
        const ids = enc.encode(t);
        return ids.length <= P ? ids : [...ids.slice(0, P - 1), ids[ids.length - 1]!];
      });
      const pooled = meanPool(await encoder.forwardAsync(batch)).data;
      const vectors = batch.map((_, i) => pooled.slice(i * D, (i + 1) * D));
      return { vectors, tokens: batch.reduce((a, b) => a + b.length, 0) };
    },
  };
}
