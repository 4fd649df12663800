// The group scales of 16 weight rows of a W4A8 kernel, laid out for lanes
// over weight rows; shared by the kernels that put the lanes (or a tile's
// columns) over weight rows: w4a8_avx512_rows.cpp and w4a8_amx.cpp. Include
// only from files compiled with AVX-512 flags.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../kernels.h"
#include "avx512_transpose.h"

namespace qk {
namespace avx512 {

// 16 values of row j from index i on (mk: which), as floats.
static inline __m512 load16(const float* p, __mmask16 mk) { return _mm512_maskz_loadu_ps(mk, p); }
static inline __m512 load16(const uint16_t* p, __mmask16 mk) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, p)); }
static inline __m512 load16(const uint8_t* p, __mmask16 mk) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, p)));
}

// Per group g, the 16 rows' s[n, g] and s[n, g] * z'[n, g] (0 past nr):
// 16 groups of 16 rows at a time, turned by one transpose.
template <typename S>
static inline void fill_scales(const W4A8Args& a, const S* scales, size_t n, size_t nr, size_t ng, size_t gs, float* sw,
                 float* sz) {
    const uint8_t* zps = static_cast<const uint8_t*>(a.w.zps);
    for (size_t g = 0; g < ng; g += 16) {
        const __mmask16 mk = ng - g >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (ng - g)) - 1);
        __m512 s[16], z[16];
        for (size_t j = 0; j < 16; ++j) {
            s[j] = j < nr ? load16(scales + (n + j) * gs + g, mk) : _mm512_setzero_ps();
            if (zps) z[j] = j < nr ? load16(zps + (n + j) * gs + g, mk) : _mm512_setzero_ps();
        }
        transpose16(s);  // s[i] lane j = s[n + j, g + i]
        if (zps) transpose16(z);
        const size_t cnt = ng - g < 16 ? ng - g : 16;
        for (size_t i = 0; i < cnt; ++i) {
            _mm512_store_ps(sw + 16 * (g + i), s[i]);
            _mm512_store_ps(sz + 16 * (g + i), _mm512_mul_ps(s[i], zps ? z[i] : _mm512_set1_ps(8.0f)));
        }
    }
}

}  // namespace avx512
}  // namespace qk
