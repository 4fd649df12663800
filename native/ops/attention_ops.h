// Causal attention of T queries over a KV cache (prefill and decode alike),
// on the CPU thread pool. Compiled without ISA flags: the arithmetic is the
// Kernels table's attn_rows (kernels.h, AttnRowsArgs: blocked key layout,
// online softmax in f32, bit-identical on every ISA).
//
//   q      [T, nHeads * hd]     queries at positions pos0 .. pos0 + T - 1
//   keys   blocked: position j, kv head g, dimension i at
//          ((j / 64) * kvDim + g * hd + i) * 64 + j % 64, kvDim = nKvHeads * hd
//          (at least ceil((pos0 + T) / 64) blocks)
//   values [n, kvDim], n >= pos0 + T
//   out    [T, nHeads * hd]
// Query head h reads kv head g = h / (nHeads / nKvHeads) (GQA); query t sees
// positions 0 .. pos0 + t (causal), or all of 0 .. pos0 + T - 1 (an
// encoder's bidirectional attention: causal = false). Tasks are (kv head, tile of query positions),
// each row computed whole by one thread: the result depends neither on the
// thread count nor on T or pos0 beyond the row's own position (a token
// attends to the same numbers in a prompt and in decode).
#pragma once

#include <cstddef>

#include "../kernels/kernels.h"

namespace qk {

struct AttnArgs {
    const float* q;
    size_t T, pos0;
    const float* keys;
    const float* values;
    size_t n_heads, n_kv_heads, head_dim;
    float scale;
    float* out;
    bool causal = true;
};

// Floats a blocked key cache needs for n positions of kv_dim.
inline size_t attn_key_floats(size_t n, size_t kv_dim) { return (n + kAttnBlock - 1) / kAttnBlock * kAttnBlock * kv_dim; }

// Store T positions of keys and values k, v [T, kv_dim] at positions pos0 ..
// into a cache: keys scattered into the blocked layout above, values as
// rows (values + pos0 * kv_dim). Exact copies.
void attn_cache_write(float* keys, float* values, const float* k, const float* v, size_t pos0, size_t T, size_t kv_dim);

void attention(const AttnArgs& a);
void attention(const Kernels& k, const AttnArgs& a);

// n independent calls (the sequences of a batched decoder step, each over
// its own cache) as one run of the thread pool: every row gets exactly the
// bits attention() gives it alone.
void attention_batch(const AttnArgs* calls, size_t n);
void attention_batch(const Kernels& k, const AttnArgs* calls, size_t n);

}  // namespace qk
