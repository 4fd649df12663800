// AVX-512 VNNI W4A8 kernel (Kernels::gemm_w4a8; the spec is
// ref/w4a8_ref.cpp, the layout and the offset formula are on W4A8Args).
//
// One step is a 64-byte chunk of a weight row: 128 values, whose low
// nibbles are the even values and high nibbles the odd ones, exactly the
// two 64-byte halves of the activation chunk. Per step and weight row:
//   v = bytes ^ 0x88 (symmetric: nibble ^ 8 = q + 8 in 0..15, unsigned)
//   lo = v & 0x0F, hi = (v >> 4) & 0x0F
//   d = vpdpbusd(vpdpbusd(0, lo, x_even), hi, x_odd)
// so int32 lane l holds the exact sum over values 8 l .. 8 l + 7 of the
// chunk (4 of each half), inside one activation block and one weight group
// (G % 32 == 0). Then acc += (float)d * (s_lanes * sxl), and at the end of
// the row the offset (q + 8 or u against the zero point) is taken out with
// the per-group activation sums tg. About 10 vector uops per 64 bytes of
// weights and activation row: the weight stream, not the arithmetic, is the
// limit for one row of X (decode).
//
// Tiles: R = 4 weight rows (1 for the last few) x MC <= 4 activation rows,
// with the weight stream prefetched linearly two tiles ahead into L2 (one
// stream per tile instead of R interleaved ones; see gemm_avx512.cpp).
// Group sizes other than 32, 64 and multiples of 128 take the ref path.
#include "gcc_avx512_warnings.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../isa.h"
#include "avx512_reduce.h"

namespace qk {
namespace avx512 {

namespace {

// How the group scales map onto the 16 lanes of a chunk.
enum class GKind { g32, g64, g128 };

// s[n, g] for every lane of chunk c of a row (lane l: values 128 c + 8 l ..).
// nvalid: the values of the chunk inside K (a multiple of 32).
template <GKind GK>
inline __m512 scale_lanes(const float* s, size_t c, size_t G, size_t nvalid) {
    if (GK == GKind::g32) {
        const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        const __mmask8 mk = __mmask8((1u << (nvalid / 32)) - 1);
        return _mm512_permutexvar_ps(idx, _mm512_zextps128_ps512(_mm_maskz_loadu_ps(mk, s + 4 * c)));
    } else if (GK == GKind::g64) {
        const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        const __mmask8 mk = __mmask8((1u << (nvalid / 64)) - 1);
        return _mm512_permutexvar_ps(idx, _mm512_zextps128_ps512(_mm_maskz_loadu_ps(mk, s + 2 * c)));
    } else {
        return _mm512_set1_ps(s[128 * c / G]);
    }
}

// The same from f16 scales (WeightView::scales16), widened exactly in
// registers: the lanes hold the very floats the f32 form would load.
template <GKind GK>
inline __m512 scale_lanes(const uint16_t* s, size_t c, size_t G, size_t nvalid) {
    if (GK == GKind::g32) {
        const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        const __mmask8 mk = __mmask8((1u << (nvalid / 32)) - 1);
        return _mm512_permutexvar_ps(idx, _mm512_zextps128_ps512(_mm_cvtph_ps(_mm_maskz_loadu_epi16(mk, s + 4 * c))));
    } else if (GK == GKind::g64) {
        const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        const __mmask8 mk = __mmask8((1u << (nvalid / 64)) - 1);
        return _mm512_permutexvar_ps(idx, _mm512_zextps128_ps512(_mm_cvtph_ps(_mm_maskz_loadu_epi16(mk, s + 2 * c))));
    } else {
        return _mm512_set1_ps(_cvtsh_ss(s[128 * c / G]));
    }
}

// 16 scales from index g (mask mk) as floats.
inline __m512 load_scales16(const float* s, __mmask16 mk) { return _mm512_maskz_loadu_ps(mk, s); }
inline __m512 load_scales16(const uint16_t* s, __mmask16 mk) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, s)); }

// Linear L2 prefetch of the tile two tiles ahead: its R rows of codes are one
// contiguous block (R lines per step, as many as the step consumes), and so
// are its R rows of group scales (R * 512 / G bytes per step).
template <int R, typename S>
struct Prefetcher {
    const char* w;
    const char* s;
    size_t G;
    Prefetcher(const void* next_codes, const S* next_scales, size_t group)
        : w(static_cast<const char*>(next_codes)), s(reinterpret_cast<const char*>(next_scales)), G(group) {}
    inline void step(size_t c) {
        for (int r = 0; r < R; ++r) _mm_prefetch(w + 64 * r, _MM_HINT_T1);
        w += 64 * R;
        _mm_prefetch(s + sizeof(S) * (c * R * 128 / G), _MM_HINT_T1);
    }
};

// R weight rows x MC activation rows; ASYM: unsigned nibbles with zero
// points; S: the scales' storage (float, or uint16_t f16 bits).
template <GKind GK, bool ASYM, int R, int MC, typename S>
void tile(const W4A8Args& a, size_t m0, size_t n) {
    const size_t K = a.K, G = a.w.group, ng = K / G, gs = scale_stride(a.w, K);  // groups here, scale row stride
    const size_t full = K / 128, rem = K % 128;
    const S* scales;
    if constexpr (sizeof(S) == 2) scales = a.w.scales16;
    else scales = a.w.scales;
    const uint8_t* w[R];
    const S* s[R];
    for (int r = 0; r < R; ++r) {
        w[r] = static_cast<const uint8_t*>(a.w.data) + (n + r) * a.w.row_bytes;
        s[r] = scales + (n + r) * gs;
    }
    const int8_t* xc[MC];
    const float* sxl[MC];
    for (int i = 0; i < MC; ++i) {
        xc[i] = a.xc + (m0 + i) * a.ldx;
        sxl[i] = a.sxl + (m0 + i) * a.ldsxl;
    }
    __m512 acc[R][MC];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < MC; ++i) acc[r][i] = _mm512_setzero_ps();
    const __m512i flip = _mm512_set1_epi8(ASYM ? 0 : char(0x88));
    const __m512i low = _mm512_set1_epi8(0x0F);
    Prefetcher<R, S> pf(w[0] + 2 * R * a.w.row_bytes, s[0] + 2 * R * gs, G);

    // The last chunk may hold 32, 64 or 96 values: masked weight bytes; the
    // activation chunk is zero-padded and its lane scales are 0.
    const size_t chunks = full + (rem ? 1 : 0);
    for (size_t c = 0; c < chunks; ++c) {
        const bool tail = c == full;
        const __mmask64 bytes = tail ? (__mmask64(1) << (rem / 2)) - 1 : ~__mmask64(0);
        const size_t nvalid = tail ? rem : 128;
        if (R == 4) pf.step(c);
        for (int r = 0; r < R; ++r) {
            __m512i v = _mm512_maskz_loadu_epi8(bytes, w[r] + 64 * c);
            if (!ASYM) v = _mm512_xor_si512(v, flip);
            const __m512i lo = _mm512_and_si512(v, low);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            const __m512 sw = scale_lanes<GK>(s[r], c, G, nvalid);
            for (int i = 0; i < MC; ++i) {
                __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(xc[i] + 128 * c));
                d = _mm512_dpbusd_epi32(d, hi, _mm512_loadu_si512(xc[i] + 128 * c + 64));
                const __m512 f = _mm512_mul_ps(sw, _mm512_loadu_ps(sxl[i] + 16 * c));
                acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), f, acc[r][i]);
            }
        }
    }

    // Offset: sum_g s[n, g] z'[n, g] tg[m, g], 16 groups at a time.
    for (size_t g = 0; g < ng; g += 16) {
        const __mmask16 mk = ng - g >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (ng - g)) - 1);
        __m512 tg[MC];
        for (int i = 0; i < MC; ++i) tg[i] = _mm512_maskz_loadu_ps(mk, a.tg + (m0 + i) * a.ldtg + g);
        for (int r = 0; r < R; ++r) {
            __m512 sz = load_scales16(s[r] + g, mk);
            if (ASYM) {
                const uint8_t* z = static_cast<const uint8_t*>(a.w.zps) + (n + r) * gs + g;
                sz = _mm512_mul_ps(sz, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, z))));
            } else {
                sz = _mm512_mul_ps(sz, _mm512_set1_ps(8.0f));
            }
            for (int i = 0; i < MC; ++i) acc[r][i] = _mm512_fnmadd_ps(sz, tg[i], acc[r][i]);
        }
    }
    for (int i = 0; i < MC; ++i) {
        float* y = a.y + (m0 + i) * a.ldy + n;
        for (int r = 0; r < R; ++r) {
            float v = hsum(acc[r][i]);
            if (a.bias) v = v + a.bias[n + r];
            y[r] = v;
        }
    }
}

template <GKind GK, bool ASYM, int MC, typename S>
void rows(const W4A8Args& a, size_t m0, size_t n0, size_t n1) {
    size_t n = n0;
    for (; n + 4 <= n1; n += 4) tile<GK, ASYM, 4, MC, S>(a, m0, n);
    for (; n < n1; ++n) tile<GK, ASYM, 1, MC, S>(a, m0, n);
}

template <GKind GK, bool ASYM, typename S>
void run(const W4A8Args& a, size_t n0, size_t n1) {
    size_t m = 0;
    for (; m + 4 <= a.M; m += 4) rows<GK, ASYM, 4, S>(a, m, n0, n1);
    switch (a.M - m) {
        case 3: rows<GK, ASYM, 3, S>(a, m, n0, n1); break;
        case 2: rows<GK, ASYM, 2, S>(a, m, n0, n1); break;
        case 1: rows<GK, ASYM, 1, S>(a, m, n0, n1); break;
        default: break;
    }
}

template <GKind GK>
void run_g(const W4A8Args& a, size_t n0, size_t n1) {
    if (a.w.scales16) {
        if (a.w.zps) run<GK, true, uint16_t>(a, n0, n1);
        else run<GK, false, uint16_t>(a, n0, n1);
    } else {
        if (a.w.zps) run<GK, true, float>(a, n0, n1);
        else run<GK, false, float>(a, n0, n1);
    }
}

}  // namespace

void gemm_w4a8(const W4A8Args& a, size_t n0, size_t n1) {
    const size_t G = a.w.group;
    if (a.K % G != 0) ref::gemm_w4a8(a, n0, n1);  // a shorter last group: the reference takes it
    else if (G == 32) run_g<GKind::g32>(a, n0, n1);
    else if (G == 64) run_g<GKind::g64>(a, n0, n1);
    else if (G % 128 == 0) run_g<GKind::g128>(a, n0, n1);
    else ref::gemm_w4a8(a, n0, n1);
}

}  // namespace avx512
}  // namespace qk
