// AVX2 + FMA + F16C GEMM kernels: Y[M, N] = X[M, K] · W[N, K]^T.
//
//   gemv            mc <= 4 rows of X against R = 4 rows of W at a time (four
//                   weight streams for memory-level parallelism), 8 values
//                   per step (16 for int4), weights decoded in registers:
//                     f32/f16/bf16: load (+ vcvtph2ps / shift),
//                     i8:  vpmovsxbd, - zp, vcvtdq2ps, * scale,
//                     i4:  nibbles by shifts (sign-extending shifts for the
//                          symmetric format), - zp, vcvtdq2ps, * scale.
//                          The two nibbles of a byte are elements 2i, 2i+1:
//                          X is split into even/odd lanes once per 16 values
//                          and shared by the R weight rows.
//                   Per-group scale / zero point are hoisted out of the k
//                   loop; decoded weights equal dequant_panel's bit for bit.
//   gemm_panel_f32  register-tiled dot-product kernel (tinyBLAS style):
//                   MR = 3 rows of X x NR = 4 rows of P, 12 ymm accumulators
//                   along K, horizontal sums at the end; no packing.
//   dequant_panel   row by row, group by group, same decoders as gemv.
// Tails (a group or K not a multiple of the step) are copied into
// zero-padded stack buffers and run through the same vector code, so no
// load ever reads past the data (zero lanes contribute 0 * finite = 0).
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "../isa.h"
#include "avx2_reduce.h"

namespace qk {
namespace avx2 {

namespace {

// Mask for _mm256_maskload_ps / maskstore: lanes [0, n) set, n <= 8.
static inline __m256i lane_mask(size_t n) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), iota);
}

static inline void copy_bytes(uint8_t* dst, const uint8_t* src, size_t n) {
    for (size_t i = 0; i < n; ++i) dst[i] = src[i];
}

// ---- float weight formats: 8 values of row at k --------------------------
template <int F>
static inline __m256 load_wf(const uint8_t* row, size_t k) {
    if constexpr (F == static_cast<int>(WFormat::f32)) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
    } else if constexpr (F == static_cast<int>(WFormat::f16)) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
    } else {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
    }
}

// The same for the n < 8 values at k, zero filled.
template <int F>
static inline __m256 load_wf_tail(const uint8_t* row, size_t k, size_t n) {
    constexpr size_t esz = (F == static_cast<int>(WFormat::f32)) ? 4 : 2;
    alignas(32) uint8_t buf[32] = {};
    copy_bytes(buf, row + esz * k, esz * n);
    return load_wf<F>(buf, 0);
}

// 8 int8 weights -> (q - zp) * s.
template <bool ASYM>
static inline __m256 dec_i8(__m128i bytes8, __m256i zp, __m256 s) {
    __m256i q = _mm256_cvtepi8_epi32(bytes8);
    if constexpr (ASYM) q = _mm256_sub_epi32(q, zp);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(q), s);
}
// dec_i8, or without the scale (SCALED false: ONE_GROUP tiles scale the sums instead).
template <bool ASYM, bool SCALED>
static inline __m256 dec_i8_as(__m128i bytes8, __m256i zp, __m256 s) {
    return dec_i8<ASYM>(bytes8, zp, SCALED ? s : _mm256_set1_ps(1.0f));
}

// 8 bytes of packed int4 -> low-nibble values (elements 2i) and high-nibble
// values (elements 2i+1), each (q - zp) * s.
template <bool ASYM>
static inline void dec_i4(__m128i bytes8, __m256i zp, __m256 s, __m256& lo, __m256& hi) {
    const __m256i b = _mm256_cvtepu8_epi32(bytes8);
    __m256i ql, qh;
    if constexpr (ASYM) {
        ql = _mm256_sub_epi32(_mm256_and_si256(b, _mm256_set1_epi32(15)), zp);
        qh = _mm256_sub_epi32(_mm256_srli_epi32(b, 4), zp);
    } else {
        // Sign-extend each nibble: move it to the top of the lane, then
        // arithmetic shift back.
        ql = _mm256_srai_epi32(_mm256_slli_epi32(b, 28), 28);
        qh = _mm256_srai_epi32(_mm256_slli_epi32(b, 24), 28);
    }
    lo = _mm256_mul_ps(_mm256_cvtepi32_ps(ql), s);
    hi = _mm256_mul_ps(_mm256_cvtepi32_ps(qh), s);
}

// Split x[0..16) into even and odd elements (lane i of the results pairs
// with byte i of the packed weights).
static inline void split_even_odd(__m256 x0, __m256 x1, __m256& xe, __m256& xo) {
    const __m256 e = _mm256_shuffle_ps(x0, x1, _MM_SHUFFLE(2, 0, 2, 0));  // 0 2 8 10 | 4 6 12 14
    const __m256 o = _mm256_shuffle_ps(x0, x1, _MM_SHUFFLE(3, 1, 3, 1));
    xe = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    xo = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

// Software prefetch of W rows two tiles ahead, into L2. A tile's R rows are
// one contiguous block of R * row_bytes; reading it through R interleaved
// pointers (2 rows per 4 KiB page for int4 at K = 4096) defeats the L2
// streamer, which tracks one stream per page. So each k step prefetches,
// linearly, as many bytes of the tile two tiles ahead as it consumes of this
// one. Prefetching past the end of W is harmless (a hint never faults).
constexpr size_t kPfTiles = 2;

// Scale gi of a quantized weight as a float: f32 storage, or f16
// (WeightView::scales16, read directly: a branch per group and row that
// always goes the same way), widened exactly by F16C.
static inline float scale_of(const WeightView& w, size_t gi) { return w.scales16 ? _cvtsh_ss(w.scales16[gi]) : w.scales[gi]; }
struct Prefetcher {
    const char* p;
    explicit Prefetcher(const void* ahead) : p(static_cast<const char*>(ahead)) {}
    template <int BYTES>
    inline void step() {
        if constexpr (BYTES > 0) {
            for (int i = 0; i < BYTES; i += 64) _mm_prefetch(p + i, _MM_HINT_T1);
            p += BYTES;
        }
    }
};

template <int MC, int R>
struct Rows {
    const float* x[MC];
    const uint8_t* w[R];
    Rows(const GemmArgs& a, size_t m0, size_t n) {
        for (int m = 0; m < MC; ++m) x[m] = a.x + (m0 + m) * a.ldx;
        for (int r = 0; r < R; ++r) w[r] = static_cast<const uint8_t*>(a.w.data) + (n + r) * a.w.row_bytes;
    }
};

template <int MC, int R>
static inline void store_tile(const GemmArgs& a, size_t m0, size_t n, __m256 (&acc)[MC][R]) {
    for (int m = 0; m < MC; ++m) {
        float* y = a.y + (m0 + m) * a.ldy + n;
        for (int r = 0; r < R; ++r) {
            float v = hsum(acc[m][r]);
            if (a.bias) v += a.bias[n + r];
            y[r] = v;
        }
    }
}

// ---- gemv tiles ----------------------------------------------------------
template <int F, int MC, int R, bool L1 = false>  // (L1: unused here, see gemm_dispatch.inc)
static void gemv_float_tile(const GemmArgs& a, size_t m0, size_t n) {
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K;
    __m256 acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
    constexpr int PF = (R == 4) ? 4 * 8 * (F == static_cast<int>(WFormat::f32) ? 4 : 2) : 0;
    Prefetcher pf(rw.w[0] + kPfTiles * R * a.w.row_bytes);
    size_t k = 0;
    for (; k + 8 <= K; k += 8) {
        pf.step<PF>();
        __m256 xv[MC];
        for (int m = 0; m < MC; ++m) xv[m] = _mm256_loadu_ps(rw.x[m] + k);
        for (int r = 0; r < R; ++r) {
            const __m256 wv = load_wf<F>(rw.w[r], k);
            for (int m = 0; m < MC; ++m) acc[m][r] = _mm256_fmadd_ps(xv[m], wv, acc[m][r]);
        }
    }
    if (k < K) {
        const __m256i mk = lane_mask(K - k);
        __m256 xv[MC];
        for (int m = 0; m < MC; ++m) xv[m] = _mm256_maskload_ps(rw.x[m] + k, mk);
        for (int r = 0; r < R; ++r) {
            const __m256 wv = load_wf_tail<F>(rw.w[r], k, K - k);
            for (int m = 0; m < MC; ++m) acc[m][r] = _mm256_fmadd_ps(xv[m], wv, acc[m][r]);
        }
    }
    store_tile<MC, R>(a, m0, n, acc);
}

// int8: each decoded weight is scaled, w = (q - zp) * s, unless a row is
// one group (per channel, int8's default): then the sums of x * (q - zp)
// are scaled once at the end, fma(sum, s, +0) (ONE_GROUP; one multiply per
// 8 weights less). Either way one order for every MC, so row-invariant.
template <bool ASYM, int MC, int R, bool ONE_GROUP>
static void gemv_i8_tile_impl(const GemmArgs& a, size_t m0, size_t n) {
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K, G = a.w.group, ngr = K / G, gpr = scale_stride(a.w, K);  // groups here, scale row stride
    const int8_t* zps = static_cast<const int8_t*>(a.w.zps);
    __m256 acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
    Prefetcher pf(rw.w[0] + kPfTiles * R * a.w.row_bytes);
    const size_t pf_sc = (n + kPfTiles * R) * gpr;  // that tile's scales
    for (size_t g = 0; g < ngr; ++g) {
        if (R == 4) _mm_prefetch(scale_addr(a.w, pf_sc + R * g), _MM_HINT_T1);
        if (R == 4 && ASYM) _mm_prefetch(reinterpret_cast<const char*>(zps + (n + kPfTiles * R) * gpr + R * g), _MM_HINT_T1);
        __m256 s[R];
        __m256i z[R];
        for (int r = 0; r < R; ++r) {
            const size_t gi = (n + r) * gpr + g;
            s[r] = _mm256_set1_ps(scale_of(a.w, gi));
            z[r] = ASYM ? _mm256_set1_epi32(zps[gi]) : _mm256_setzero_si256();
        }
        const size_t kend = (g + 1) * G;
        size_t k = g * G;
        for (; k + 8 <= kend; k += 8) {
            pf.step<(R == 4) ? 32 : 0>();  // 4 rows x 8 bytes
            __m256 xv[MC];
            for (int m = 0; m < MC; ++m) xv[m] = _mm256_loadu_ps(rw.x[m] + k);
            for (int r = 0; r < R; ++r) {
                const __m256 wv = dec_i8_as<ASYM, !ONE_GROUP>(
                    _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rw.w[r] + k)), z[r], s[r]);
                for (int m = 0; m < MC; ++m) acc[m][r] = _mm256_fmadd_ps(xv[m], wv, acc[m][r]);
            }
        }
        if (k < kend) {
            const size_t rem = kend - k;
            const __m256i mk = lane_mask(rem);
            __m256 xv[MC];
            for (int m = 0; m < MC; ++m) xv[m] = _mm256_maskload_ps(rw.x[m] + k, mk);
            for (int r = 0; r < R; ++r) {
                alignas(16) uint8_t buf[16] = {};
                copy_bytes(buf, rw.w[r] + k, rem);
                const __m256 wv =
                    dec_i8_as<ASYM, !ONE_GROUP>(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)), z[r], s[r]);
                for (int m = 0; m < MC; ++m) acc[m][r] = _mm256_fmadd_ps(xv[m], wv, acc[m][r]);
            }
        }
        if constexpr (ONE_GROUP)
            for (int m = 0; m < MC; ++m)
                for (int r = 0; r < R; ++r) acc[m][r] = _mm256_fmadd_ps(acc[m][r], s[r], _mm256_setzero_ps());
    }
    store_tile<MC, R>(a, m0, n, acc);
}
template <bool ASYM, int MC, int R>
static void gemv_i8_tile(const GemmArgs& a, size_t m0, size_t n) {
    if (a.K / a.w.group == 1) gemv_i8_tile_impl<ASYM, MC, R, true>(a, m0, n);
    else gemv_i8_tile_impl<ASYM, MC, R, false>(a, m0, n);
}

template <bool ASYM, int MC, int R>
static void gemv_i4_tile(const GemmArgs& a, size_t m0, size_t n) {
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K, G = a.w.group, ngr = K / G, gpr = scale_stride(a.w, K);  // groups here, scale row stride
    const uint8_t* zps = static_cast<const uint8_t*>(a.w.zps);
    __m256 acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
    Prefetcher pf(rw.w[0] + kPfTiles * R * a.w.row_bytes);
    const size_t pf_sc = (n + kPfTiles * R) * gpr;  // that tile's scales
    for (size_t g = 0; g < ngr; ++g) {
        if (R == 4) _mm_prefetch(scale_addr(a.w, pf_sc + R * g), _MM_HINT_T1);
        if (R == 4 && ASYM) _mm_prefetch(reinterpret_cast<const char*>(zps + (n + kPfTiles * R) * gpr + R * g), _MM_HINT_T1);
        __m256 s[R];
        __m256i z[R];
        for (int r = 0; r < R; ++r) {
            const size_t gi = (n + r) * gpr + g;
            s[r] = _mm256_set1_ps(scale_of(a.w, gi));
            z[r] = ASYM ? _mm256_set1_epi32(zps[gi]) : _mm256_setzero_si256();
        }
        const size_t kend = (g + 1) * G;
        size_t k = g * G;
        for (; k + 16 <= kend; k += 16) {
            pf.step<(R == 4) ? 32 : 0>();  // 4 rows x 8 bytes
            __m256 xe[MC], xo[MC];
            for (int m = 0; m < MC; ++m)
                split_even_odd(_mm256_loadu_ps(rw.x[m] + k), _mm256_loadu_ps(rw.x[m] + k + 8), xe[m], xo[m]);
            for (int r = 0; r < R; ++r) {
                __m256 wl, wh;
                dec_i4<ASYM>(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(rw.w[r] + k / 2)), z[r], s[r], wl, wh);
                for (int m = 0; m < MC; ++m) {
                    acc[m][r] = _mm256_fmadd_ps(xe[m], wl, acc[m][r]);
                    acc[m][r] = _mm256_fmadd_ps(xo[m], wh, acc[m][r]);
                }
            }
        }
        if (k < kend) {
            const size_t rem = kend - k;  // even, < 16
            __m256 xe[MC], xo[MC];
            for (int m = 0; m < MC; ++m) {
                const __m256 x0 = _mm256_maskload_ps(rw.x[m] + k, lane_mask(rem < 8 ? rem : 8));
                const __m256 x1 = _mm256_maskload_ps(rw.x[m] + k + 8, lane_mask(rem > 8 ? rem - 8 : 0));
                split_even_odd(x0, x1, xe[m], xo[m]);
            }
            for (int r = 0; r < R; ++r) {
                alignas(16) uint8_t buf[16] = {};
                copy_bytes(buf, rw.w[r] + k / 2, rem / 2);
                __m256 wl, wh;
                dec_i4<ASYM>(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)), z[r], s[r], wl, wh);
                for (int m = 0; m < MC; ++m) {
                    acc[m][r] = _mm256_fmadd_ps(xe[m], wl, acc[m][r]);
                    acc[m][r] = _mm256_fmadd_ps(xo[m], wh, acc[m][r]);
                }
            }
        }
    }
    store_tile<MC, R>(a, m0, n, acc);
}

// ---- gemm_panel_f32 tiles ------------------------------------------------
template <int MR, int NR>
static void panel_tile(const float* x, size_t ldx, const float* p, size_t ldp, size_t kc, float* y,
                       size_t ldy, bool accumulate) {
    __m256 acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
    size_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 xv[MR];
        for (int i = 0; i < MR; ++i) xv[i] = _mm256_loadu_ps(x + i * ldx + k);
        for (int j = 0; j < NR; ++j) {
            const __m256 pv = _mm256_loadu_ps(p + j * ldp + k);
            for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], pv, acc[i][j]);
        }
    }
    if (k < kc) {
        const __m256i mk = lane_mask(kc - k);
        __m256 xv[MR];
        for (int i = 0; i < MR; ++i) xv[i] = _mm256_maskload_ps(x + i * ldx + k, mk);
        for (int j = 0; j < NR; ++j) {
            const __m256 pv = _mm256_maskload_ps(p + j * ldp + k, mk);
            for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], pv, acc[i][j]);
        }
    }
    for (int i = 0; i < MR; ++i) {
        float* yr = y + i * ldy;
        for (int j = 0; j < NR; ++j) {
            const float s = hsum(acc[i][j]);
            yr[j] = accumulate ? yr[j] + s : s;
        }
    }
}

constexpr int PMR = 3;  // rows of X per tile
constexpr int PNR = 4;  // rows of P per tile (3 x 4 accumulators + 3 + 1 = 16 ymm)

template <int MR>
static void panel_rows(const float* x, size_t ldx, const float* p, size_t ldp, size_t nr, size_t kc,
                       float* y, size_t ldy, bool acc) {
    size_t j = 0;
    for (; j + PNR <= nr; j += PNR) panel_tile<MR, PNR>(x, ldx, p + j * ldp, ldp, kc, y + j, ldy, acc);
    switch (nr - j) {
        case 1: panel_tile<MR, 1>(x, ldx, p + j * ldp, ldp, kc, y + j, ldy, acc); break;
        case 2: panel_tile<MR, 2>(x, ldx, p + j * ldp, ldp, kc, y + j, ldy, acc); break;
        case 3: panel_tile<MR, 3>(x, ldx, p + j * ldp, ldp, kc, y + j, ldy, acc); break;
        default: break;
    }
}

// ---- dequant_panel rows --------------------------------------------------
template <int F>
static void conv_row(const uint8_t* row, size_t k0, size_t kc, float* out) {
    size_t k = 0;
    for (; k + 8 <= kc; k += 8) _mm256_storeu_ps(out + k, load_wf<F>(row, k0 + k));
    if (k < kc) _mm256_maskstore_ps(out + k, lane_mask(kc - k), load_wf_tail<F>(row, k0 + k, kc - k));
}

template <bool ASYM>
static void deq_i8_row(const int8_t* q, size_t ngroups, size_t G, const float* sc, const int8_t* zp,
                       float* out) {
    for (size_t g = 0; g < ngroups; ++g) {
        const __m256 s = _mm256_set1_ps(sc[g]);
        const __m256i z = ASYM ? _mm256_set1_epi32(zp[g]) : _mm256_setzero_si256();
        const int8_t* qg = q + g * G;
        float* og = out + g * G;
        size_t k = 0;
        for (; k + 8 <= G; k += 8)
            _mm256_storeu_ps(og + k, dec_i8<ASYM>(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qg + k)), z, s));
        if (k < G) {
            alignas(16) uint8_t buf[16] = {};
            copy_bytes(buf, reinterpret_cast<const uint8_t*>(qg + k), G - k);
            _mm256_maskstore_ps(og + k, lane_mask(G - k),
                                dec_i8<ASYM>(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)), z, s));
        }
    }
}

template <bool ASYM>
static void deq_i4_row(const uint8_t* packed, size_t ngroups, size_t G, const float* sc, const uint8_t* zp,
                       float* out) {
    for (size_t g = 0; g < ngroups; ++g) {
        const __m256 s = _mm256_set1_ps(sc[g]);
        const __m256i z = ASYM ? _mm256_set1_epi32(zp[g]) : _mm256_setzero_si256();
        const uint8_t* pg = packed + g * (G / 2);
        float* og = out + g * G;
        for (size_t k = 0; k < G; k += 16) {
            const size_t n = (G - k < 16) ? G - k : 16;  // even
            alignas(16) uint8_t buf[16] = {};
            const uint8_t* src = pg + k / 2;
            if (n < 16) {
                copy_bytes(buf, src, n / 2);
                src = buf;
            }
            __m256 wl, wh;
            dec_i4<ASYM>(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src)), z, s, wl, wh);
            // Interleave back into k order: (l0 h0 l1 h1 ...).
            const __m256 a = _mm256_unpacklo_ps(wl, wh);  // l0 h0 l1 h1 | l4 h4 l5 h5
            const __m256 b = _mm256_unpackhi_ps(wl, wh);  // l2 h2 l3 h3 | l6 h6 l7 h7
            const __m256 o0 = _mm256_permute2f128_ps(a, b, 0x20);
            const __m256 o1 = _mm256_permute2f128_ps(a, b, 0x31);
            if (n == 16) {
                _mm256_storeu_ps(og + k, o0);
                _mm256_storeu_ps(og + k + 8, o1);
            } else {
                _mm256_maskstore_ps(og + k, lane_mask(n < 8 ? n : 8), o0);
                _mm256_maskstore_ps(og + k + 8, lane_mask(n > 8 ? n - 8 : 0), o1);
            }
        }
    }
}

#include "../gemm_dispatch.inc"

}  // namespace

void gemv(const GemmArgs& a, size_t m0, size_t mc, size_t n0, size_t n1) {
    gemv_dispatch(a, m0, mc, n0, n1);
}

void gemm_panel_f32(const float* x, size_t ldx, size_t M, const float* p, size_t ldp, size_t nr,
                    size_t kc, float* y, size_t ldy, bool accumulate) {
    // P rows outermost: a strip of PNR panel rows stays in L1 while all M
    // rows of X stream past it from L2.
    for (size_t j = 0; j < nr; j += PNR) {
        const size_t nj = (nr - j < PNR) ? nr - j : PNR;
        const float* pj = p + j * ldp;
        size_t i = 0;
        for (; i + PMR <= M; i += PMR) panel_rows<PMR>(x + i * ldx, ldx, pj, ldp, nj, kc, y + i * ldy + j, ldy, accumulate);
        switch (M - i) {
            case 1: panel_rows<1>(x + i * ldx, ldx, pj, ldp, nj, kc, y + i * ldy + j, ldy, accumulate); break;
            case 2: panel_rows<2>(x + i * ldx, ldx, pj, ldp, nj, kc, y + i * ldy + j, ldy, accumulate); break;
            default: break;
        }
    }
}

void dequant_panel(const WeightView& w, size_t n0, size_t nr, size_t k0, size_t kc, float* p, size_t ldp) {
    dequant_rows(w, n0, nr, k0, kc, p, ldp, [](size_t) {});
}

}  // namespace avx2
}  // namespace qk

#endif  // x86-64
