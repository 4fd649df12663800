// The AVX-512 VNNI W4A8 kernel with lanes over weight rows
// (Kernels::gemm_w4a8_rows), defined in w4a8_avx512_rows.cpp. Internal to
// the avx512 kernels and to tables.cpp (which only takes its address and
// reads the constant).
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace avx512 {

// From this many rows of X the rows kernel beats gemm_w4a8 (one weight row
// per zmm), which stays the M = 1 GEMV; bench/ measured the switch.
constexpr size_t kW4A8RowsMinM = 4;

void gemm_w4a8_rows(const W4A8Args& a, size_t n0, size_t n1);

}  // namespace avx512
}  // namespace qk
