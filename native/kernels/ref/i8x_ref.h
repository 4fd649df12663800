// The scalar reference of Kernels::i8x_split and gemm_i8x (kernels.h): the
// spec the AMX kernels (x86/gemm_amx_i8x.cpp) equal bit for bit. No ISA
// table points at it (only amx has the operation); the kernel tests do.
#pragma once

#include <cstddef>

#include "../kernels.h"

namespace qk {
namespace ref {
#include "../i8x_functions.inc"
}  // namespace ref
}  // namespace qk
