// The AMX-BF16 panel kernel for decoded weights (gemm_amx_bf16.cpp): the
// dq_split_x and gemm_panel_dq of the amx table, whose other entries are the AVX-512 ones
// (tables.cpp).
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace amx {

// Kernels::dq_split_x, gemm_panel_dq, gemm_panel_dq_i4 and gemm_panel_dq_i8
// (kernels.h).
void dq_split_x(const float* x, size_t ldx, size_t M, size_t K, const SplitX& xs, size_t b0, size_t b1);
void gemm_panel_dq(const SplitX& xs, size_t m0, size_t mc, size_t k0, const float* p, size_t ldp, size_t nr,
                   size_t kc, float* y, size_t ldy, bool accumulate);
void gemm_panel_dq_i4(const SplitX& xs, size_t m0, size_t mc, size_t k0, const WeightView& w, size_t gs, size_t n0,
                      size_t nr, size_t kc, float* y, size_t ldy, bool accumulate);
void gemm_panel_dq_i8(const SplitX& xs, size_t m0, size_t mc, size_t k0, const WeightView& w, size_t n0, size_t nr,
                      size_t kc, float* y, size_t ldy, bool accumulate);

}  // namespace amx
}  // namespace qk
