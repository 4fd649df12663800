// The AMX-INT8 W4A8 kernel (w4a8_amx.cpp): the gemm_w4a8_rows of the amx
// table from kW4A8AmxMinM rows of X; fewer rows, and the group sizes the
// SIMD kernels leave to the reference, go to avx512::gemm_w4a8_rows. Same
// contract and the same bits as the AVX-512 kernels (W4A8Args, kernels.h).
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace amx {

// From this many rows of X the tiles take over: one whole block of 16 rows.
// One thread, int4 g32, weights in cache, us, tiles / avx512::
// gemm_w4a8_rows: 2048 x 768 and 768 x 2048 M = 16 191 / 204-214, M = 32
// 314-322 / 393-412; 4096 x 4096 M = 16 2076 / 2459, M = 128 10716 / 15832.
constexpr size_t kW4A8AmxMinM = 16;

void gemm_w4a8_rows(const W4A8Args& a, size_t n0, size_t n1);

}  // namespace amx
}  // namespace qk
