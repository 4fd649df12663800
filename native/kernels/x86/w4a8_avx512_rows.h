// The AVX-512 VNNI W4A8 kernel with lanes over weight rows
// (Kernels::gemm_w4a8_rows), defined in w4a8_avx512_rows.cpp. Internal to
// the avx512 kernels and to tables.cpp (which only takes its address and
// reads the constant).
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace avx512 {

// From this many rows of X the rows kernel beats gemm_w4a8 (the stored row
// layout), which keeps M = 1 to 4; bench/ measured the switch (AMD Zen 4).
constexpr size_t kW4A8RowsMinM = 5;
// The same switch on the AMX table's machines (Sapphire Rapids-class Xeon;
// no AMD CPU has AMX, so Zen 4 keeps the one above): there the row-layout
// kernel stays ahead up to M = 9. One thread, weights cold, int4 g32, two
// runs each, rows kernel / row layout, us: 4096 x 4096 M = 5 2170-2223 /
// 1792-1943, M = 8 2305-2700 / 2160-2319, M = 10 2739-2822 / 2729-2871,
// M = 12 2976-2983 / 2933-3130, M = 16 3382-3646 / 3709-3861; 2048 x 768
// and 768 x 2048 M = 5 279-312 / 246-286, M = 8 313-348 / 300-315, M = 16
// 437-469 / 466-502. (Both give the same bits: the choice is speed only.)
constexpr size_t kW4A8RowsMinMAmx = 10;

void gemm_w4a8_rows(const W4A8Args& a, size_t n0, size_t n1);

}  // namespace avx512
}  // namespace qk
