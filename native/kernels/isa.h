// Declarations of every ISA namespace's kernel functions (see isa_functions.inc).
#pragma once

#include "kernels.h"

namespace qk {
namespace ref {
#include "isa_functions.inc"
}
#if defined(__x86_64__) || defined(_M_X64)
namespace avx2 {
#include "isa_functions.inc"
}
namespace avx512 {
#include "isa_functions.inc"
}
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
namespace neon {
#include "isa_functions.inc"
}
#endif
}  // namespace qk
