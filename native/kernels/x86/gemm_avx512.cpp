// AVX-512 GEMM kernels (avx512 f/bw/vl + f16c): Y[M, N] = X[M, K] · W[N, K]^T.
//
//   gemv            mc <= 4 rows of X against R = 4 rows of W at a time (four
//                   independent weight streams for memory-level parallelism),
//                   or, f32 weights, 5 to 8 rows of X against R = 2 (the
//                   weight block read once per 8 rows of X: batched decode),
//                   16 values per step, weights decoded in registers:
//                     f32/f16/bf16: load (+ vcvtph2ps / shift),
//                     i8:  vpmovsxbd, - zp, vcvtdq2ps; with mc <= 2 each
//                          group's dot product is accumulated unscaled and
//                          scaled once per group (one op per 16 weights
//                          less), with mc >= 3 the weights are scaled as
//                          decoded (not enough zmm for two accumulator sets),
//                     i4:  a per-group 16-entry f32 table lut[q] =
//                          (q - zp) * scale in one zmm, so each nibble decodes
//                          with a single vpermps (its index uses the low 4
//                          bits only, so the low nibble needs no mask). The
//                          two nibbles of a byte are elements 2i and 2i+1:
//                          X is split into even/odd lanes once per 32 values
//                          and shared by the R weight rows.
//                   Decoded weights equal dequant_panel's bit for bit; only
//                   the summation order differs from the reference. W is
//                   software-prefetched linearly two 4-row tiles ahead (see
//                   Prefetcher): M = 1 with cold weights runs at ~0.85-0.9
//                   (int8) / ~0.78 (int4 g32) of the stream-read bandwidth.
//                   gemv_linear_m1 (the AVX-512 table's; the AMX table
//                   keeps gemv) reads f32 weights at M = 1 one row at a
//                   time instead (gemv_avx512_linear.h).
//   gemm_panel_f32  X^T-packed kernel: X is transposed per call into
//                   16-row blocks [k][16] (rows of X along the zmm lanes), P
//                   is read in place and broadcast one value at a time, tiles
//                   of 64 rows of X x 6 rows of P (M <= 16: 16 x 10), no
//                   horizontal sums; the tile is transposed back once at the
//                   end. Every Y[m, n] is one sequential FMA chain over k.
//                   (It replaced a kernel that transposed each 32-row strip of
//                   P instead, which at M = 16 cost as much as the FMAs.
//                   With the driver's in-place f32 panels, N = K = 4096 f32,
//                   one thread, vs the previous kernel and driver: M = 16
//                   ~2x, M = 128 ~1.2x.)
//   dequant_panel   row by row, group by group, same decoders as gemv; also
//                   prefetches (L2) the W bytes of the driver's next panel.
// Group lengths that are not a multiple of the vector step end with masked
// loads (zero-filled lanes contribute 0 * finite = 0).
#if defined(__x86_64__) || defined(_M_X64)

// GCC 12's AVX-512 intrinsics (e.g. _mm512_castps512_ps256) use a
// self-initialised "undefined" operand that -Wuninitialized flags inside the
// header; the warnings are false positives, silenced for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#include "../isa.h"
#include "avx512_mask.h"
#include "avx512_reduce.h"
#include "avx512_transpose.h"
#include "gemv_avx512_linear.h"

namespace qk {
namespace avx512 {

namespace {

// ---- float weight formats: 16 values of row at k ------------------------
template <int F>
static inline __m512 load_wf(const uint8_t* row, size_t k) {
    if constexpr (F == static_cast<int>(WFormat::f32)) {
        return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
    } else if constexpr (F == static_cast<int>(WFormat::f16)) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
    } else {
        const __m512i h =
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    }
}

template <int F>
static inline __m512 load_wf_mask(const uint8_t* row, size_t k, __mmask16 m) {
    if constexpr (F == static_cast<int>(WFormat::f32)) {
        return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
    } else if constexpr (F == static_cast<int>(WFormat::f16)) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * k));
    } else {
        const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * k));
        return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    }
}

// 16 int8 weights at p -> (q - zp) * s.
template <bool ASYM>
static inline __m512 dec_i8(__m128i bytes, __m512i zp, __m512 s) {
    __m512i q = _mm512_cvtepi8_epi32(bytes);
    if constexpr (ASYM) q = _mm512_sub_epi32(q, zp);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(q), s);
}

// 16 int8 weights -> (q - zp) as floats (exact), scale applied later.
template <bool ASYM>
static inline __m512 dec_i8_unscaled(__m128i bytes, __m512i zp) {
    __m512i q = _mm512_cvtepi8_epi32(bytes);
    if constexpr (ASYM) q = _mm512_sub_epi32(q, zp);
    return _mm512_cvtepi32_ps(q);
}

// (u - z) as floats for every zero point z in 0..15: row z, lane u. Building
// an asymmetric LUT from it is one load and one multiply, as for the
// symmetric one, where computing u - z and converting it per group and row
// cost ~1.45x the time of the whole int4 GEMV (4096 x 4096, M = 1, weights
// in cache). The values (and so the dequantized weights) are unchanged.
struct IotaMinusZ {
    alignas(64) float v[16][16];
    constexpr IotaMinusZ() : v() {
        for (int z = 0; z < 16; ++z)
            for (int u = 0; u < 16; ++u) v[z][u] = float(u - z);
    }
};
static constexpr IotaMinusZ kIotaMinusZ{};

// The per-group int4 decode table: lut[q] = (value(q) - zp) * s for the 16
// nibble codes q. Symmetric: value = two's-complement nibble; asymmetric:
// value = q and zp in 0..15.
template <bool ASYM>
static inline __m512 i4_lut(__m512 s, int32_t zp) {
    if constexpr (ASYM) {
        // zp & 15: a zero point is 0..15 (QuantizedTensor checks it); the mask
        // keeps a bad one from reading outside the table.
        return _mm512_mul_ps(_mm512_load_ps(kIotaMinusZ.v[zp & 15]), s);
    } else {
        const __m512i v = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
        return _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
    }
}
template <bool ASYM>
static inline __m512 i4_lut(float s, int32_t zp) {
    return i4_lut<ASYM>(_mm512_set1_ps(s), zp);
}

// The group scales of a gemv tile's R rows, as floats: load(g0, n) before
// groups g0 .. g0 + n - 1 (at most kChunk of them), then get(r, g) per row
// and group. The tiles are instantiated per storage type, so there is no
// branch per group and row. f32 storage is read in place (one chunk). f16
// storage is widened 64 groups of the R rows at a time (vcvtph2ps, exact)
// into a block on the stack, outside the group loop, which then reads it
// as the f32 tile reads its scales. Converting one scale per group and row
// (a scalar load, move and convert before the broadcast) had made the int4
// g32 M = 1 gemv 8-15 % slower than with f32 scales; refilling 8 groups
// from inside get() kept that check and its state in the group loop, whose
// registers then spilled: 2048 x 768 int4 g32 in L2, one thread (AMD EPYC
// Zen 5), 46.8 us against 36.8 with f32 scales.
template <typename S, int R>
struct TileScales;
template <int R>
struct TileScales<float, R> {
    static constexpr size_t kChunk = SIZE_MAX;
    const float* row[R];
    TileScales(const WeightView& w, size_t n, size_t gpr) {
        for (int r = 0; r < R; ++r) row[r] = w.scales + (n + r) * gpr;
    }
    inline void load(size_t, size_t) {}
    inline __m512 get(int r, size_t g) const { return _mm512_set1_ps(row[r][g]); }
};
template <int R>
struct TileScales<uint16_t, R> {
    static constexpr size_t kChunk = 64;
    const uint16_t* src[R];
    size_t base = 0;
    alignas(64) float buf[R][kChunk];
    TileScales(const WeightView& w, size_t n, size_t gpr) {
        for (int r = 0; r < R; ++r) src[r] = w.scales16 + (n + r) * gpr;
    }
    inline void load(size_t g0, size_t n) {
        base = g0;
        for (int r = 0; r < R; ++r)
            for (size_t j = 0; j < n; j += 16) {
                const size_t left = n - j;
                const __mmask16 mk = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
                _mm512_store_ps(buf[r] + j, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, src[r] + g0 + j)));
            }
    }
    inline __m512 get(int r, size_t g) const { return _mm512_set1_ps(buf[r][g - base]); }
};

static inline __m512i idx_even() {
    return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}
static inline __m512i idx_odd() {
    return _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// Software prefetch of W rows two tiles ahead, into L2. A tile's R rows are one
// contiguous block of R * row_bytes; reading it through R interleaved
// pointers (2 rows per 4 KiB page for int4 at K = 4096) defeats the L2
// streamer, which tracks one stream per page, and cold-weight GEMV then runs
// at a fraction of DRAM bandwidth (int4 g32: 0.28 without, ~0.8 with). So
// each k step also prefetches, linearly, as many lines of the tile two tiles
// ahead as it consumes of this one (16-128 KiB ahead, well past the DRAM
// latency at full bandwidth; measured: 1 tile / L1 and 4 tiles / L3 hints are
// no better). Prefetching past the end of W is harmless (never faults).
constexpr size_t kPfTiles = 2;

struct Prefetcher {
    const char* p;
    explicit Prefetcher(const void* next_tile) : p(static_cast<const char*>(next_tile)) {}
    template <int LINES, int HINT = _MM_HINT_T1>
    inline void step() {
        for (int i = 0; i < LINES; ++i) _mm_prefetch(p + 64 * i, static_cast<decltype(_MM_HINT_T1)>(HINT));
        p += 64 * LINES;
    }
};

// Row pointers of MC rows of X and R rows of W.
template <int MC, int R>
struct Rows {
    const float* x[MC];
    const uint8_t* w[R];
    Rows(const GemmArgs& a, size_t m0, size_t n) {
        for (int m = 0; m < MC; ++m) x[m] = a.x + (m0 + m) * a.ldx;
        for (int r = 0; r < R; ++r) w[r] = static_cast<const uint8_t*>(a.w.data) + (n + r) * a.w.row_bytes;
    }
};

// Y[m0 + m, n + r] = hsum(acc[m][r]) (+ bias[n + r]). Tiles of 8 to 16
// accumulators take the sums from hsum_n: the same bits, in 30 shuffles and
// 15 adds instead of 16 separate reductions (the 8-row f32 tile and the
// 4 x 4 int8 one, warm weights, one thread, AMD Zen 5: ~1.04-1.05x).
template <int MC, int R>
static inline void store_tile(const GemmArgs& a, size_t m0, size_t n, __m512 (&acc)[MC][R]) {
    if constexpr (MC * R >= 8 && MC * R <= 16) {
        __m512 v[MC * R];
        for (int m = 0; m < MC; ++m)
            for (int r = 0; r < R; ++r) v[m * R + r] = acc[m][r];
        alignas(64) float t[16];
        _mm512_store_ps(t, hsum_n(v));
        for (int m = 0; m < MC; ++m) {
            float* y = a.y + (m0 + m) * a.ldy + n;
            for (int r = 0; r < R; ++r) y[r] = a.bias ? t[m * R + r] + a.bias[n + r] : t[m * R + r];
        }
        return;
    }
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
template <int F, int MC, int R, bool L1 = false>
static void gemv_float_tile(const GemmArgs& a, size_t m0, size_t n) {
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K;
    __m512 acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
    // Bytes of W consumed per step by the tile: R rows x 16 values (R = 4,
    // or 2 in the tiles of 5 to 8 rows of X).
    constexpr int PF_LINES = (R == 4 || R == 2) ? (F == static_cast<int>(WFormat::f32) ? R : R / 2) : 0;
    // L1 (the avx512 table) and 5-8 rows (R = 2): the next tile straight
    // into L1. Each weight loaded there feeds 8 FMAs, so the loads from L2
    // (the T1 hint) held the FMAs back: the f32 lm_head (32000 x 768, cold
    // weights, one thread, AMD Zen 5) at 8 / 16 rows took 1.15x / 1.04x the
    // time with the L2 hint two tiles ahead (medians of 8 alternating
    // pairs). One tile is 6 KiB at K = 768, beside the 24 KiB of X that
    // stay in L1. The amx table (Sapphire Rapids) keeps the L2 hint: L1
    // hints for that lm_head measured no faster there (README, batched
    // decoding), and this one was not measured there.
    constexpr bool kL1 = L1 && MC > 4;
    constexpr int HINT = kL1 ? _MM_HINT_T0 : _MM_HINT_T1;
    Prefetcher pf(rw.w[0] + (kL1 ? 1 : kPfTiles) * R * a.w.row_bytes);
    size_t k = 0;
    for (; k + 16 <= K; k += 16) {
        pf.step<PF_LINES, HINT>();
        __m512 xv[MC];
        for (int m = 0; m < MC; ++m) xv[m] = _mm512_loadu_ps(rw.x[m] + k);
#if defined(__GNUC__)
        // 5-8 rows: keep X in registers. Left alone, GCC folds the X loads
        // into the FMAs and so loads each twice (18 loads per 16 FMAs
        // instead of 10); the f32 lm_head (32000 x 768) at 8 / 16 rows ran
        // 6.8 / 10.9 ms that way against 5.6 / 9.9 ms (same bits).
        if constexpr (MC > 4)
            for (int m = 0; m < MC; ++m) __asm__("" : "+v"(xv[m]));
#endif
        for (int r = 0; r < R; ++r) {
            const __m512 wv = load_wf<F>(rw.w[r], k);
            for (int m = 0; m < MC; ++m) acc[m][r] = _mm512_fmadd_ps(xv[m], wv, acc[m][r]);
        }
    }
    if (k < K) {
        const __mmask16 mk = mask16(K - k);
        __m512 xv[MC];
        for (int m = 0; m < MC; ++m) xv[m] = _mm512_maskz_loadu_ps(mk, rw.x[m] + k);
        for (int r = 0; r < R; ++r) {
            const __m512 wv = load_wf_mask<F>(rw.w[r], k, mk);
            for (int m = 0; m < MC; ++m) acc[m][r] = _mm512_fmadd_ps(xv[m], wv, acc[m][r]);
        }
    }
    store_tile<MC, R>(a, m0, n, acc);
}

// int8. With MC <= 2 the dot product of each group accumulates x * (q - zp)
// in its own registers and is scaled once per group (acc += s * group_acc):
// one multiply per 16 weights less, which is what keeps M = 1 at DRAM speed
// (the decode is ALU-bound at ~1.3x DRAM bandwidth otherwise). With MC >= 3
// there are not enough registers for two accumulator sets, so the weights
// are scaled as decoded (w = (q - zp) * s, as in dequant_panel) - unless a
// row is one group (per channel, int8's default): then the main
// accumulators take the unscaled sums and are scaled once at the end,
// fma(sum, s, +0), which is exactly what the group accumulators give for
// one group (ONE_GROUP, any MC).
template <bool ASYM, bool GACC, int MC, int R, typename S, bool ONE_GROUP = false>
static void gemv_i8_tile_impl(const GemmArgs& a, size_t m0, size_t n) {
    static_assert(!GACC || MC <= 2, "two accumulator sets fit in 32 zmm only for MC <= 2");
    static_assert(!(GACC && ONE_GROUP), "one group needs no second accumulator set");
    constexpr int NG = GACC ? MC : 1;
    constexpr bool UNSCALED = GACC || ONE_GROUP;
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K, G = a.w.group, ngr = K / G, gpr = scale_stride(a.w, K);  // groups here, scale row stride
    TileScales<S, R> sc(a.w, n, gpr);
    const int8_t* zps = static_cast<const int8_t*>(a.w.zps);
    __m512 acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
    constexpr int PF_LINES = (R == 4) ? 1 : 0;  // 4 rows x 16 bytes per step
    Prefetcher pf(rw.w[0] + kPfTiles * R * a.w.row_bytes);
    // The scales (and zero points) of that tile are contiguous too.
    const size_t pf_sc = (n + kPfTiles * R) * gpr;
    constexpr size_t kChunk = TileScales<S, R>::kChunk;
    for (size_t g0 = 0, g1; g0 < ngr; g0 = g1) {
        g1 = ngr - g0 <= kChunk ? ngr : g0 + kChunk;  // (kChunk may be SIZE_MAX)
        sc.load(g0, g1 - g0);
        for (size_t g = g0; g < g1; ++g) {
            if (R == 4) _mm_prefetch(scale_addr(a.w, pf_sc + R * g), _MM_HINT_T1);
            if (R == 4 && ASYM) _mm_prefetch(reinterpret_cast<const char*>(zps + (n + kPfTiles * R) * gpr + R * g), _MM_HINT_T1);
            __m512 s[R];
            __m512i z[R];
            for (int r = 0; r < R; ++r) {
                const size_t gi = (n + r) * gpr + g;
                s[r] = sc.get(r, g);
                z[r] = ASYM ? _mm512_set1_epi32(zps[gi]) : _mm512_setzero_si512();
            }
            // Group accumulators (GACC) or the main ones; the decode scale is 1
            // when the group is scaled at its end.
            __m512 ga[NG][R];
            __m512(*t)[R] = GACC ? ga : acc;
            if constexpr (GACC)
                for (int m = 0; m < NG; ++m)
                    for (int r = 0; r < R; ++r) ga[m][r] = _mm512_setzero_ps();
            const size_t kend = (g + 1) * G;
            size_t k = g * G;
            for (; k + 16 <= kend; k += 16) {
                pf.step<PF_LINES>();
                __m512 xv[MC];
                for (int m = 0; m < MC; ++m) xv[m] = _mm512_loadu_ps(rw.x[m] + k);
                for (int r = 0; r < R; ++r) {
                    const __m128i qb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rw.w[r] + k));
                    const __m512 wv = UNSCALED ? dec_i8_unscaled<ASYM>(qb, z[r]) : dec_i8<ASYM>(qb, z[r], s[r]);
                    for (int m = 0; m < MC; ++m) t[m][r] = _mm512_fmadd_ps(xv[m], wv, t[m][r]);
                }
            }
            if (k < kend) {
                const __mmask16 mk = mask16(kend - k);
                __m512 xv[MC];
                for (int m = 0; m < MC; ++m) xv[m] = _mm512_maskz_loadu_ps(mk, rw.x[m] + k);
                for (int r = 0; r < R; ++r) {
                    const __m128i qb = _mm_maskz_loadu_epi8(mk, rw.w[r] + k);
                    const __m512 wv = UNSCALED ? dec_i8_unscaled<ASYM>(qb, z[r]) : dec_i8<ASYM>(qb, z[r], s[r]);
                    for (int m = 0; m < MC; ++m) t[m][r] = _mm512_fmadd_ps(xv[m], wv, t[m][r]);
                }
            }
            if constexpr (GACC)
                for (int m = 0; m < MC; ++m)
                    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_fmadd_ps(ga[m][r], s[r], acc[m][r]);
            if constexpr (ONE_GROUP)
                for (int m = 0; m < MC; ++m)
                    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_fmadd_ps(acc[m][r], s[r], _mm512_setzero_ps());
        }
    }
    store_tile<MC, R>(a, m0, n, acc);
}

// int8 with groups (G < K, G % 16 == 0) and MC >= 3 rows of X: the same
// sums in the same order as gemv_i8_tile_impl's scaled decode, as one flat
// loop over k with the group's scales reloaded every G / 16 steps (see
// gemv_i4_tile_flat for why). The 12 d768 layers (cold weights, one
// thread, AMD Zen 5, two alternating rounds): int8 g32 at M = 4 / 8
// 7.8-8.1 / 15.2-15.5 ms nested, 4.7-6.6 / 8.7-9.2 ms flat; g128 at M = 8
// 9.7-9.9 -> 8.3 and 11.1 ms (the second round in a slow stretch).
template <bool ASYM, int MC, int R, typename S>
static void gemv_i8_tile_flat(const GemmArgs& a, size_t m0, size_t n) {
    static_assert(MC >= 3, "MC <= 2 takes gemv_i8_tile_impl");
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K, G = a.w.group, ngr = K / G, gpr = scale_stride(a.w, K), spg = G / 16;
    TileScales<S, R> sc(a.w, n, gpr);
    const int8_t* zps = static_cast<const int8_t*>(a.w.zps);
    __m512 acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
    constexpr int PF_LINES = (R == 4) ? 1 : 0;  // 4 rows x 16 bytes per step
    Prefetcher pf(rw.w[0] + kPfTiles * R * a.w.row_bytes);
    const size_t pf_sc = (n + kPfTiles * R) * gpr;
    constexpr size_t kChunk = TileScales<S, R>::kChunk;
    __m512 s[R];
    __m512i z[R];
    size_t g = 0, left = 0, chunk_end = 0;
    for (size_t k = 0; k < K; k += 16) {
        if (left == 0) {  // group g starts: its scales and zero points
            if (g == chunk_end) {
                chunk_end = ngr - g <= kChunk ? ngr : g + kChunk;  // (kChunk may be SIZE_MAX)
                sc.load(g, chunk_end - g);
            }
            if (R == 4) _mm_prefetch(scale_addr(a.w, pf_sc + R * g), _MM_HINT_T1);
            if (R == 4 && ASYM)
                _mm_prefetch(reinterpret_cast<const char*>(zps + (n + kPfTiles * R) * gpr + R * g), _MM_HINT_T1);
            for (int r = 0; r < R; ++r) {
                s[r] = sc.get(r, g);
                z[r] = ASYM ? _mm512_set1_epi32(zps[(n + r) * gpr + g]) : _mm512_setzero_si512();
            }
            ++g;
            left = spg;
        }
        --left;
        pf.step<PF_LINES>();
        __m512 xv[MC];
        for (int m = 0; m < MC; ++m) xv[m] = _mm512_loadu_ps(rw.x[m] + k);
        for (int r = 0; r < R; ++r) {
            const __m512 wv = dec_i8<ASYM>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rw.w[r] + k)), z[r], s[r]);
            for (int m = 0; m < MC; ++m) acc[m][r] = _mm512_fmadd_ps(xv[m], wv, acc[m][r]);
        }
    }
    store_tile<MC, R>(a, m0, n, acc);
}

// int4: 32 values (16 bytes) per step. With few accumulators (MC <= 2) the
// even and odd halves go to separate accumulators so the FMA chains stay
// short; with MC >= 3 there are already enough independent chains (and not
// enough registers for two sets).
template <bool ASYM, bool DUAL, int MC, int R, typename S>
static void gemv_i4_tile_impl(const GemmArgs& a, size_t m0, size_t n) {
    constexpr int NA = DUAL ? 2 : 1;
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K, G = a.w.group, ngr = K / G, gpr = scale_stride(a.w, K);  // groups here, scale row stride
    TileScales<S, R> sc(a.w, n, gpr);
    const uint8_t* zps = static_cast<const uint8_t*>(a.w.zps);
    const __m512i ie = idx_even(), io = idx_odd();
    __m512 acc[NA][MC][R];
    for (int h = 0; h < NA; ++h)
        for (int m = 0; m < MC; ++m)
            for (int r = 0; r < R; ++r) acc[h][m][r] = _mm512_setzero_ps();
    constexpr int PF_LINES = (R == 4) ? 1 : 0;  // 4 rows x 16 bytes per step
    Prefetcher pf(rw.w[0] + kPfTiles * R * a.w.row_bytes);
    const size_t pf_sc = (n + kPfTiles * R) * gpr;
    constexpr size_t kChunk = TileScales<S, R>::kChunk;
    for (size_t g0 = 0, g1; g0 < ngr; g0 = g1) {
        g1 = ngr - g0 <= kChunk ? ngr : g0 + kChunk;  // (kChunk may be SIZE_MAX)
        sc.load(g0, g1 - g0);
        for (size_t g = g0; g < g1; ++g) {
            if (R == 4) _mm_prefetch(scale_addr(a.w, pf_sc + R * g), _MM_HINT_T0);
            if (R == 4 && ASYM) _mm_prefetch(reinterpret_cast<const char*>(zps + (n + kPfTiles * R) * gpr + R * g), _MM_HINT_T0);
            __m512 lut[R];
            for (int r = 0; r < R; ++r) {
                const size_t gi = (n + r) * gpr + g;
                lut[r] = i4_lut<ASYM>(sc.get(r, g), ASYM ? zps[gi] : 0);
            }
            const size_t kend = (g + 1) * G;
            size_t k = g * G;
            for (; k + 32 <= kend; k += 32) {
                pf.step<PF_LINES>();
                __m512 xe[MC], xo[MC];
                for (int m = 0; m < MC; ++m) {
                    const __m512 x0 = _mm512_loadu_ps(rw.x[m] + k), x1 = _mm512_loadu_ps(rw.x[m] + k + 16);
                    xe[m] = _mm512_permutex2var_ps(x0, ie, x1);
                    xo[m] = _mm512_permutex2var_ps(x0, io, x1);
                }
                for (int r = 0; r < R; ++r) {
                    const __m512i b =
                        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rw.w[r] + k / 2)));
                    const __m512 wl = _mm512_permutexvar_ps(b, lut[r]);
                    const __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), lut[r]);
                    for (int m = 0; m < MC; ++m) {
                        acc[0][m][r] = _mm512_fmadd_ps(xe[m], wl, acc[0][m][r]);
                        acc[NA - 1][m][r] = _mm512_fmadd_ps(xo[m], wh, acc[NA - 1][m][r]);
                    }
                }
            }
            if (k < kend) {
                const size_t rem = kend - k;  // even, < 32
                const __mmask16 m0k = mask16(rem < 16 ? rem : 16);
                const __mmask16 m1k = mask16(rem > 16 ? rem - 16 : 0);
                const __mmask16 mb = mask16(rem / 2);
                __m512 xe[MC], xo[MC];
                for (int m = 0; m < MC; ++m) {
                    const __m512 x0 = _mm512_maskz_loadu_ps(m0k, rw.x[m] + k);
                    const __m512 x1 = _mm512_maskz_loadu_ps(m1k, rw.x[m] + k + 16);
                    xe[m] = _mm512_permutex2var_ps(x0, ie, x1);
                    xo[m] = _mm512_permutex2var_ps(x0, io, x1);
                }
                for (int r = 0; r < R; ++r) {
                    const __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mb, rw.w[r] + k / 2));
                    const __m512 wl = _mm512_permutexvar_ps(b, lut[r]);
                    const __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), lut[r]);
                    for (int m = 0; m < MC; ++m) {
                        acc[0][m][r] = _mm512_fmadd_ps(xe[m], wl, acc[0][m][r]);
                        acc[NA - 1][m][r] = _mm512_fmadd_ps(xo[m], wh, acc[NA - 1][m][r]);
                    }
                }
            }
        }
    }
    if constexpr (DUAL) {
        for (int m = 0; m < MC; ++m)
            for (int r = 0; r < R; ++r) acc[0][m][r] = _mm512_add_ps(acc[0][m][r], acc[1][m][r]);
    }
    store_tile<MC, R>(a, m0, n, acc[0]);
}


// int4 with MC >= 3 rows of X and whole steps (G % 32 == 0): the same
// sums in the same order as gemv_i4_tile_impl (MC >= 3 takes its single
// accumulator set), as one flat loop over k with the group's tables
// rebuilt every G / 32 steps. As a loop over groups around a loop over a
// group's steps, GCC keeps the 12-16 accumulators in memory across the
// group loop (a store and a load of each per group): the 12 d768 layers at
// G = 32 (cold weights, one thread, AMD Zen 5) took 6.8-7.9 / 19.2-20.4 /
// 38.4-39.6 ms at M = 3 / 8 / 16 that way, against 4.2-4.3 / 10.3-11.7 /
// 21.0-22.9 ms here (alternating builds). With MC <= 2 (8 accumulators)
// the nested loop keeps them in registers, and the flat one was 3-7 %
// slower at M = 1 (cold). This repeats the nested tile's set-up rather
// than sharing it: reshaping gemv_i4_tile_impl (a shared group and step
// helper) cost the M = 1 decode 5-7 % in three alternating rounds.
//
// PRE: X comes split already (gemv_i4_split_x: each 32 values as their 16
// even then their 16 odd ones), so the tile loads xe and xo as they are;
// then any MC (the 1-2-row tails of a split call take this order too, the
// row-invariant one).
template <bool ASYM, int MC, int R, typename S, bool PRE = false>
static void gemv_i4_tile_flat(const GemmArgs& a, size_t m0, size_t n) {
    static_assert(PRE || MC >= 3, "MC <= 2 takes gemv_i4_tile_impl");
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K, G = a.w.group, ngr = K / G, gpr = scale_stride(a.w, K), spg = G / 32;
    TileScales<S, R> sc(a.w, n, gpr);
    const uint8_t* zps = static_cast<const uint8_t*>(a.w.zps);
    const __m512i ie = idx_even(), io = idx_odd();
    __m512 acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
    constexpr int PF_LINES = (R == 4) ? 1 : 0;  // 4 rows x 16 bytes per step
    Prefetcher pf(rw.w[0] + kPfTiles * R * a.w.row_bytes);
    const size_t pf_sc = (n + kPfTiles * R) * gpr;
    constexpr size_t kChunk = TileScales<S, R>::kChunk;
    __m512 lut[R];
    size_t g = 0, left = 0, chunk_end = 0;
    for (size_t k = 0; k < K; k += 32) {
        if (left == 0) {  // group g starts: its tables
            if (g == chunk_end) {
                chunk_end = ngr - g <= kChunk ? ngr : g + kChunk;  // (kChunk may be SIZE_MAX)
                sc.load(g, chunk_end - g);
            }
            if (R == 4) _mm_prefetch(scale_addr(a.w, pf_sc + R * g), _MM_HINT_T0);
            if (R == 4 && ASYM)
                _mm_prefetch(reinterpret_cast<const char*>(zps + (n + kPfTiles * R) * gpr + R * g), _MM_HINT_T0);
            for (int r = 0; r < R; ++r) lut[r] = i4_lut<ASYM>(sc.get(r, g), ASYM ? zps[(n + r) * gpr + g] : 0);
            ++g;
            left = spg;
        }
        --left;
        pf.step<PF_LINES>();
        __m512 xe[MC], xo[MC];
        for (int m = 0; m < MC; ++m) {
            const __m512 x0 = _mm512_loadu_ps(rw.x[m] + k), x1 = _mm512_loadu_ps(rw.x[m] + k + 16);
            if constexpr (PRE) {
                xe[m] = x0;
                xo[m] = x1;
            } else {
                xe[m] = _mm512_permutex2var_ps(x0, ie, x1);
                xo[m] = _mm512_permutex2var_ps(x0, io, x1);
            }
        }
        for (int r = 0; r < R; ++r) {
            const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rw.w[r] + k / 2)));
            const __m512 wl = _mm512_permutexvar_ps(b, lut[r]);
            const __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), lut[r]);
            for (int m = 0; m < MC; ++m) {
                acc[m][r] = _mm512_fmadd_ps(xe[m], wl, acc[m][r]);
                acc[m][r] = _mm512_fmadd_ps(xo[m], wh, acc[m][r]);
            }
        }
    }
    store_tile<MC, R>(a, m0, n, acc);
}

// The tiles the shared dispatch calls. The MC <= 2 variants (per-group
// accumulation, split even/odd chains) sum in another order than MC >= 3, so
// by default a row's result can depend on the tile it lands in, i.e. on M.
// Row-invariant mode (GemmArgs::row_invariant, Kernels::gemv's contract)
// takes the MC >= 3 order for every MC. Measured at N = K = 4096, one thread,
// warm weights (AMD Zen 4): int8 M = 1 0.58 -> 0.70 ms, M >= 3 unchanged;
// int4 g32 M = 1 and M >= 3 unchanged, M = 2 1.7 -> 1.2 ms.
// int8 with one group per row (per channel) has a single order for every MC
// and both modes, the group-accumulator one, and MC >= 3 skip the per-weight
// multiply with it.
template <bool ASYM, int MC, int R, typename S>
static void gemv_i8_tile_s(const GemmArgs& a, size_t m0, size_t n) {
    if (a.K / a.w.group == 1) return gemv_i8_tile_impl<ASYM, false, MC, R, S, true>(a, m0, n);
    if constexpr (MC <= 2) {
        if (!a.row_invariant) return gemv_i8_tile_impl<ASYM, true, MC, R, S>(a, m0, n);
    } else {
        if (a.w.group % 16 == 0) return gemv_i8_tile_flat<ASYM, MC, R, S>(a, m0, n);
    }
    gemv_i8_tile_impl<ASYM, false, MC, R, S>(a, m0, n);
}
template <bool ASYM, int MC, int R>
static void gemv_i8_tile(const GemmArgs& a, size_t m0, size_t n) {
    if (a.w.scales16) gemv_i8_tile_s<ASYM, MC, R, uint16_t>(a, m0, n);
    else gemv_i8_tile_s<ASYM, MC, R, float>(a, m0, n);
}
template <bool ASYM, int MC, int R, typename S>
static void gemv_i4_tile_s(const GemmArgs& a, size_t m0, size_t n) {
    if constexpr (MC <= 2) {
        if (!a.row_invariant) return gemv_i4_tile_impl<ASYM, true, MC, R, S>(a, m0, n);
    } else {
        if (a.w.group % 32 == 0) return gemv_i4_tile_flat<ASYM, MC, R, S>(a, m0, n);
    }
    gemv_i4_tile_impl<ASYM, false, MC, R, S>(a, m0, n);
}
template <bool ASYM, int MC, int R>
static void gemv_i4_tile(const GemmArgs& a, size_t m0, size_t n) {
    if (a.w.scales16) gemv_i4_tile_s<ASYM, MC, R, uint16_t>(a, m0, n);
    else gemv_i4_tile_s<ASYM, MC, R, float>(a, m0, n);
}

// ---- gemm_panel_f32: X^T-packed kernel, P broadcast -------------------------
// X[M, kc] is packed (transposed) per call into 16-row blocks XT[b][k][16],
// rows past M zero; a tile holds MV such blocks (16 * MV rows of X) x NR rows
// of P, MV * NR zmm accumulators along M, and per k loads MV vectors of XT and
// broadcasts NR values P[j, k] straight from P's rows (no packing of P, which
// the driver passes in place for f32 weights: W[n0.., k0..] with ldp = K).
// Transposing X rather than P is what makes the M = 16 prefill cheap: the
// transpose costs ~0.25 shuffles per element it moves, and X has M * kc
// elements per call against the panel's nr * kc (nr = 256 from the driver).
// At the end each tile's sums are transposed back (transpose16) and added to
// Y (accumulate) or stored, masked to the valid rows and columns. Every
// Y[m, n] is one sequential FMA chain over k from 0, then (accumulate) added
// to Y, whatever the tile shape, M and the split of N.
// Tile shapes (N = K = 4096, one thread, measured): M > 16: MV = 4 x NR = 6
// (24 accumulators; per k 4 loads + 6 broadcasts per 24 FMAs; MV = 2 x 12,
// 3 x 8 and 2 x 10 were within noise of it); M <= 16: MV = 1 x NR = 10, ahead
// of NR = 8 (~4%) and NR = 12..16 (~10-15%: fewer in-place rows of W, which
// are 16 KiB apart at K = 4096 and share L1 sets, is what counts there).
// Software prefetch of the next strip of P or of XT ahead measured no gain;
// for M <= 16 the rows of P are prefetched ahead (kXtPfAhead).
constexpr int XMV = 4;    // 16-row blocks of X per tile, M > 16
constexpr int XNR = 6;    // rows of P per tile, M > 16
constexpr int XNR1 = 10;  // rows of P per tile, M <= 16 (one block)
// M <= 16 (one block) with cold weights is bound by reading W: there each of
// the tile's NR rows is prefetched (T0) 128 floats ahead every 16 k.
// Measured at 4096 x 4096 with cold weights against no prefetch: 1.03-1.19x
// on 1 and 2 threads (noisy runs); 64 floats ahead 1.10-1.12x, 256 and 512
// 1.0-1.07x; with the weights in cache 0.96x. M > 16 is not memory-bound.
constexpr size_t kXtPfAhead = 128;

// 64-byte aligned per-thread scratch for XT, grown on demand, never shrunk
// (M * kc floats: 512 KiB with the driver's default blocking). Raw
// aligned_alloc rather than std::vector: a std:: template instantiated here
// would be a weak symbol compiled with AVX-512 flags (see .ci/run).
struct XtScratch {
    float* p = nullptr;
    size_t n = 0;
    ~XtScratch() { std::free(p); }
};
static float* xt_scratch(size_t floats) {
    thread_local XtScratch buf;
    if (buf.n < floats) {
        std::free(buf.p);
        buf.p = nullptr;
        buf.n = 0;
        const size_t bytes = (floats * sizeof(float) + 63) & ~size_t(63);
        buf.p = static_cast<float*>(std::aligned_alloc(64, bytes));
        if (buf.p == nullptr) throw std::bad_alloc();
        buf.n = floats;
    }
    return buf.p;
}

// xt[k][16] = X[i, k] for i < rows, 0 for rows <= i < 16; k < kc.
static void pack_xt16(const float* x, size_t ldx, size_t rows, size_t kc, float* xt) {
    for (size_t k = 0; k < kc; k += 16) {
        const size_t kn = kc - k < 16 ? kc - k : 16;
        const __mmask16 mk = mask16(kn);
        __m512 r[16];
        for (int i = 0; i < 16; ++i)
            r[i] = (size_t(i) < rows) ? _mm512_maskz_loadu_ps(mk, x + i * ldx + k) : _mm512_setzero_ps();
        transpose16(r);
        for (size_t i = 0; i < kn; ++i) _mm512_store_ps(xt + (k + i) * 16, r[i]);
    }
}

// Y[i, j] (+)= sum_k XT[i / 16][k][i % 16] * P[j, k] for i < rows (<= 16 * MV), j < NR.
// xs: floats between consecutive 16-row blocks of XT.
template <int MV, int NR>
static void xt_tile(const float* xt, size_t xs, const float* p, size_t ldp, size_t kc, float* y, size_t ldy,
                    size_t rows, bool accumulate) {
    static_assert(NR <= 16, "one transpose16 per 16-row block");
    __m512 acc[MV][NR];
    for (int v = 0; v < MV; ++v)
        for (int j = 0; j < NR; ++j) acc[v][j] = _mm512_setzero_ps();
    const float* pr[NR];
    for (int j = 0; j < NR; ++j) pr[j] = p + j * ldp;
    for (size_t k = 0; k < kc; ++k) {
        if (MV == 1 && (k & 15) == 0)
            for (int j = 0; j < NR; ++j) _mm_prefetch(reinterpret_cast<const char*>(pr[j] + k + kXtPfAhead), _MM_HINT_T0);
        __m512 xv[MV];
        for (int v = 0; v < MV; ++v) xv[v] = _mm512_load_ps(xt + v * xs + 16 * k);
        for (int j = 0; j < NR; ++j) {
            const __m512 b = _mm512_set1_ps(pr[j][k]);
            for (int v = 0; v < MV; ++v) acc[v][j] = _mm512_fmadd_ps(xv[v], b, acc[v][j]);
        }
    }
    const __mmask16 mk = mask16(NR);
    for (int v = 0; v < MV; ++v) {
        if (rows <= size_t(16 * v)) break;
        const size_t rv = rows - 16 * v < 16 ? rows - 16 * v : 16;
        __m512 r[16];
        for (int j = 0; j < 16; ++j) r[j] = (j < NR) ? acc[v][j] : _mm512_setzero_ps();
        transpose16(r);  // r[i] = row 16 * v + i of the tile, lanes j < NR
        for (size_t i = 0; i < rv; ++i) {
            float* yr = y + (16 * v + i) * ldy;
            __m512 s = r[i];
            if (accumulate) s = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, yr), s);
            _mm512_mask_storeu_ps(yr, mk, s);
        }
    }
}

// Tile functions by NR - 1, for the strip tails (nr not a multiple of NR).
using XtFn = void (*)(const float*, size_t, const float*, size_t, size_t, float*, size_t, size_t, bool);
template <int NR>
struct XtTable {
    XtFn f[NR];
};
template <int MV, size_t... I>
static constexpr XtTable<int(sizeof...(I))> xt_table(std::index_sequence<I...>) {
    return {{&xt_tile<MV, int(I) + 1>...}};
}

// One strip of nj <= NR rows of P against all nblk blocks of XT: tiles of MV
// blocks, then the remaining blocks with MV - 1, MV - 2, ...
template <int MV, int NR>
static void xt_strip(const float* xt, size_t xs, size_t nblk, const float* p, size_t ldp, size_t nj, size_t kc,
                     float* y, size_t ldy, size_t M, bool accumulate) {
    static constexpr XtTable<NR> t = xt_table<MV>(std::make_index_sequence<NR>());
    size_t b = 0;
    for (; b + MV <= nblk; b += MV) t.f[nj - 1](xt + b * xs, xs, p, ldp, kc, y + 16 * b * ldy, ldy, M - 16 * b, accumulate);
    if constexpr (MV > 1) {
        if (b < nblk)
            xt_strip<MV - 1, NR>(xt + b * xs, xs, nblk - b, p, ldp, nj, kc, y + 16 * b * ldy, ldy, M - 16 * b,
                                 accumulate);
    }
}

template <int MV, int NR>
static void xt_panel(const float* xt, size_t xs, size_t nblk, const float* p, size_t ldp, size_t nr, size_t kc,
                     float* y, size_t ldy, size_t M, bool accumulate) {
    // Strips of P rows outermost: a strip (NR * kc floats) is read from
    // memory once and reused from cache by every block of XT.
    for (size_t j = 0; j < nr; j += NR) {
        const size_t nj = nr - j < size_t(NR) ? nr - j : size_t(NR);
        xt_strip<MV, NR>(xt, xs, nblk, p + j * ldp, ldp, nj, kc, y + j, ldy, M, accumulate);
    }
}

// ---- dequant_panel rows --------------------------------------------------
template <int F>
static void conv_row(const uint8_t* row, size_t k0, size_t kc, float* out) {
    size_t k = 0;
    for (; k + 16 <= kc; k += 16) _mm512_storeu_ps(out + k, load_wf<F>(row, k0 + k));
    if (k < kc) {
        const __mmask16 mk = mask16(kc - k);
        _mm512_mask_storeu_ps(out + k, mk, load_wf_mask<F>(row, k0 + k, mk));
    }
}

template <bool ASYM>
static void deq_i8_row(const int8_t* q, size_t ngroups, size_t G, const float* sc, const int8_t* zp,
                       float* out) {
    for (size_t g = 0; g < ngroups; ++g) {
        const __m512 s = _mm512_set1_ps(sc[g]);
        const __m512i z = ASYM ? _mm512_set1_epi32(zp[g]) : _mm512_setzero_si512();
        const int8_t* qg = q + g * G;
        float* og = out + g * G;
        size_t k = 0;
        for (; k + 16 <= G; k += 16)
            _mm512_storeu_ps(og + k, dec_i8<ASYM>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qg + k)), z, s));
        if (k < G) {
            const __mmask16 mk = mask16(G - k);
            _mm512_mask_storeu_ps(og + k, mk, dec_i8<ASYM>(_mm_maskz_loadu_epi8(mk, qg + k), z, s));
        }
    }
}

template <bool ASYM>
static void deq_i4_row(const uint8_t* packed, size_t ngroups, size_t G, const float* sc, const uint8_t* zp,
                       float* out) {
    // Interleave the low-nibble and high-nibble decodes back into k order.
    const __m512i il0 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i il1 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (size_t g = 0; g < ngroups; ++g) {
        const __m512 lut = i4_lut<ASYM>(sc[g], ASYM ? zp[g] : 0);
        const uint8_t* pg = packed + g * (G / 2);
        float* og = out + g * G;
        size_t k = 0;
        for (; k + 32 <= G; k += 32) {
            const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pg + k / 2)));
            const __m512 wl = _mm512_permutexvar_ps(b, lut);
            const __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), lut);
            _mm512_storeu_ps(og + k, _mm512_permutex2var_ps(wl, il0, wh));
            _mm512_storeu_ps(og + k + 16, _mm512_permutex2var_ps(wl, il1, wh));
        }
        if (k < G) {
            const size_t rem = G - k;
            const __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask16(rem / 2), pg + k / 2));
            const __m512 wl = _mm512_permutexvar_ps(b, lut);
            const __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), lut);
            _mm512_mask_storeu_ps(og + k, mask16(rem < 16 ? rem : 16), _mm512_permutex2var_ps(wl, il0, wh));
            _mm512_mask_storeu_ps(og + k + 16, mask16(rem > 16 ? rem - 16 : 0),
                                  _mm512_permutex2var_ps(wl, il1, wh));
        }
    }
}

// int4 gemv of 3-8 rows of X with groups of a multiple of 32 (below).
static void gemv_i4_split_x(const GemmArgs& a, size_t m0, size_t mc, size_t n0, size_t n1);
#define QK_GEMV_I4_SPLIT_X 1

// 32 zmm: f32 gemv tiles of up to 8 rows of X (see gemm_dispatch.inc).
#define QK_GEMV_FLOAT_MC8 1
#include "../gemm_dispatch.inc"

template <bool ASYM>
struct I4SplitTile {
    template <int MC, int R>
    struct T {
        static void run(const GemmArgs& a, size_t m0, size_t n) {
            if (a.w.scales16) gemv_i4_tile_flat<ASYM, MC, R, uint16_t, true>(a, m0, n);
            else gemv_i4_tile_flat<ASYM, MC, R, float, true>(a, m0, n);
        }
    };
};

// X rows [m0, m0 + mc) split once per call into a per-thread buffer, each
// 32 values as their 16 even then their 16 odd ones (the order of the low
// and high nibbles), instead of in every tile: a call's tiles (16 of 4 rows
// of W for a 64-row task) each split all of X again, two permutes per row
// of X and 32 values, about 40 % of the tile's shuffles. The same values
// in the same order, so the same bits. The 12 d768 layers at int4 g32
// (cold weights, one thread, AMD Zen 5, two alternating rounds): M = 3 /
// 4 / 8 / 16 4.6 / 6.3-6.4 / 12.3-12.8 / 23.9-24.0 ms -> 4.4 / 4.6-4.7 /
// 8.6-8.9 / 17.1-17.4 ms; M = 1-2 do not take it.
struct alignas(64) XLine {  // (a local type: the vector's code stays in this file)
    float v[16];
};
static void gemv_i4_split_x(const GemmArgs& a, size_t m0, size_t mc, size_t n0, size_t n1) {
    const size_t K = a.K;  // a multiple of 32 (so is G, which divides it)
    thread_local std::vector<XLine> buf;
    if (buf.size() < mc * K / 16) buf.resize(mc * K / 16);
    float* const x_split = buf.data()->v;
    const __m512i ie = idx_even(), io = idx_odd();
    for (size_t m = 0; m < mc; ++m) {
        const float* x = a.x + (m0 + m) * a.ldx;
        float* d = x_split + m * K;
        for (size_t k = 0; k < K; k += 32) {
            const __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
            _mm512_store_ps(d + k, _mm512_permutex2var_ps(x0, ie, x1));
            _mm512_store_ps(d + k + 16, _mm512_permutex2var_ps(x0, io, x1));
        }
    }
    GemmArgs b = a;
    b.x = x_split;
    b.ldx = K;
    b.y = a.y + m0 * a.ldy;
    if (a.w.zps) gemv_mc<I4SplitTile<true>::T>(b, 0, mc, n0, n1);
    else gemv_mc<I4SplitTile<false>::T>(b, 0, mc, n0, n1);
}

}  // namespace

void gemv(const GemmArgs& a, size_t m0, size_t mc, size_t n0, size_t n1) {
    gemv_dispatch(a, m0, mc, n0, n1);
}

void gemv_linear_m1(const GemmArgs& a, size_t m0, size_t mc, size_t n0, size_t n1) {
    gemv_dispatch<true, true>(a, m0, mc, n0, n1);
}

void gemm_panel_f32(const float* x, size_t ldx, size_t M, const float* p, size_t ldp, size_t nr,
                    size_t kc, float* y, size_t ldy, bool accumulate) {
    if (M == 0 || nr == 0) return;
    const size_t nblk = (M + 15) / 16;
    const size_t xs = kc * 16;
    float* xt = xt_scratch(nblk * xs);
    for (size_t b = 0; b < nblk; ++b)
        pack_xt16(x + 16 * b * ldx, ldx, M - 16 * b < 16 ? M - 16 * b : 16, kc, xt + b * xs);
    if (M <= 16)
        xt_panel<1, XNR1>(xt, xs, nblk, p, ldp, nr, kc, y, ldy, M, accumulate);
    else
        xt_panel<XMV, XNR>(xt, xs, nblk, p, ldp, nr, kc, y, ldy, M, accumulate);
}

void dequant_panel(const WeightView& w, size_t n0, size_t nr, size_t k0, size_t kc, float* p, size_t ldp) {
    // The driver's next panel is usually the next K block of the same rows
    // (else the first block of the next nr rows): prefetch its bytes into L2
    // row by row, so the next call does not wait on DRAM. Never faults.
    const size_t K = weight_k(w);
    const size_t bytes = (K != 0) ? w.row_bytes * kc / K : 0;
    const size_t pf_k = (k0 + kc < K) ? k0 + kc : 0;
    const size_t pf_n = (k0 + kc < K) ? n0 : n0 + nr;
    const uintptr_t pf_base =
        reinterpret_cast<uintptr_t>(w.data) + pf_n * w.row_bytes + (K != 0 ? w.row_bytes * pf_k / K : 0);
    dequant_rows(w, n0, nr, k0, kc, p, ldp, [&](size_t j) {
        for (size_t b = 0; b < bytes; b += 64)
            _mm_prefetch(reinterpret_cast<const char*>(pf_base + j * w.row_bytes + b), _MM_HINT_T1);
    });
}

}  // namespace avx512
}  // namespace qk

#endif  // x86-64
