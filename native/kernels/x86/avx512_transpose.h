// 16 x 16 transpose of 32-bit lanes in zmm registers, shared by the AVX-512
// kernel files (included only by files compiled with AVX-512 flags; static
// inline, so no symbol leaves them).
#pragma once

#include <immintrin.h>

namespace qk {
namespace avx512 {

// r[i] lane j <- r[j] lane i.
static inline void transpose16(__m512 (&r)[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    // r[4b + c]: rows 4b..4b+3, within each 128-bit lane L the column 4L + c.
    for (int i = 0; i < 4; ++i) {
        // 256-bit granularity: combine row blocks (0,1) and (2,3).
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);       // lanes 0,2 of a | 0,2 of b
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);   // lanes 1,3 of a | 1,3 of b
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
    }
    for (int i = 0; i < 4; ++i) {
        // t[i] = [b0:L0, b1:L0, b0:L2, b1:L2] of column c=i; t[8+i] same for b2,b3.
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);        // L0 columns: c
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);    // L2 columns: 8 + c
        r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);   // L1: 4 + c
        r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);  // L3: 12 + c
    }
}

// The same on int32 lanes.
static inline void transpose16(__m512i (&r)[16]) {
    __m512 f[16];
    for (int i = 0; i < 16; ++i) f[i] = _mm512_castsi512_ps(r[i]);
    transpose16(f);
    for (int i = 0; i < 16; ++i) r[i] = _mm512_castps_si512(f[i]);
}

}  // namespace avx512
}  // namespace qk
