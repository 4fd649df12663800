// The AMX-INT8 kernels for int8 weights with f32 activations written as
// exact int8 digits (gemm_amx_i8x.cpp): the i8x_split and gemm_i8x of the
// amx table (tables.cpp).
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace amx {

// Kernels::i8x_split and gemm_i8x (kernels.h).
void i8x_split(const float* x, size_t ldx, size_t M, size_t K, const DigitX& dx);
void gemm_i8x(const DigitX& dx, const WeightView& w, size_t n0, size_t n1, const float* bias, float* y,
              size_t ldy);

}  // namespace amx
}  // namespace qk
