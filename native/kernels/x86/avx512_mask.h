// The lane mask of the first n of 16 lanes (all 16 from n = 16 up), shared
// by the AVX-512 kernel files (include only from files compiled with
// AVX-512 flags; static inline, so no symbol leaves them).
#pragma once

#include <immintrin.h>

#include <cstddef>

namespace qk {
namespace avx512 {

static inline __mmask16 mask16(size_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

}  // namespace avx512
}  // namespace qk
