// The AVX2 W4A8 kernel with lanes over weight rows (Kernels::gemm_w4a8_rows),
// defined in w4a8_avx2_rows.cpp. Internal to the avx2 kernels and to
// tables.cpp (which only takes its address and reads the constant).
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace avx2 {

// From this many rows of X the rows kernel beats gemm_w4a8 (the stored row
// layout), which keeps the smaller M; measured with QUANTKIT_ISA=avx2 (see
// tables.cpp).
constexpr size_t kW4A8RowsMinM = 5;

void gemm_w4a8_rows(const W4A8Args& a, size_t n0, size_t n1);

}  // namespace avx2
}  // namespace qk
