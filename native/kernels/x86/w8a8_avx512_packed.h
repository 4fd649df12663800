// The AVX-512 VNNI W8A8 kernel over packed activations (W8A8Args::ap),
// used by avx512::gemm_w8a8 for M >= kW8A8PackedMinM (15). Internal to the
// avx512 kernels, the AMX kernel (which falls back on them and shares the
// epilogue) and tables.cpp, which only reads the constant.
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace avx512 {

// From this many rows of X the outer-product kernel beats the inner-product
// one (one 16-row block fills a zmm of lanes). Measured (AMD EPYC Zen 4, one
// thread, weights in cache, 4096 x 4096 to 11008 x 4096): at M = 15 it is
// 12-27 % faster; at M = 14 the two trade places by shape.
constexpr size_t kW8A8PackedMinM = 15;

// Same contract as Kernels::gemm_w8a8 for columns [n0, n1); needs p.ap.
void gemm_w8a8_packed(const W8A8Args& p, size_t n0, size_t n1);

// The fused or raw epilogue of one tile (shared with the AMX kernel, whose
// 16 x 16 result tiles have this layout): acc[(v * nr + j) * 16 + i] is the
// biased int32 sum of row m0 + 16 v + i and column n0 + j, for v < mv,
// j < nr <= 16, 16 v + i < rows; it writes the ref's results to p.y / p.c.
void w8a8_packed_epilogue(const W8A8Args& p, size_t m0, size_t rows, size_t n0, int nr, const int32_t* acc, int mv);

}  // namespace avx512
}  // namespace qk
