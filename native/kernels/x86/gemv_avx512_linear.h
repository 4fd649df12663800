// AVX-512 gemv whose one-row-of-X f32 case reads W one row at a time: the
// AVX-512 table's gemv (tables.cpp). Internal to the avx512 kernels and
// tables.cpp.
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace avx512 {

// Kernels::gemv's contract; with mc = 1 and f32 weights, each row of W is
// one tile (its own FMA chain, as the 4-row tiles give it: same bits), so W
// is read as one linear stream with no software prefetch. The tiles of 4
// interleaved rows, prefetched two tiles ahead, were written for Intel's L2
// streamer (one stream per 4 KiB page); on AMD EPYC (Zen 5, one thread, cold
// weights, interleaved A/B) they ran the f32 lm_head (32000 x 768) at
// 4.5-4.9 ms against 4.3-4.6 ms here, the d768 layers' shapes 5-25 % slower,
// and the synthetic fp32 model's decode at 51.6-52.7 against 58.2 tokens/s.
// The AMX table (Sapphire Rapids) keeps avx512::gemv: not measured there.
// Its f32 tiles of 5-8 rows also prefetch the next weight tile into L1
// rather than L2 (gemv_float_tile in gemm_avx512.cpp: measured on Zen 5).
void gemv_linear_m1(const GemmArgs& a, size_t m0, size_t mc, size_t n0, size_t n1);

}  // namespace avx512
}  // namespace qk
