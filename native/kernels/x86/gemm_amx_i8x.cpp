// int8 weights x f32 activations on AMX-INT8 tiles, in exact integers
// (Kernels::i8x_split and gemm_i8x of the amx table; the spec is the scalar
// reference, ref/i8x_ref.cpp, which these kernels equal bit for bit).
//
// Each row of X is written as four signed int8 digits per value on a
// power-of-two scale of its own (DigitX, kernels.h):
//   x = 2^e (d1 + d2 2^-7 + d3 2^-14 + d4 2^-21) + r,  |r| <= 2^-27 max|x_row|
// so that for symmetric per-channel int8 weights (one scale s per row n)
//   y[m, n] = s[n] 2^e_m sum_d 2^(-7 (d - 1)) C_d[m, n],  C_d = sum_k q[n, k] d_d[m, k]
// with every C_d an exact int32 sum (|C_d| <= 64 * 127 * K < 2^31 for
// K <= kI8xMaxK). tdpbssd gives the C_d straight from the weight codes read
// IN PLACE (no decode, no f32 panel, no per-block rescale: one scale per
// row), the four digits of a row side by side in the 16 columns of C, four
// rows of X per tile. The epilogue adds the C_d in double, exactly,
// multiplies by s 2^e in double and rounds to f32, so the only errors are
// that rounding (< 2^-23 of y) and x's representation, <= 2^-27 max|x_row| *
// sum_k |w[n, k]| (an f32 FMA chain: up to K 2^-24 sum |x w|).
//
// Cost. A tile product covers 16 weight rows x 64 values of k for up to 4
// rows of X whatever M (M = 1 pays the same product as M = 4): the weights
// stream through the tile unit once per 4 rows of X (once per 8 with the
// 2 x 2 tiles) and are never converted, so small M is bound by reading W and
// large M by the products (16 x 16 x 64 per ~16 cycles).
//
// Row invariance: y[m, n] depends on row m of X (its digits, its scale) and
// row n of W only, whatever M, the tile a row lands in or the task split;
// so the driver's row-invariant modes (batched decoding) take this path at
// every M.
//
// Tiles (all 8 as 16 rows x 64 bytes): C in tmm0-3, weights in tmm4-5,
// digits in tmm6-7. One tile of X (M <= 4): one weight tile at a time, its
// steps spread over the four C tiles (block_1x); more: 2 x 2. One thread,
// M = 1, GFLOP/s against gemv: 768 x 768 to 768 x 2048 (weights in L2)
// 62-73 / 49-53; 4096 x 4096 and 11008 x 4096 42 / 43-44; 32000 x 768
// (the int8 lm_head) 35 / 43. Four weight tiles per digit tile instead
// (64 rows streaming at once) ran 35 / 31 on the last three, and software
// prefetch of the next tile's rows made both slower.
#if defined(__x86_64__) || defined(_M_X64)

#include "gcc_avx512_warnings.h"
#include "gemm_amx_i8x.h"

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../isa.h"
#include "avx512_mask.h"
#include "amx_tiles.h"
#include "avx512_transpose.h"

namespace qk {
namespace amx {

namespace {

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

using avx512::mask16;

// The four digits of 16 values u (|u| < 64, u = x 2^-e exactly), as int32.
inline void digits16(__m512 u, __m512i (&d)[4]) {
    const __m512 b7 = _mm512_set1_ps(128.0f);
    for (int i = 0; i < 4; ++i) {
        const __m512 r = _mm512_roundscale_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        d[i] = _mm512_cvtps_epi32(r);           // exact: r is an integer, |r| <= 64
        u = _mm512_mul_ps(_mm512_sub_ps(u, r), b7);  // both exact
    }
}

}  // namespace

void i8x_split(const float* x, size_t ldx, size_t M, size_t K, const DigitX& dx) {
    const size_t steps = dx.steps(), tiles = dx.tiles();
    int8_t* base = static_cast<int8_t*>(dx.data);
    for (size_t t = 0; t < tiles; ++t) {
        // the row scales of this tile's rows, and which rows are finite
        float inv[4];  // the exponent to scale by: -e
        bool live[4];
        for (int ml = 0; ml < 4; ++ml) {
            const size_t m = 4 * t + size_t(ml);
            live[ml] = false;
            inv[ml] = 0;
            if (m >= M) continue;
            const float* row = x + m * ldx;
            __m512 mx = _mm512_setzero_ps();
            __mmask16 bad = 0;
            for (size_t k = 0; k < K; k += 16) {
                const __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(mask16(K - k), row + k));
                bad |= _mm512_cmp_ps_mask(v, _mm512_set1_ps(INFINITY), _CMP_NLT_UQ);  // inf or NaN
                mx = _mm512_max_ps(mx, v);
            }
            const float amax = _mm512_reduce_max_ps(mx);
            dx.bad[m] = bad != 0;
            if (bad) {
                dx.exps[m] = 0;
                continue;
            }
            // e = floor(log2 amax) - 5, so |x| 2^-e < 64; amax = 0: every digit 0
            const int e = amax > 0 ? int(_mm_cvtss_f32(_mm_getexp_ss(_mm_setzero_ps(), _mm_set_ss(amax)))) - 5 : 0;
            dx.exps[m] = e;
            inv[ml] = float(-e);
            live[ml] = amax > 0;
        }
        for (size_t s = 0; s < steps; ++s) {
            // column 4 ml + i of the tile: 64 digits (k = 64 s ..), 16 dwords
            __m512 col[16];
            for (int ml = 0; ml < 4; ++ml) {
                const size_t m = 4 * t + size_t(ml);
                if (!live[ml]) {
                    for (int i = 0; i < 4; ++i) col[4 * ml + i] = _mm512_setzero_ps();
                    continue;
                }
                const float* row = x + m * ldx + 64 * s;
                const __m512 sc = _mm512_set1_ps(inv[ml]);
                __m128i b[4][4];  // [digit][16 values]
                for (int q = 0; q < 4; ++q) {
                    const size_t k = 64 * s + 16 * size_t(q);
                    const __m512 v = k < K ? _mm512_maskz_loadu_ps(mask16(K - k), row + 16 * q) : _mm512_setzero_ps();
                    __m512i d[4];
                    digits16(_mm512_scalef_ps(v, sc), d);
                    for (int i = 0; i < 4; ++i) b[i][q] = _mm512_cvtepi32_epi8(d[i]);
                }
                for (int i = 0; i < 4; ++i) {
                    const __m512i v = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_set_m128i(b[i][1], b[i][0])), _mm256_set_m128i(b[i][3], b[i][2]), 1);
                    col[4 * ml + i] = _mm512_castsi512_ps(v);
                }
            }
            // col[c] dword r = digits of k quad r; the tile wants row r = that quad of every column
            avx512::transpose16(col);
            int8_t* tile = base + (t * steps + s) * 1024;
            for (int r = 0; r < 16; ++r) _mm512_store_ps(reinterpret_cast<float*>(tile + 64 * r), col[r]);
        }
    }
}

namespace {

// A tile operand in memory: its first row and the row stride in bytes.
struct Src {
    const int8_t* p;
    size_t ld;
};

// The C tile (2 v + j, or j) of 16 weight rows [n, n + 16) and X tile t:
// Y rows 4 t .. (< M), columns [n, n + nc).
void epilogue_acc(const DigitX& dx, const WeightView& w, const int32_t* acc, size_t t, size_t n, size_t nc,
                  const float* bias, float* y, size_t ldy) {
    __m512 r[16];  // r[j] = C[j][.]; after the transpose r[col] lane j
    for (int j = 0; j < 16; ++j) r[j] = _mm512_load_ps(reinterpret_cast<const float*>(acc + 16 * j));
    avx512::transpose16(r);
    const __mmask16 mk = mask16(nc);
    const __m512 s = w.scales16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, w.scales16 + n))
                                : _mm512_maskz_loadu_ps(mk, w.scales + n);
    const __m512d s_lo = _mm512_cvtps_pd(_mm512_castps512_ps256(s));
    const __m512d s_hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
    const __m512 b = bias ? _mm512_maskz_loadu_ps(mk, bias + n) : _mm512_setzero_ps();
    for (int ml = 0; ml < 4; ++ml) {
        const size_t m = 4 * t + size_t(ml);
        if (m >= dx.M) break;
        if (dx.bad[m]) continue;  // the driver computes such rows on its own
        __m512d sum[2];
        for (int h = 0; h < 2; ++h) {
            // C_1 + 2^-7 C_2 + 2^-14 C_3 + 2^-21 C_4: every partial sum exact
            __m512d v = _mm512_setzero_pd();
            for (int i = 0; i < 4; ++i) {
                const __m512i ci = _mm512_castps_si512(r[4 * ml + i]);
                const __m256i half = h ? _mm512_extracti64x4_epi64(ci, 1) : _mm512_castsi512_si256(ci);
                v = _mm512_add_pd(v, _mm512_mul_pd(_mm512_cvtepi32_pd(half), _mm512_set1_pd(1.0 / double(1 << (7 * i)))));
            }
            sum[h] = v;
        }
        const __m512d e = _mm512_set1_pd(double(dx.exps[m]));
        const __m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(sum[0], _mm512_scalef_pd(s_lo, e)));
        const __m256 hi = _mm512_cvtpd_ps(_mm512_mul_pd(sum[1], _mm512_scalef_pd(s_hi, e)));
        __m512 out = _mm512_castpd_ps(
            _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
        if (bias) out = _mm512_add_ps(out, b);
        _mm512_mask_storeu_ps(y + m * ldy + n, mk, out);
    }
}

void epilogue(const DigitX& dx, const WeightView& w, int c, size_t t, size_t n, size_t nc, const float* bias,
              float* y, size_t ldy) {
    alignas(64) int32_t acc[256];
    store_c(c, acc);
    tile_memory_barrier();
    epilogue_acc(dx, w, acc, t, n, nc, bias, y, ldy);
}

// C[2 v + j] += A_j (tmm 4 + j) * B_v (tmm 6 + v) for JB weight tiles and
// XB digit tiles (1 or 2 each).
template <int JB, int XB>
inline void step_jx(Src w0, Src w1, const int8_t* x0, const int8_t* x1) {
    _tile_loadd(4, w0.p, w0.ld);
    _tile_loadd(6, x0, 64);
    _tile_dpbssd(0, 4, 6);
    if constexpr (JB == 2) {
        _tile_loadd(5, w1.p, w1.ld);
        _tile_dpbssd(1, 5, 6);
    }
    if constexpr (XB == 2) {
        _tile_loadd(7, x1, 64);
        _tile_dpbssd(2, 4, 7);
        if constexpr (JB == 2) _tile_dpbssd(3, 5, 7);
    }
}

// Weight tiles per block of a call (256 rows).
constexpr size_t kBlockTiles = 16;

// A weight tile (16 rows): in place, or, for rows past the last multiple of
// 16, a zero-padded copy of whole rows; plus, when K % 64 != 0, a
// zero-padded copy of its last 64-value step.
struct WTile {
    const int8_t* p;  // row 0 of the tile at k = 0
    size_t ld;
    const int8_t* tail;  // the last step's copy, or nullptr
    Src at(size_t s, size_t full) const {
        if (s < full || !tail) return {p + 64 * s, ld};
        return {tail, 64};
    }
};

// Per-thread copies for one block of weight tiles.
struct Copies {
    alignas(64) int8_t tail[kBlockTiles][16 * 64];
    std::vector<int8_t> rows;  // 16 x 64 steps
};

// Weight rows [n, n + 16 nt) (the last tile possibly partial, ending at n1).
void weight_tiles(const WeightView& w, size_t K, size_t n, size_t n1, size_t nt, Copies& cp, WTile* wt) {
    const int8_t* W = static_cast<const int8_t*>(w.data);
    const size_t full = K / 64, kt = K - 64 * full, kp = 64 * ((K + 63) / 64);
    for (size_t j = 0; j < nt; ++j) {
        const size_t nj = n + 16 * j, rj = min_sz(16, n1 - nj);
        if (rj < 16) {
            cp.rows.assign(16 * kp, 0);
            for (size_t i = 0; i < rj; ++i) std::memcpy(cp.rows.data() + i * kp, W + (nj + i) * w.row_bytes, K);
            wt[j] = {cp.rows.data(), kp, nullptr};
            continue;
        }
        wt[j] = {W + nj * w.row_bytes, w.row_bytes, nullptr};
        if (kt) {
            std::memset(cp.tail[j], 0, sizeof cp.tail[j]);
            for (size_t i = 0; i < 16; ++i) std::memcpy(cp.tail[j] + 64 * i, wt[j].p + i * w.row_bytes + 64 * full, kt);
            wt[j].tail = cp.tail[j];
        }
    }
    tile_memory_barrier();
}

// X is one digit tile (M <= 4), one weight tile at a time: its 16 rows
// stream through tmm4/5 while the steps go round the four C tiles (C_s%4,
// summed exactly in int32 at the end), so the products never wait on each
// other and the hardware prefetcher follows 16 rows, not 64.
void block_1x(const DigitX& dx, const WeightView& w, const WTile* wt, size_t nt, size_t n, size_t n1,
              const float* bias, float* y, size_t ldy) {
    const size_t steps = dx.steps(), full = dx.K / 64;
    const int8_t* x0 = static_cast<const int8_t*>(dx.data);
    for (size_t j = 0; j < nt; ++j) {
        for (int c = 0; c < 4; ++c) zero_c(c);
        size_t s = 0;
        for (; s + 4 <= steps; s += 4) {
            Src a0 = wt[j].at(s, full), a1 = wt[j].at(s + 1, full), a2 = wt[j].at(s + 2, full), a3 = wt[j].at(s + 3, full);
            _tile_loadd(4, a0.p, a0.ld);
            _tile_loadd(6, x0 + 1024 * s, 64);
            _tile_dpbssd(0, 4, 6);
            _tile_loadd(5, a1.p, a1.ld);
            _tile_loadd(7, x0 + 1024 * (s + 1), 64);
            _tile_dpbssd(1, 5, 7);
            _tile_loadd(4, a2.p, a2.ld);
            _tile_loadd(6, x0 + 1024 * (s + 2), 64);
            _tile_dpbssd(2, 4, 6);
            _tile_loadd(5, a3.p, a3.ld);
            _tile_loadd(7, x0 + 1024 * (s + 3), 64);
            _tile_dpbssd(3, 5, 7);
        }
        for (; s < steps; ++s) {
            const Src a = wt[j].at(s, full);
            _tile_loadd(4, a.p, a.ld);
            _tile_loadd(6, x0 + 1024 * s, 64);
            _tile_dpbssd(0, 4, 6);
        }
        alignas(64) int32_t acc[4][256];
        store_c(0, acc[0]);
        store_c(1, acc[1]);
        store_c(2, acc[2]);
        store_c(3, acc[3]);
        tile_memory_barrier();
        for (int i = 0; i < 16; ++i) {
            const __m512i v = _mm512_add_epi32(
                _mm512_add_epi32(_mm512_load_si512(acc[0] + 16 * i), _mm512_load_si512(acc[1] + 16 * i)),
                _mm512_add_epi32(_mm512_load_si512(acc[2] + 16 * i), _mm512_load_si512(acc[3] + 16 * i)));
            _mm512_store_si512(acc[0] + 16 * i, v);
        }
        const size_t nj = n + 16 * j;
        epilogue_acc(dx, w, acc[0], 0, nj, min_sz(16, n1 - nj), bias, y, ldy);
    }
}

// Digit tiles t, t + 1 (XB = 2) against weight tiles j, j + 1 (JB = 2).
template <int JB, int XB>
void tile_jx(const DigitX& dx, const WeightView& w, const WTile* wt, size_t j, size_t t, size_t n, size_t n1,
             const float* bias, float* y, size_t ldy) {
    const size_t steps = dx.steps(), full = dx.K / 64;
    const int8_t* x0 = static_cast<const int8_t*>(dx.data) + t * steps * 1024;
    const int8_t* x1 = x0 + steps * 1024;
    for (int c = 0; c < 4; ++c)
        if (c % 2 < JB && c / 2 < XB) zero_c(c);
    for (size_t s = 0; s < steps; ++s)
        step_jx<JB, XB>(wt[j].at(s, full), JB == 2 ? wt[j + 1].at(s, full) : Src{nullptr, 0}, x0 + 1024 * s,
                        x1 + 1024 * s);
    for (int v = 0; v < XB; ++v)
        for (int jj = 0; jj < JB; ++jj) {
            const size_t nj = n + 16 * (j + size_t(jj));
            epilogue(dx, w, 2 * v + jj, t + size_t(v), nj, min_sz(16, n1 - nj), bias, y, ldy);
        }
}

}  // namespace

void gemm_i8x(const DigitX& dx, const WeightView& w, size_t n0, size_t n1, const float* bias, float* y,
              size_t ldy) {
    if (dx.M == 0 || n0 >= n1) return;
    const size_t tiles = dx.tiles();
    thread_local Copies cp;
    WTile wt[kBlockTiles];
    configure_tiles();
    // Blocks of up to 256 weight rows; within a block, X's digit tiles in
    // pairs outside (a pair, 2 KiB per 64 values of k, is read from memory
    // once per block), weight tiles in pairs inside (the block's rows stay
    // in L2 for every pair of X).
    for (size_t n = n0; n < n1; n += 16 * kBlockTiles) {
        const size_t nt = min_sz(kBlockTiles, (n1 - n + 15) / 16);
        weight_tiles(w, dx.K, n, n1, nt, cp, wt);
        if (tiles == 1) {
            block_1x(dx, w, wt, nt, n, n1, bias, y, ldy);
            continue;
        }
        for (size_t t = 0; t < tiles; t += 2) {
            const bool x2 = t + 1 < tiles;
            size_t j = 0;
            for (; j + 2 <= nt; j += 2) {
                if (x2) tile_jx<2, 2>(dx, w, wt, j, t, n, n1, bias, y, ldy);
                else tile_jx<2, 1>(dx, w, wt, j, t, n, n1, bias, y, ldy);
            }
            if (j < nt) {
                if (x2) tile_jx<1, 2>(dx, w, wt, j, t, n, n1, bias, y, ldy);
                else tile_jx<1, 1>(dx, w, wt, j, t, n, n1, bias, y, ldy);
            }
        }
    }
    _tile_release();
}

}  // namespace amx
}  // namespace qk

#endif  // x86-64
