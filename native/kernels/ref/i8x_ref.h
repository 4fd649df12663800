// The scalar reference of Kernels::i8x_split and gemm_i8x (kernels.h): the
// spec the AMX kernels (x86/gemm_amx_i8x.cpp) equal bit for bit. No ISA
// table points at it (only amx has the operation); the kernel tests do.
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace ref {

void i8x_split(const float* x, size_t ldx, size_t M, size_t K, const DigitX& dx);
void gemm_i8x(const DigitX& dx, const WeightView& w, size_t n0, size_t n1, const float* bias, float* y,
              size_t ldy);

}  // namespace ref
}  // namespace qk
