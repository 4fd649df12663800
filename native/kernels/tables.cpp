// One Kernels table per ISA, built from the functions of its namespace.
// Compiled without ISA flags: it only takes addresses.
#include "isa.h"

namespace qk {

#define QK_TABLE(ns, isa_value, isa_name)                                                       \
    const Kernels kernels_##ns = {                                                              \
        isa_value,         isa_name,         ns::f16_to_f32,     ns::bf16_to_f32,                \
        ns::minmax,        ns::absmax,       ns::quantize,       ns::dequantize_i8,              \
        ns::dequantize_i4, ns::pack_i4,      ns::unpack_i4,      ns::pack_i2,                    \
        ns::unpack_i2,     ns::gemv,         ns::gemm_panel_f32, ns::dequant_panel,              \
        ns::gemm_w8a8,                                                                          \
    };

QK_TABLE(ref, Isa::scalar, "scalar")
#if defined(__x86_64__) || defined(_M_X64)
QK_TABLE(avx2, Isa::avx2, "avx2")
QK_TABLE(avx512, Isa::avx512, "avx512")
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
QK_TABLE(neon, Isa::neon, "neon")
#endif

}  // namespace qk
