// Horizontal sum of the 8 lanes of a ymm register, shared by the AVX2
// kernel files (include only from files compiled with AVX2 flags). Every
// AVX2 GEMM output goes through this one function, so the reduction tree
// is the same for all tile shapes.
#pragma once

#include <immintrin.h>

namespace qk {
namespace avx2 {

static inline float hsum(__m256 v) {
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    const __m128 d = _mm_add_ss(c, _mm_movehdup_ps(c));
    return _mm_cvtss_f32(d);
}

}  // namespace avx2
}  // namespace qk
