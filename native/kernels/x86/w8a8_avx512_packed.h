// The AVX-512 VNNI W8A8 kernel over packed activations (W8A8Args::ap),
// used by avx512::gemm_w8a8 for M >= kW8A8PackedMinM (7). Internal to the
// avx512 kernels, the AMX kernel (which falls back on them and shares the
// epilogue) and tables.cpp, which only reads the constant.
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace avx512 {

// From this many rows of X the outer-product kernel beats the inner-product
// one. With the weights in cache (AMD EPYC Zen 4, one thread, 4096 x 4096 to
// 11008 x 4096) that was M = 15, where one 16-row block fills a zmm of
// lanes. Batched decoding reads the weights from memory, and there, once
// both kernels prefetch the next weight tile, the outer-product one is
// ahead from M = 7 (AMD EPYC Zen 5, one thread, the 12 layers of bench:e2e's
// model, 75 MB of int8 weights, cold; ms inner / outer: M = 5 3.4-3.7 /
// 4.7-4.9, 6 4.3-4.4 / 4.7-4.9, 7 6.7 / 4.9, 8 5.2-5.3 / 4.8, 12 6.2-6.6 /
// 4.7-4.9, 14 7.7-8.6 / 4.7-5.0). Same sums either way.
constexpr size_t kW8A8PackedMinM = 7;

// Same contract as Kernels::gemm_w8a8 for columns [n0, n1); needs p.ap.
void gemm_w8a8_packed(const W8A8Args& p, size_t n0, size_t n1);

// The fused or raw epilogue of one tile (shared with the AMX kernel, whose
// 16 x 16 result tiles have this layout): acc[(v * nr + j) * 16 + i] is the
// biased int32 sum of row m0 + 16 v + i and column n0 + j, for v < mv,
// j < nr <= 16, 16 v + i < rows; it writes the ref's results to p.y / p.c.
void w8a8_packed_epilogue(const W8A8Args& p, size_t m0, size_t rows, size_t n0, int nr, const int32_t* acc, int mv);

}  // namespace avx512
}  // namespace qk
