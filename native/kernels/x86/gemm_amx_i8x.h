// The AMX-INT8 kernels for int8 weights with f32 activations written as
// exact int8 digits (gemm_amx_i8x.cpp): the i8x_split and gemm_i8x of the
// amx table (tables.cpp).
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace amx {
#include "../i8x_functions.inc"
}  // namespace amx
}  // namespace qk
