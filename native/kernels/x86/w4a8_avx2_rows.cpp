// AVX2 W4A8 kernel with the vector lanes over 8 WEIGHT ROWS
// (Kernels::gemm_w4a8_rows; same contract and spec as gemm_w4a8, see
// W4A8Args in kernels.h and ref/w4a8_ref.cpp). The AVX-512 VNNI version is
// w4a8_avx512_rows.cpp; this one has no vpdpbusd, so it multiplies with
// vpmaddubsw and sums in int16 (bounds below).
//
// Why: the row-layout kernel (w4a8_avx2.cpp) needs two rounds of vphaddw
// per 4 weight rows and row of X to gather block sums. Here int32 lane j
// of a ymm belongs to weight row n + j, so the products of a whole 32-value
// activation block land in the lane with no shuffle, and the activations
// come in as 4-byte broadcasts (loads only). The price is a per-call
// transposition of the codes, paid once per 8 weight rows for every row of
// X, which does not pay off for a few rows of X (kW4A8RowsMinM).
//
// Panel (per thread, rebuilt for each 8 weight rows and each slice of
// kSliceChunks chunks of K): for block b = 4 c + Q (chunk c of 128 values,
// Q = b % 4) and piece t < 4 (values 32 b + 8 t .. + 7), two ymm at index
// 2 (4 (Q sc + c - c0) + t) + {0, 1} (c0: the slice's first chunk, sc: its
// chunks): lo, then hi, lane j = the 4 low (even values) resp. high (odd
// values) nibbles of bytes 16 b + 4 t .. + 3 of row n + j, one per byte,
// already flipped to q + 8 when symmetric. 8 KiB per slice of 1024 values,
// which stays in L1 while every row of X runs over it. The panel is grouped
// by Q because the outputs are computed one chain at a time (below).
// The matching activations are 4 contiguous bytes of the chunked layout:
// xc + 128 c + 16 Q + 4 t (even values), and the same + 64 (odd values).
//
// Per block and row of X:
//   s = sum over t of maddubs(lo_t, bcast x_even) + maddubs(hi_t, bcast x_odd)
//   D = madd(s, 1)
// An int16 lane of one maddubs is at most 2 * 15 * 128 = 3840 in magnitude,
// so the 8 added into a lane of s stay within 30720 < 32767: s is exact in
// int16 (vpmaddubsw's saturation never triggers), and D, the block sum of
// the row, exact in int32.
//
// Float sequence per output (row m of X, weight row n): the one written at
// the top of w4a8_avx512_rows.cpp, which w4a8_avx2.cpp follows too (so the
// two AVX2 kernels give the same bits, whatever M, tile or column range):
//   chain Q = 0, then for the blocks b = Q, Q + 4, ... in k order:
//     chain Q = fma((float) D, s[n, g] * sx[m, b], chain Q)
//     if b is the last block of its group g:
//       chain Q = fnma(s[n, g] * z'[n, g], tg[m, g], chain Q)
//   y = (chain 0 + chain 1) + (chain 2 + chain 3) (+ bias[n])
// The 4 chains are independent, so they are computed one after another
// (one pass over a quarter of the panel each, the other chains parked in
// memory): a tile of 4 rows of X then needs 4 accumulators and 4 block
// sums in registers instead of 16 + 4, which the 16 ymm registers of AVX2
// would not hold. Between slices of K the chains are parked as well and
// continue with the next slice's blocks, in the same k order: slicing
// changes no operation.
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../isa.h"
#include "w4a8_avx2_rows.h"

namespace qk {
namespace avx2 {

namespace {

enum class GKind { g32, g64, g128 };

// r[i] 32-bit lane j <- r[j] lane i (8 x 8).
inline void transpose8(__m256i (&r)[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    // u[j] (u[4 + j]): rows 0-3 (4-7), column j in the low 128-bit lane, 4 + j in the high one
    for (int j = 0; j < 4; ++j) {
        r[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
    }
}

// Mask for _mm256_mask{load,store}_ps: lanes [0, n) set, n <= 8.
inline __m256i lane_mask(size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The first cnt (<= 8) per-group values at p as float bits in int32 lanes,
// 0 after; nothing past p + cnt is read.
inline __m256i load8(const float* p, size_t cnt) {
    return _mm256_castps_si256(_mm256_maskload_ps(p, lane_mask(cnt)));
}
inline __m256i load8(const uint16_t* p, size_t cnt) {  // f16, widened exactly (F16C)
    alignas(16) uint16_t b[8] = {};
    std::memcpy(b, p, 2 * cnt);
    return _mm256_castps_si256(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(b))));
}
inline __m256i load8(const uint8_t* p, size_t cnt) {
    alignas(8) uint8_t b[8] = {};
    std::memcpy(b, p, cnt);
    return _mm256_castps_si256(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b)))));
}

// sw[g - g0] lane j = s[n + j, g] and sz[g - g0] lane j = s[n + j, g] *
// z'[n + j, g] for g0 <= g < g1 (0 for j >= nr): 8 groups of 8 rows at a
// time, one transpose.
template <typename S>
void fill_scales(const W4A8Args& a, const S* scales, size_t n, size_t nr, size_t g0, size_t g1, size_t gs, __m256* sw,
                 __m256* sz) {
    const uint8_t* zps = static_cast<const uint8_t*>(a.w.zps);
    for (size_t g = g0; g < g1; g += 8) {
        const size_t cnt = g1 - g < 8 ? g1 - g : 8;
        __m256i s[8], z[8];
        for (size_t j = 0; j < 8; ++j) {
            s[j] = j < nr ? load8(scales + (n + j) * gs + g, cnt) : _mm256_setzero_si256();
            if (zps) z[j] = j < nr ? load8(zps + (n + j) * gs + g, cnt) : _mm256_setzero_si256();
        }
        transpose8(s);
        if (zps) transpose8(z);
        for (size_t i = 0; i < cnt; ++i) {
            sw[g - g0 + i] = _mm256_castsi256_ps(s[i]);
            sz[g - g0 + i] = _mm256_mul_ps(sw[g - g0 + i], zps ? _mm256_castsi256_ps(z[i]) : _mm256_set1_ps(8.0f));
        }
    }
}

// The next 8 weight rows' codes and scales (each one contiguous block),
// prefetched into L2 a few lines per block while the first rows of X run
// over this tile, for the next fill_scales and fill_panel. Spread out, not
// in the fill: from L3 (4096 x 4096, M = 4) the fills waited on their loads
// ~30 % of the time, and prefetching during the fill (a burst of 72 lines
// per slice, more than the core's outstanding misses) did not help.
struct NextRows {
    const char* w;
    const char* s;
    size_t wlines = 0, lines = 0, per = 0, cur = 0;
    template <typename S>
    NextRows(const W4A8Args& a, const S* scales, size_t n) {
        const size_t gs = scale_stride(a.w, a.K), rows = n + 8 < a.N ? (a.N - n - 8 < 8 ? a.N - n - 8 : 8) : 0;
        w = static_cast<const char*>(a.w.data) + (n + 8) * a.w.row_bytes;
        s = reinterpret_cast<const char*>(scales + (n + 8) * gs);
        wlines = (rows * a.w.row_bytes + 63) / 64;
        lines = wlines + (rows * gs * sizeof(S) + 63) / 64;
        const size_t nb = a.K / 32;  // calls of step() per tile
        per = (lines + nb - 1) / nb;
    }
    // The next `per` lines (codes, then scales).
    inline void step() {
        for (size_t k = 0; k < per && cur < lines; ++k, ++cur)
            _mm_prefetch(cur < wlines ? w + 64 * cur : s + 64 * (cur - wlines), _MM_HINT_T1);
    }
};

// The panel of rows [n, n + nr), chunks [c0, c1) (layout in the header);
// rows past nr are 0.
void fill_panel(const W4A8Args& a, size_t n, size_t nr, size_t c0, size_t c1, __m256i* panel) {
    const size_t rb = a.w.row_bytes, sc = c1 - c0;
    const __m256i flip = _mm256_set1_epi8(a.w.zps ? 0 : char(0x88));
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (size_t c = c0; c < c1; ++c) {
        // Bytes of each row from this chunk on, of the K values (not of the
        // row stride: a view of a row's last group has the whole row's stride).
        const size_t left = a.K / 2 - 64 * c;  // >= 16, a multiple of 16
        const uint8_t* base = static_cast<const uint8_t*>(a.w.data) + n * rb + 64 * c;
        // Per block: r[j] = [row j | row j + 4] (16 bytes each), so that a
        // 4 x 4 transpose within the 128-bit lanes gives the 4 pieces of the
        // 8 rows (8 in-lane shuffles per block against 12 of an 8 x 8
        // transpose, whose last round crosses lanes).
        for (size_t q = 0; q < 4 && 16 * q < left; ++q) {
            const auto load16 = [&](size_t j) {
                return j < nr ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + j * rb + 16 * q)) : _mm_setzero_si128();
            };
            __m256i r[4];
            for (size_t j = 0; j < 4; ++j) r[j] = _mm256_inserti128_si256(_mm256_castsi128_si256(load16(j)), load16(j + 4), 1);
            const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
            const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
            const __m256i pc[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                                   _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
            for (size_t t = 0; t < 4; ++t) {  // pc[t]: bytes 16 q + 4 t .. + 3 of the 8 rows
                const __m256i v = _mm256_xor_si256(pc[t], flip);
                __m256i* dst = panel + 2 * (4 * (q * sc + c - c0) + t);
                _mm256_store_si256(dst, _mm256_and_si256(v, low));
                _mm256_store_si256(dst + 1, _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
            }
        }
    }
}

// Rows [m0, m0 + MC) of X over the panel of weight rows [n, n + nr),
// chunks [c0, c1) of K (sw[0], sz[0]: group g0): each chain continues from
// `state` (4 chains of 8 floats per row of X, row m at state + 32 m) unless
// c0 = 0, and is parked there again unless c1 is the last chunk, where y is
// written. next: prefetches to spread over the blocks, or nullptr.
template <GKind GK, int MC>
void rows_panel(const W4A8Args& a, const __m256i* panel, const __m256* sw, const __m256* sz, size_t g0, size_t m0,
                size_t n, size_t nr, size_t c0, size_t c1, float* state, NextRows* next) {
    const size_t nb = a.K / 32, sc = c1 - c0;
    const size_t nb1 = 4 * c1 < nb ? 4 * c1 : nb;  // blocks before c1
    const bool first = c0 == 0, last = 4 * c1 >= nb;
    const size_t cpg = a.w.group >= 128 ? a.w.group / 128 : 1;  // g128: chunks per group
    const int8_t* xc[MC];
    const float* sx[MC];
    const float* tg[MC];
    float* st[MC];
    for (int i = 0; i < MC; ++i) {
        xc[i] = a.xc + (m0 + i) * a.ldx;
        sx[i] = a.sx + (m0 + i) * a.ldsx;
        tg[i] = a.tg + (m0 + i) * a.ldtg;
        st[i] = state + 32 * (m0 + i);
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t Q = 0; Q < 4; ++Q) {
        __m256 acc[MC];
        for (int i = 0; i < MC; ++i) acc[i] = first ? _mm256_setzero_ps() : _mm256_load_ps(st[i] + 8 * Q);
        size_t g128 = c0 / cpg, left = cpg - c0 % cpg;  // g128: the chunk's group and its chunks left
        for (size_t c = c0, b = 4 * c0 + Q; b < nb1; ++c, b += 4) {
            const __m256i* P = panel + 8 * (Q * sc + c - c0);
            const size_t xo = 128 * c + 16 * Q;
            if (next) next->step();
            __m256i s[MC];
            for (size_t t = 0; t < 4; ++t) {
                const __m256i lo = _mm256_load_si256(P + 2 * t), hi = _mm256_load_si256(P + 2 * t + 1);
                for (int i = 0; i < MC; ++i) {
                    int32_t xe, xd;  // 4 even values, 4 odd values
                    std::memcpy(&xe, xc[i] + xo + 4 * t, 4);
                    std::memcpy(&xd, xc[i] + xo + 64 + 4 * t, 4);
                    // |each| <= 3840, 8 of them per lane of s: exact (see the header)
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_set1_epi32(xe)),
                                                       _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xd)));
                    s[i] = t == 0 ? p : _mm256_add_epi16(s[i], p);
                    // Keep the sum a chain in this order: GCC otherwise turns
                    // the 4 x 8 products into an add tree, 30+ live vectors,
                    // and spills most of them (and the accumulators).
                    __asm__("" : "+x"(s[i]));
                }
            }
            const size_t g = GK == GKind::g32 ? b : GK == GKind::g64 ? b / 2 : g128;
            const bool end = GK == GKind::g32 || (GK == GKind::g64 && Q % 2 == 1) || (Q == 3 && left == 1);
            for (int i = 0; i < MC; ++i) {
                const __m256i D = _mm256_madd_epi16(s[i], ones);
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(D), _mm256_mul_ps(sw[g - g0], _mm256_set1_ps(sx[i][b])), acc[i]);
                if (end) acc[i] = _mm256_fnmadd_ps(sz[g - g0], _mm256_set1_ps(tg[i][g]), acc[i]);
            }
            if (GK == GKind::g128 && --left == 0) {
                left = cpg;
                ++g128;
            }
        }
        for (int i = 0; i < MC; ++i) _mm256_store_ps(st[i] + 8 * Q, acc[i]);
    }
    if (!last) return;
    const __m256i mk = lane_mask(nr);
    const __m256 bias = a.bias ? _mm256_maskload_ps(a.bias + n, mk) : _mm256_setzero_ps();
    for (int i = 0; i < MC; ++i) {
        const __m256 c01 = _mm256_add_ps(_mm256_load_ps(st[i]), _mm256_load_ps(st[i] + 8));
        const __m256 c23 = _mm256_add_ps(_mm256_load_ps(st[i] + 16), _mm256_load_ps(st[i] + 24));
        __m256 v = _mm256_add_ps(c01, c23);
        if (a.bias) v = _mm256_add_ps(v, bias);
        _mm256_maskstore_ps(a.y + (m0 + i) * a.ldy + n, mk, v);
    }
}

struct alignas(32) Ymm {
    uint8_t b[32];
};

constexpr int kMC = 4;  // rows of X per pass: 4 accumulators, 4 block sums, lo and hi in registers

// Chunks of K per panel slice: 8 (1024 values) make an 8 KiB panel, which
// stays in L1 with a pass's 4 KiB of activations while every row of X runs
// over it. Against one panel of the whole K (interleaved, one thread):
// 4096 x 11008 +5 % at M = 4 to 16, 4096 x 4096 and 768 x 768 unchanged.
constexpr size_t kSliceChunks = 8;

// From this many activation bytes (M K) the slices of K are the outer loop
// and the 8-row panels of [n0, n1) the inner one, so that a slice of X
// (1 KiB per row) stays in L2 while all the panels pass over it (with the
// panels outside, all of X goes through L2 once per 8 weight rows). One
// thread, kernel alone, 4096 x 11008 (1.4 MB of X at M = 128): +7-15 % at
// M = 128, +20-24 % at 256; an earlier version with the slices outside from
// 1 MiB was 9 % slower at 11008 x 4096, M = 256 (1 MiB of X), hence 1.25.
constexpr size_t kSliceOuterBytes = size_t(5) << 18;  // 1.25 MiB

// Every row of X over the panel of weight rows [n, n + nr), chunks [c0, c1).
template <GKind GK>
void pass(const W4A8Args& a, __m256i* panel, const __m256* sw, const __m256* sz, size_t g0, size_t n, size_t nr,
          size_t c0, size_t c1, float* state, NextRows* next) {
    fill_panel(a, n, nr, c0, c1, panel);
    size_t m = 0;
    for (; m + kMC <= a.M; m += kMC) rows_panel<GK, kMC>(a, panel, sw, sz, g0, m, n, nr, c0, c1, state, m == 0 ? next : nullptr);
    switch (a.M - m) {
        case 3: rows_panel<GK, 3>(a, panel, sw, sz, g0, m, n, nr, c0, c1, state, m == 0 ? next : nullptr); break;
        case 2: rows_panel<GK, 2>(a, panel, sw, sz, g0, m, n, nr, c0, c1, state, m == 0 ? next : nullptr); break;
        case 1: rows_panel<GK, 1>(a, panel, sw, sz, g0, m, n, nr, c0, c1, state, m == 0 ? next : nullptr); break;
        default: break;
    }
}

template <GKind GK, typename S>
void run(const W4A8Args& a, const S* scales, size_t n0, size_t n1) {
    const size_t K = a.K, nb = K / 32, bpg = a.w.group / 32, ng = K / a.w.group, gs = scale_stride(a.w, K);
    const size_t chunks = (K + 127) / 128, tiles = (n1 - n0 + 7) / 8;
    const bool slices_out = a.M * K >= kSliceOuterBytes;
    // Per-thread scratch, reused across calls (grows to the largest sizes
    // seen): sw and sz per group (of all of K, or of one slice when the
    // slices are outside), the panel of one slice, and the chains parked
    // between slices (4 x 8 floats per row of X, per 8-row panel when the
    // slices are outside).
    const size_t gcap = slices_out ? 4 * kSliceChunks / bpg + 2 : ng;  // groups a slice touches, at most
    const size_t need = 2 * gcap + 32 * kSliceChunks + 4 * a.M * (slices_out ? tiles : 1);
    thread_local std::vector<Ymm> scratch;
    if (scratch.size() < need) scratch.resize(need);
    __m256* sw = reinterpret_cast<__m256*>(scratch.data());
    __m256* sz = sw + gcap;
    __m256i* panel = reinterpret_cast<__m256i*>(scratch.data() + 2 * gcap);
    float* state = reinterpret_cast<float*>(scratch.data() + 2 * gcap + 32 * kSliceChunks);
    if (!slices_out) {
        for (size_t n = n0; n < n1; n += 8) {
            const size_t nr = n1 - n < 8 ? n1 - n : 8;
            fill_scales(a, scales, n, nr, 0, ng, gs, sw, sz);
            NextRows next(a, scales, n);
            for (size_t c0 = 0; c0 < chunks; c0 += kSliceChunks) {
                const size_t c1 = chunks - c0 < kSliceChunks ? chunks : c0 + kSliceChunks;
                pass<GK>(a, panel, sw, sz, 0, n, nr, c0, c1, state, &next);
            }
        }
        return;
    }
    // (no software prefetch here: each panel's compute is long at this M)
    for (size_t c0 = 0; c0 < chunks; c0 += kSliceChunks) {
        const size_t c1 = chunks - c0 < kSliceChunks ? chunks : c0 + kSliceChunks;
        const size_t b1 = 4 * c1 < nb ? 4 * c1 : nb;
        const size_t g0 = 4 * c0 / bpg, g1 = (b1 - 1) / bpg + 1 < ng ? (b1 - 1) / bpg + 1 : ng;
        for (size_t ti = 0; ti < tiles; ++ti) {
            const size_t n = n0 + 8 * ti, nr = n1 - n < 8 ? n1 - n : 8;
            fill_scales(a, scales, n, nr, g0, g1, gs, sw, sz);
            pass<GK>(a, panel, sw, sz, g0, n, nr, c0, c1, state + 32 * a.M * ti, nullptr);
        }
    }
}

template <GKind GK>
void run_s(const W4A8Args& a, size_t n0, size_t n1) {
    if (a.w.scales16) run<GK>(a, a.w.scales16, n0, n1);
    else run<GK>(a, a.w.scales, n0, n1);
}

}  // namespace

void gemm_w4a8_rows(const W4A8Args& a, size_t n0, size_t n1) {
    const size_t G = a.w.group;
    // The cases of gemm_w4a8 (w4a8_avx2.cpp), so that the two give the same
    // bits for every group size; a shorter last group, or G = 48 or 96,
    // take the reference in both.
    if (a.K % G != 0 || !(G == 32 || G == 64 || G % 128 == 0)) ref::gemm_w4a8(a, n0, n1);
    else if (G == 32) run_s<GKind::g32>(a, n0, n1);
    else if (G == 64) run_s<GKind::g64>(a, n0, n1);
    else run_s<GKind::g128>(a, n0, n1);
}

}  // namespace avx2
}  // namespace qk

#endif  // x86-64
