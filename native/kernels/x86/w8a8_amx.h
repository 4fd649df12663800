// The AMX-INT8 W8A8 kernel (w8a8_amx.cpp): the gemm_w8a8 of the amx table,
// whose other entries are the AVX-512 ones (tables.cpp).
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace amx {

// From this many rows of X the kernel takes the AMX tiles (the driver then
// packs the activations); fewer rows, or no packed activations, run the
// AVX-512 kernels.
constexpr size_t kW8A8MinM = 8;

// Same contract as Kernels::gemm_w8a8 for columns [n0, n1).
void gemm_w8a8(const W8A8Args& p, size_t n0, size_t n1);

}  // namespace amx
}  // namespace qk
