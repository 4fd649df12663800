// Horizontal sum of the 16 lanes of a zmm register, shared by the AVX-512
// kernel files (include only from files compiled with AVX-512 flags).
// Every GEMM output goes through this one function, so the reduction tree
// is the same for all tile shapes.
#pragma once

#include <immintrin.h>

namespace qk {
namespace avx512 {

static inline float hsum(__m512 v) {
    // (vshuff32x4 rather than vextractf64x4, as _mm512_reduce_add_ps uses:
    // GCC 12 warns on the latter's undefined pass-through operand.)
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0xee)));
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    const __m128 d = _mm_add_ss(c, _mm_movehdup_ps(c));
    return _mm_cvtss_f32(d);
}

}  // namespace avx512
}  // namespace qk
