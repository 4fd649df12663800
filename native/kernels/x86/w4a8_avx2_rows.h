// The AVX2 W4A8 kernel with lanes over weight rows (Kernels::gemm_w4a8_rows),
// defined in w4a8_avx2_rows.cpp. Internal to the avx2 kernels and to
// tables.cpp (which only takes its address and reads the constant).
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace avx2 {

// From this many rows of X the rows kernel beats gemm_w4a8 (the stored row
// layout), which keeps the smaller M. Measured with QUANTKIT_ISA=avx2, one
// thread, a W4A8 QLinear on a Sapphire Rapids-class VM, N x K from 768 x 768
// to 11008 x 4096, rows kernel / row layout: M = 3 0.90-0.94, M = 4
// 0.93-1.00, M = 5 1.03-1.09, M = 8 1.12-1.19.
constexpr size_t kW4A8RowsMinM = 5;

void gemm_w4a8_rows(const W4A8Args& a, size_t n0, size_t n1);

}  // namespace avx2
}  // namespace qk
