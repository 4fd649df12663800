// AVX2 W4A8 kernel (Kernels::gemm_w4a8; the spec is ref/w4a8_ref.cpp, the
// layout and the offset formula are on W4A8Args). The AVX-512 VNNI version
// (w4a8_avx512.cpp) has the same structure on 64-byte steps.
//
// One step is 32 bytes of a weight row: 64 values, one half h of a 128-value
// chunk c. Their low nibbles are the even values, whose activations are the
// 32 bytes at xc + 128 c + 32 h, and their high nibbles the odd ones, at
// xc + 128 c + 64 + 32 h. Per step and weight row:
//   v = bytes ^ 0x88 (symmetric: nibble ^ 8 = q + 8 in 0..15, unsigned)
//   lo = v & 0x0F, hi = (v >> 4) & 0x0F
//   p = maddubs(lo, x_even) + maddubs(hi, x_odd)     (int16, see below)
//   d = madd(p, 1)                                   (int32)
// vpmaddubsw multiplies unsigned by signed bytes and adds adjacent pairs
// WITH signed saturation; here the unsigned operand is at most 15 and
// |x| <= 127, so each pair sum is at most 2 * 15 * 127 = 3810 in magnitude
// and the int16 sum of the two at most 7620 < 32767: no saturation, exact.
// int32 lane q of d then holds bytes 4 q .. 4 q + 3 of both nibble planes,
// i.e. values 128 c + 64 h + 8 q .. + 7: lane 8 h + q of the chunk, the lane
// structure of the spec, inside one activation block and one weight group
// (G % 32 == 0). Then acc += (float)d * (s_lanes * sxl), and at the end of
// the row the offset (q + 8 or u against the zero point) is taken out with
// the per-group activation sums tg.
//
// Tiles: R = 4 weight rows (1 for the last few) x MC <= 4 activation rows,
// with the weight codes and group scales prefetched linearly two tiles
// ahead into L2 (one stream per tile instead of R interleaved ones; see
// gemm_avx512.cpp), as many lines per chunk as the tile consumes. (The 4 x 4
// tile's 16 accumulators fill the 16 ymm registers, so the compiler spills
// some; 2-row tiles were no faster in a quick measurement.)
// K tail (K % 32 == 0 on this path): the last chunk holds 32, 64 or 96
// values; a whole 32-byte half is loaded as usual, a last 16 bytes with a
// 128-bit load (upper half zero), so no weight byte past the row is read.
// The activations are zero-padded to the chunk and their lane scales are 0
// there, so the padding adds 0.
// Group sizes other than 32, 64 and multiples of 128 take the ref path.
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstring>

#include <cstddef>
#include <cstdint>

#include "../isa.h"
#include "avx2_reduce.h"

namespace qk {
namespace avx2 {

namespace {

// How the group scales map onto the 8 lanes of a half chunk.
enum class GKind { g32, g64, g128 };

// Mask for _mm256_maskload_ps: lanes [0, n) set, n <= 8.
static inline __m256i lane_mask(size_t n) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), iota);
}

// s[n, g] for the 8 lanes of half h of chunk c (lane q: values
// 128 c + 64 h + 8 q ..). g128 is the group of the chunk (G % 128 == 0).
// PIECE: only the first 32 values of the half are inside K (lanes 0..3);
// then only s of that block is read, lanes 4..7 get the same finite value
// (their sums and lane scales are 0).
template <GKind GK, bool PIECE>
static inline __m256 scale_lanes(const float* s, size_t c, size_t h, size_t g128) {
    if (GK == GKind::g32) {
        const float* p = s + 4 * c + 2 * h;
        if (PIECE) return _mm256_broadcast_ss(p);
        return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(p)), _mm_broadcast_ss(p + 1), 1);
    } else if (GK == GKind::g64) {
        return _mm256_broadcast_ss(s + 2 * c + h);
    } else {
        return _mm256_broadcast_ss(s + g128);
    }
}

// The same from f16 scales (WeightView::scales16), each widened exactly by
// F16C: the lanes hold the very floats the f32 form would load.
template <GKind GK, bool PIECE>
static inline __m256 scale_lanes(const uint16_t* s, size_t c, size_t h, size_t g128) {
    if (GK == GKind::g32) {
        const uint16_t* p = s + 4 * c + 2 * h;
        if (PIECE) return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(p[0])));
        // both halves of the pair in one 4-byte load: [s0, s1] -> lanes 0-3 s0, 4-7 s1
        uint32_t pair;
        std::memcpy(&pair, p, sizeof pair);
        const __m256 v = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128(int(pair))));
        return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    } else if (GK == GKind::g64) {
        return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(s[2 * c + h])));
    } else {
        return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(s[g128])));
    }
}

// 8 scales from s (the first nl of them; the others 0) as floats.
static inline __m256 load_scales8(const float* s, size_t nl) { return _mm256_maskload_ps(s, lane_mask(nl)); }
static inline __m256 load_scales8(const uint16_t* s, size_t nl) {
    if (nl == 8) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
    alignas(16) uint16_t buf[8] = {};
    for (size_t j = 0; j < nl; ++j) buf[j] = s[j];
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
}

// Linear L2 prefetch of the tile two tiles ahead (as in w4a8_avx512.cpp):
// its R rows of codes are one contiguous block (R lines per chunk, as many
// as the chunk consumes), and so are its R rows of group scales (R * 512 / G
// bytes per chunk).
template <int R, typename S>
struct Prefetcher {
    const char* w;
    const char* s;
    Prefetcher(const void* next_codes, const S* next_scales)
        : w(static_cast<const char*>(next_codes)), s(reinterpret_cast<const char*>(next_scales)) {}
    // sf: the tile's scales consumed before this chunk.
    inline void step(size_t sf) {
        for (int r = 0; r < R; ++r) _mm_prefetch(w + 64 * r, _MM_HINT_T1);
        w += 64 * R;
        _mm_prefetch(s + sizeof(S) * sf, _MM_HINT_T1);
    }
};

// Operands of one tile: R weight rows from n, MC activation rows from m0;
// S: the scales' storage (float, or uint16_t f16 bits).
template <int R, int MC, typename S>
struct TileRows {
    const uint8_t* w[R];
    const S* s[R];
    const int8_t* xc[MC];
    const float* sxl[MC];
};

// acc[r][i] += the 64 values of half h of chunk c (PIECE: its first 32).
template <GKind GK, bool ASYM, bool PIECE, int R, int MC, typename S>
static inline void half_step(__m256 (&acc)[R][MC], const TileRows<R, MC, S>& t, size_t c, size_t h, size_t g128) {
    const __m256i flip = _mm256_set1_epi8(ASYM ? 0 : char(0x88));
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t wo = 64 * c + 32 * h;   // weight byte offset in the row
    const size_t xo = 128 * c + 32 * h;  // even activations; the odd ones at + 64
    const size_t ls = 16 * c + 8 * h;    // lane scales
    for (int r = 0; r < R; ++r) {
        __m256i v;
        if (PIECE) v = _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t.w[r] + wo)));
        else v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.w[r] + wo));
        if (!ASYM) v = _mm256_xor_si256(v, flip);
        const __m256i lo = _mm256_and_si256(v, low);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        const __m256 sw = scale_lanes<GK, PIECE>(t.s[r], c, h, g128);
        for (int i = 0; i < MC; ++i) {
            const __m256i xe = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.xc[i] + xo));
            const __m256i xod = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.xc[i] + xo + 64));
            // <= 3810 + 3810 in magnitude: exact in int16 (see the header).
            const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xe), _mm256_maddubs_epi16(hi, xod));
            const __m256i d = _mm256_madd_epi16(p, ones);
            const __m256 f = _mm256_mul_ps(sw, _mm256_loadu_ps(t.sxl[i] + ls));
            acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), f, acc[r][i]);
        }
    }
}

// R weight rows x MC activation rows; ASYM: unsigned nibbles with zero points.
template <GKind GK, bool ASYM, int R, int MC, typename S>
void tile(const W4A8Args& a, size_t m0, size_t n) {
    const size_t K = a.K, G = a.w.group, ng = K / G, gs = scale_stride(a.w, K);  // groups here, scale row stride
    const size_t full = K / 128, rem = K % 128;
    const S* scales;
    if constexpr (sizeof(S) == 2) scales = a.w.scales16;
    else scales = a.w.scales;
    TileRows<R, MC, S> t;
    for (int r = 0; r < R; ++r) {
        t.w[r] = static_cast<const uint8_t*>(a.w.data) + (n + r) * a.w.row_bytes;
        t.s[r] = scales + (n + r) * gs;
    }
    for (int i = 0; i < MC; ++i) {
        t.xc[i] = a.xc + (m0 + i) * a.ldx;
        t.sxl[i] = a.sxl + (m0 + i) * a.ldsxl;
    }
    __m256 acc[R][MC];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < MC; ++i) acc[r][i] = _mm256_setzero_ps();
    Prefetcher<R, S> pf(t.w[0] + 2 * R * a.w.row_bytes, t.s[0] + 2 * R * gs);

    // G % 128 == 0: the group of chunk c, without a division per chunk.
    const size_t cpg = G / 128;
    size_t g128 = 0, cg = 0;
    for (size_t c = 0; c < full; ++c) {
        if (R == 4) pf.step(GK == GKind::g32 ? 4 * R * c : GK == GKind::g64 ? 2 * R * c : R * g128);
        half_step<GK, ASYM, false>(acc, t, c, 0, g128);
        half_step<GK, ASYM, false>(acc, t, c, 1, g128);
        if (GK == GKind::g128 && ++cg == cpg) {
            cg = 0;
            ++g128;
        }
    }
    // Last chunk of 32, 64 or 96 values: a whole half and / or 16 bytes.
    if (rem >= 64) half_step<GK, ASYM, false>(acc, t, full, 0, g128);
    if (rem % 64) half_step<GK, ASYM, true>(acc, t, full, rem / 64, g128);

    // Offset: sum_g s[n, g] z'[n, g] tg[m, g], 8 groups at a time.
    for (size_t g = 0; g < ng; g += 8) {
        const size_t nl = ng - g < 8 ? ng - g : 8;
        const __m256i mk = lane_mask(nl);
        __m256 tg[MC];
        for (int i = 0; i < MC; ++i) tg[i] = _mm256_maskload_ps(a.tg + (m0 + i) * a.ldtg + g, mk);
        for (int r = 0; r < R; ++r) {
            __m256 sz = load_scales8(t.s[r] + g, nl);
            if (ASYM) {
                const uint8_t* z = static_cast<const uint8_t*>(a.w.zps) + (n + r) * gs + g;
                __m128i zb;
                if (nl == 8) {
                    zb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(z));
                } else {
                    alignas(8) uint8_t buf[8] = {};
                    for (size_t j = 0; j < nl; ++j) buf[j] = z[j];
                    zb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(buf));
                }
                sz = _mm256_mul_ps(sz, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(zb)));
            } else {
                sz = _mm256_mul_ps(sz, _mm256_set1_ps(8.0f));
            }
            for (int i = 0; i < MC; ++i) acc[r][i] = _mm256_fnmadd_ps(sz, tg[i], acc[r][i]);
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

}  // namespace avx2
}  // namespace qk

#endif  // x86-64
