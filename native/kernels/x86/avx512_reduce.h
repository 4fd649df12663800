// Horizontal sum of the 16 lanes of a zmm register, shared by the AVX-512
// kernel files (include only from files compiled with AVX-512 flags).
// Every GEMM output goes through hsum or hsum_n, which add the same lane
// pairs in the same tree, so a sum's bits are the same for all tile shapes.
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

// The horizontal sums of up to 16 registers at once: lane t of the result
// is hsum(v[t]) bit for bit (lanes of absent registers are 0). Each level
// adds the same lane pairs as hsum, in two registers' worth at a time:
//   1: lane i + lane i + 8   2: a_i + a_{i+4}   3: b_0 + b_2, b_1 + b_3   4: c_0 + c_1
// (IEEE addition is commutative, so which operand comes first does not
// matter). 30 shuffles, 15 adds and a permute for 16 registers, against
// 16 x 4 of each (and 16 scalar results) for 16 hsum calls. The row-
// invariance kernel tests compare tiles that use it with single rows that
// use hsum, bit for bit.
template <int N>
static inline __m512 hsum_n(const __m512 (&v)[N]) {
    static_assert(N >= 1 && N <= 16, "up to 16 registers");
    __m512 l1[8], l2[4], l3[2];
    const __m512 z = _mm512_setzero_ps();
    for (int p = 0; p < 8; ++p) {  // registers 2p, 2p + 1 -> [a(2p) x 8 | a(2p + 1) x 8]
        const __m512 x = 2 * p < N ? v[2 * p] : z, y = 2 * p + 1 < N ? v[2 * p + 1] : z;
        l1[p] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xee));
    }
    for (int p = 0; p < 4; ++p)  // -> 128-bit block j = b of register 4p + j
        l2[p] = _mm512_add_ps(_mm512_shuffle_f32x4(l1[2 * p], l1[2 * p + 1], 0x88),
                              _mm512_shuffle_f32x4(l1[2 * p], l1[2 * p + 1], 0xdd));
    for (int p = 0; p < 2; ++p)  // block j: [c0, c1 of register 8p + j, c0, c1 of register 8p + 4 + j]
        l3[p] = _mm512_add_ps(_mm512_shuffle_ps(l2[2 * p], l2[2 * p + 1], 0x44),
                              _mm512_shuffle_ps(l2[2 * p], l2[2 * p + 1], 0xee));
    // block j: d of registers j, 4 + j, 8 + j, 12 + j; lane 4 j + i holds register 4 i + j
    const __m512 d = _mm512_add_ps(_mm512_shuffle_ps(l3[0], l3[1], 0x88), _mm512_shuffle_ps(l3[0], l3[1], 0xdd));
    const __m512i idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(idx, d);
}

}  // namespace avx512
}  // namespace qk
