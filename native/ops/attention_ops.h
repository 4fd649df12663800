// Causal attention of a few queries over a KV cache (the decode step of a
// decoder model), on the CPU thread pool. Compiled without ISA flags: the
// q·k dot products run through the Kernels table's f32 gemv.
//
//   q    [T, nHeads * hd]      queries at positions pos0 .. pos0 + T - 1
//   keys [n, kvDim], values [n, kvDim], n >= pos0 + T, kvDim = nKvHeads * hd
//   out  [T, nHeads * hd]
// Query head h reads kv head g = h / (nHeads / nKvHeads) (GQA). For query t,
// head h and positions j <= pos0 + t:
//   s_j = (q_th · k_jg) in f32 (gemv), d_j = (double)s_j * scale,
//   p_j = exp(d_j - max d) / sum exp(d - max d)   (double),
//   out_th = sum_j p_j v_jg                          (double, rounded once to f32).
// Work is split over (query, kv head) pairs, each computed whole by one
// thread, so the result does not depend on the thread count.
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
};

void attention(const AttnArgs& a);
void attention(const Kernels& k, const AttnArgs& a);

}  // namespace qk
