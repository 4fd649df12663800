// AMX-BF16 panel GEMM for int8 and int4 weights (Kernels::dq_split_x and
// gemm_panel_dq of the amx table): for
// m < mc, j < nr,
//   Y[m, j] (accumulate ? += : =) sum_{k < kc} X[m0 + m, k0 + k] * P[j, k]
// with X the f32 activations and P the decoded f32 panel (dequant_panel).
//
// Precision (the "bf16x3" form of an f32 product on bf16 units): each f32
// value v is written as two bf16, v = hi + lo + e with hi = bf16(v),
// lo = bf16(v - hi) (v - hi is exact), |e| <= 2^-16 |v|, and the product as
// p_hi x_hi + p_hi x_lo + p_lo x_hi (each exact in f32; p_lo x_lo, <= 2^-16
// |x p|, is dropped), summed in f32 by tdpbf16ps. A product is thus within
// ~3 * 2^-16 of exact (kernels.h states the bound the tests check), against
// 2^-24 for an f32 FMA: two orders of magnitude below the weights' own
// rounding (int8 per channel 2^-8 of the row's range), and far above W8A8's
// 8-bit activations. Float weights (f32, f16, bf16) never come here.
//
// Operands (bf16 words), each tile one contiguous KiB:
//   A = 16 weight rows x 32 values of k: the panel split per call into a
//       per-thread buffer, row-major within the tile (no transpose).
//   B = 16 pairs of k x 16 rows of X: row q holds (X[m, 32 s + 2 q],
//       X[m, 32 s + 2 q + 1]) for the 16 rows m, tdpbf16ps's pair layout
//       (a 16 x 16 transpose of 32-bit pairs), made by dq_split_x once per
//       GEMM call for every task (layout on SplitX, kernels.h).
// So C[j][m] is transposed against Y; the epilogue transposes each 16 x 16
// tile once per call (M nr / 256 transposes, against nr kc / 256 if the
// panel were the transposed operand, and X's are shared by all tasks).
// Zero padding (rows past M or nr, k past kc) adds +0 products only.
//
// Tiles (all 8 as 16 rows x 64 bytes): C in tmm0-3 (2 blocks of 16 weight
// rows x 2 blocks of 16 rows of X), A in tmm4-5, B in tmm6-7. Per 32 values
// of k: P_hi X_hi, then P_hi X_lo (new B tiles only), then P_lo X_hi: 10
// tile loads for 12 tdpbf16ps. C starts from 0; the epilogue writes it to
// Y, or adds it to Y when accumulating (as gemm_panel_f32 does: the
// block's sum, then Y + sum).
//
// Row invariance: each Y[m, j] is its own chain of tdpbf16ps steps over
// the k lines, the same whatever the other rows of the tile (other rows of
// X, or zeros), so a row's result does not depend on M, m0 or mc (the
// driver's invariant_panel mode relies on it; tested in test_gemm).
//
// Non-finite values: an infinite x or p has hi = the largest finite bf16
// and lo = the infinity, so products keep the f32 sign and infinity; a NaN
// gives a NaN lo. Finite values above the largest bf16 are split the same
// way (hi saturates, lo holds the rest), so nothing overflows early.
#if defined(__x86_64__) || defined(_M_X64)

#include "gcc_avx512_warnings.h"
#include "gemm_amx_bf16.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "../isa.h"
#include "amx_tiles.h"
#include "avx512_transpose.h"

namespace qk {
namespace amx {

namespace {

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

// One 64-byte line: 32 bf16 words.
struct alignas(64) Line {
    uint16_t w[32];
};

// 16 bf16 words (one half of a line) widened to f32, exactly.
inline __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

inline __m512i as_si(__m512bh v) {
    __m512i r;
    std::memcpy(&r, &v, sizeof r);
    return r;
}

// 32 floats (a: values 0-15, b: 16-31) as hi and lo bf16 lines (word i =
// value i). hi rounds the value clamped to the largest finite bf16 (a NaN
// clamps to it too; its lo is then NaN), lo rounds the exact remainder.
inline void split32(__m512 a, __m512 b, __m512i& hi, __m512i& lo) {
    const __m512 big = _mm512_castsi512_ps(_mm512_set1_epi32(0x7F7F0000));  // largest finite bf16
    const __m512 nbig = _mm512_castsi512_ps(_mm512_set1_epi32(int(0xFF7F0000u)));
    const __m512 ca = _mm512_min_ps(_mm512_max_ps(a, nbig), big);
    const __m512 cb = _mm512_min_ps(_mm512_max_ps(b, nbig), big);
    hi = as_si(_mm512_cvtne2ps_pbh(cb, ca));
    const __m512 ra = _mm512_sub_ps(a, widen(_mm512_castsi512_si256(hi)));
    const __m512 rb = _mm512_sub_ps(b, widen(_mm512_extracti64x4_epi64(hi, 1)));
    lo = as_si(_mm512_cvtne2ps_pbh(rb, ra));
}

// Loads values [32 s, 32 s + 32) of a row of kc values (zeros past kc).
inline void load32(const float* row, size_t s, size_t kc, __m512& a, __m512& b) {
    const size_t k0 = 32 * s;
    const size_t left = kc - k0;  // >= 1
    if (left >= 32) {
        a = _mm512_loadu_ps(row + k0);
        b = _mm512_loadu_ps(row + k0 + 16);
        return;
    }
    const __mmask16 ma = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __mmask16 mb = left > 16 ? __mmask16((1u << (left - 16)) - 1) : __mmask16(0);
    a = _mm512_maskz_loadu_ps(ma, row + k0);
    b = _mm512_maskz_loadu_ps(mb, row + k0 + 16);
}

// Rows [r0, r0 + 16) of a matrix with `rows` rows of kc values (stride ld),
// line s of k, split: h[i], l[i] = row r0 + i (zeros past `rows`).
inline void split_rows16(const float* v, size_t ld, size_t rows, size_t r0, size_t s, size_t kc, __m512i (&h)[16],
                         __m512i (&l)[16]) {
    for (size_t i = 0; i < 16; ++i) {
        if (r0 + i >= rows) {
            h[i] = l[i] = _mm512_setzero_si512();
            continue;
        }
        __m512 a, b;
        load32(v + (r0 + i) * ld, s, kc, a, b);
        split32(a, b, h[i], l[i]);
    }
}

// The per-thread split panel of one call: weight block jb (16 rows), line s
// of k: tile [(jb * ks + s) * 16, + 16) of ph (hi) and pl (lo), row i =
// weight row 16 jb + i.
struct PackedP {
    std::vector<Line> ph, pl;
    size_t ks = 0;  // lines of k
};

void pack_p(const float* p, size_t ldp, size_t nr, size_t jblocks, size_t kc, PackedP& pk) {
    const size_t ks = pk.ks;
    for (size_t jb = 0; jb < jblocks; ++jb) {
        for (size_t s = 0; s < ks; ++s) {
            __m512i h[16], l[16];
            split_rows16(p, ldp, nr, 16 * jb, s, kc, h, l);
            Line* th = pk.ph.data() + (jb * ks + s) * 16;
            Line* tl = pk.pl.data() + (jb * ks + s) * 16;
            for (size_t i = 0; i < 16; ++i) {
                _mm512_store_si512(th + i, h[i]);
                _mm512_store_si512(tl + i, l[i]);
            }
        }
    }
}

// The codes of symmetric int8 weight rows [n0, n0 + nr), values [k0, k0 +
// kc), as bf16 (exact: |q| <= 127 < 2^8) in ph's tiles (layout of PackedP).
void pack_codes(const WeightView& w, size_t n0, size_t nr, size_t jblocks, size_t k0, size_t kc, PackedP& pk) {
    const size_t ks = pk.ks;
    for (size_t jb = 0; jb < jblocks; ++jb) {
        for (size_t s = 0; s < ks; ++s) {
            const size_t left = kc - 32 * s;
            const __mmask32 mk = left >= 32 ? ~__mmask32(0) : __mmask32((1u << left) - 1);
            Line* th = pk.ph.data() + (jb * ks + s) * 16;
            for (size_t i = 0; i < 16; ++i) {
                const size_t j = 16 * jb + i;
                __m512i v = _mm512_setzero_si512();
                if (j < nr) {
                    const int8_t* row = static_cast<const int8_t*>(w.data) + (n0 + j) * w.row_bytes + k0 + 32 * s;
                    const __m256i q = _mm256_maskz_loadu_epi8(mk, row);
                    const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
                    const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)));
                    v = as_si(_mm512_cvtne2ps_pbh(hi, lo));
                }
                _mm512_store_si512(th + i, v);
            }
        }
    }
}

// The 16 values an int4 code of a group stands for, (q - z) * s (on the
// two's-complement nibbles of symmetric weights, nibble ^ 8 - 8 = q), each
// multiplied exactly as dequant_panel does; split32 of two groups' values
// gives their tables (bf16 hi and lo parts, words 0-15 and 16-31).
inline __m512 i4_values(float s, int z, bool sym) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 signed_q = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
    const __m512 q = sym ? signed_q : _mm512_sub_ps(iota, _mm512_set1_ps(float(z)));
    return _mm512_mul_ps(q, _mm512_set1_ps(s));
}

// int4 weight rows [n0, n0 + nr), values [k0, k0 + kc) (k0 a multiple of
// 32, G too, so a line of 32 values lies in one group; gs: scale entries per
// row), straight into split A tiles (layout of PackedP): per line, the 32
// nibbles as word indices in k order look up the group's tables (built two
// groups at a time). The tiles equal pack_p of dequant_panel's
// panel bit for bit, without the f32 panel's write and read.
void pack_i4(const WeightView& w, size_t gs, size_t n0, size_t nr, size_t jblocks, size_t k0, size_t kc,
             PackedP& pk) {
    const size_t ks = pk.ks, G = w.group;
    const bool sym = w.zps == nullptr;
    const uint8_t* zps = static_cast<const uint8_t*>(w.zps);
    // word 2 i + e of a line holds byte i; shift the high nibble (e = 1) down
    const __m512i shifts = _mm512_set1_epi32(0x00040000);
    const __m512i low4 = _mm512_set1_epi16(0x0F);
    for (size_t jb = 0; jb < jblocks; ++jb) {
        for (size_t i = 0; i < 16; ++i) {
            const size_t j = 16 * jb + i;
            Line* th = pk.ph.data() + jb * ks * 16 + i;
            Line* tl = pk.pl.data() + jb * ks * 16 + i;
            if (j >= nr) {
                for (size_t s = 0; s < ks; ++s) {
                    _mm512_store_si512(th + 16 * s, _mm512_setzero_si512());
                    _mm512_store_si512(tl + 16 * s, _mm512_setzero_si512());
                }
                continue;
            }
            const size_t n = n0 + j;
            const uint8_t* row = static_cast<const uint8_t*>(w.data) + n * w.row_bytes;
            // the tables of groups g_cur (words 0-15) and g_cur + 1 (16-31)
            size_t g_cur = 0;
            bool have = false;
            __m512i tab_h = _mm512_setzero_si512(), tab_l = _mm512_setzero_si512();
            const size_t g_end = (k0 + kc + G - 1) / G;  // groups this block touches end here
            for (size_t s = 0; s < ks; ++s) {
                const size_t kk = k0 + 32 * s, left = kc - 32 * s;
                const size_t g = kk / G;
                if (!have || (g != g_cur && g != g_cur + 1)) {
                    have = true;
                    g_cur = g;
                    const size_t i0 = n * gs + g;
                    const __m512 va = i4_values(w.scales[i0], sym ? 8 : int(zps[i0]), sym);
                    const __m512 vb = g + 1 < g_end ? i4_values(w.scales[i0 + 1], sym ? 8 : int(zps[i0 + 1]), sym)
                                                    : _mm512_setzero_ps();
                    split32(va, vb, tab_h, tab_l);
                }
                const __m512i sel = _mm512_set1_epi16(short(g == g_cur ? 0 : 16));
                const __mmask32 wm = left >= 32 ? ~__mmask32(0) : __mmask32((1u << left) - 1);
                const __m128i b = _mm_maskz_loadu_epi8(__mmask16(left >= 32 ? 0xFFFF : (1u << ((left + 1) / 2)) - 1),
                                                       row + kk / 2);
                const __m256i dup = _mm256_set_m128i(_mm_unpackhi_epi8(b, b), _mm_unpacklo_epi8(b, b));
                const __m512i idx = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srlv_epi16(_mm512_cvtepu8_epi16(dup), shifts), low4), sel);
                _mm512_store_si512(th + 16 * s, _mm512_maskz_permutexvar_epi16(wm, idx, tab_h));
                _mm512_store_si512(tl + 16 * s, _mm512_maskz_permutexvar_epi16(wm, idx, tab_l));
            }
        }
    }
}

// The products of one operand pair: C[2 v + u] += A_v (tmm 4 + v) * B_u (tmm 6 + u).
template <int JB, int XB>
inline void dp_all() {
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (XB == 2) _tile_dpbf16ps(1, 4, 7);
    if constexpr (JB == 2) _tile_dpbf16ps(2, 5, 6);
    if constexpr (JB == 2 && XB == 2) _tile_dpbf16ps(3, 5, 7);
}

// Weight rows [16 jb, 16 jb + 16 JB) x row blocks [xb, xb + XB) of X (xh,
// xl: the call's first row block at its first line of k; xstride lines
// between row blocks). Rows of X past mc (other rows, or zeros) are
// computed and not stored.
// SPLIT_P: the panel was split (3 products per k); otherwise A holds exact
// int8 codes (2 products, x_hi and x_lo) and each column j of the result is
// scaled by rs[16 jb + j] in the epilogue.
template <int JB, int XB, bool SPLIT_P>
void tile(const Line* xh, const Line* xl, size_t xstride, const PackedP& pk, size_t jb, size_t xb, size_t mc,
          size_t nr, const float* rs, float* y, size_t ldy, bool accumulate) {
    const size_t ks = pk.ks;
    for (int t = 0; t < 4; ++t)
        if (t / 2 < JB && t % 2 < XB) zero_c(t);
    const Line* xh0 = xh + xb * xstride;
    const Line* xl0 = xl + xb * xstride;
    const Line* xh1 = xh0 + xstride;
    const Line* xl1 = xl0 + xstride;
    const Line* ph0 = pk.ph.data() + jb * ks * 16;
    const Line* pl0 = pk.pl.data() + jb * ks * 16;
    const Line* ph1 = ph0 + ks * 16;
    const Line* pl1 = pl0 + ks * 16;
    for (size_t s = 0; s < ks; ++s) {
        const size_t o = 16 * s;
        _tile_loadd(4, ph0 + o, 64);
        if constexpr (JB == 2) _tile_loadd(5, ph1 + o, 64);
        _tile_loadd(6, xh0 + o, 64);
        if constexpr (XB == 2) _tile_loadd(7, xh1 + o, 64);
        dp_all<JB, XB>();  // p_hi x_hi
        _tile_loadd(6, xl0 + o, 64);
        if constexpr (XB == 2) _tile_loadd(7, xl1 + o, 64);
        dp_all<JB, XB>();  // p_hi x_lo
        if constexpr (!SPLIT_P) continue;
        _tile_loadd(4, pl0 + o, 64);
        if constexpr (JB == 2) _tile_loadd(5, pl1 + o, 64);
        _tile_loadd(6, xh0 + o, 64);
        if constexpr (XB == 2) _tile_loadd(7, xh1 + o, 64);
        dp_all<JB, XB>();  // p_lo x_hi
    }
    alignas(64) float cbuf[256];
    for (int v = 0; v < JB; ++v) {
        for (int u = 0; u < XB; ++u) {
            const size_t n0 = 16 * (jb + v), m0 = 16 * (xb + u);
            const size_t nc = n0 < nr ? min_sz(16, nr - n0) : 0, mr = m0 < mc ? min_sz(16, mc - m0) : 0;
            if (!mr || !nc) continue;
            store_c(2 * v + u, cbuf);
            tile_memory_barrier();
            __m512 r[16];  // r[j] lane m = C[j][m]; after the transpose r[m] lane j
            for (int j = 0; j < 16; ++j) r[j] = _mm512_load_ps(cbuf + 16 * j);
            avx512::transpose16(r);
            const __mmask16 mk = __mmask16((1u << nc) - 1);
            const __m512 sc = SPLIT_P ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mk, rs + n0);
            for (size_t m = 0; m < mr; ++m) {
                float* yr = y + (m0 + m) * ldy + n0;
                const __m512 t = SPLIT_P ? r[m] : _mm512_mul_ps(r[m], sc);
                const __m512 c = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(mk, yr), t) : t;
                _mm512_mask_storeu_ps(yr, mk, c);
            }
        }
    }
}

}  // namespace

void dq_split_x(const float* x, size_t ldx, size_t M, size_t K, const SplitX& xs, size_t b0, size_t b1) {
    const size_t lines = xs.lines(), blocks = xs.rows() / 16;
    Line* hi = static_cast<Line*>(xs.data);
    Line* lo = hi + blocks * lines * 16;
    for (size_t xb = b0; xb < b1 && xb < blocks; ++xb) {
        for (size_t s = 0; s < lines; ++s) {
            __m512i h[16], l[16];
            split_rows16(x, ldx, M, 16 * xb, s, K, h, l);
            // h[m] 32-bit lane q = the pair (2 q, 2 q + 1) of row m; the B
            // tile wants row q = that pair for the 16 rows.
            avx512::transpose16(h);
            avx512::transpose16(l);
            Line* th = hi + (xb * lines + s) * 16;
            Line* tl = lo + (xb * lines + s) * 16;
            for (size_t q = 0; q < 16; ++q) {
                _mm512_store_si512(th + q, h[q]);
                _mm512_store_si512(tl + q, l[q]);
            }
        }
    }
}

namespace {

// Every tile of the call: weight blocks in pairs outside (their tiles stay
// in cache for every row block of X), row blocks of X in pairs inside.
template <bool SPLIT_P>
void run_tiles(const SplitX& xs, size_t m0, size_t mc, size_t k0, const PackedP& pk, size_t nr, const float* rs,
               float* y, size_t ldy, bool accumulate) {
    const size_t jblocks = (nr + 15) / 16, xblocks = (mc + 15) / 16;
    const size_t lines = xs.lines(), xstride = 16 * lines;
    const Line* xh = static_cast<const Line*>(xs.data) + (m0 / 16) * xstride + 16 * (k0 / 32);
    const Line* xl = xh + (xs.rows() / 16) * xstride;
    tile_memory_barrier();
    configure_tiles();
    for (size_t jb = 0; jb < jblocks; jb += 2) {
        const bool j2 = jb + 1 < jblocks;
        for (size_t xb = 0; xb < xblocks; xb += 2) {
            const bool x2 = xb + 1 < xblocks;
            if (j2 && x2) tile<2, 2, SPLIT_P>(xh, xl, xstride, pk, jb, xb, mc, nr, rs, y, ldy, accumulate);
            else if (j2) tile<2, 1, SPLIT_P>(xh, xl, xstride, pk, jb, xb, mc, nr, rs, y, ldy, accumulate);
            else if (x2) tile<1, 2, SPLIT_P>(xh, xl, xstride, pk, jb, xb, mc, nr, rs, y, ldy, accumulate);
            else tile<1, 1, SPLIT_P>(xh, xl, xstride, pk, jb, xb, mc, nr, rs, y, ldy, accumulate);
        }
    }
    _tile_release();
}

// The per-thread panel buffers, sized for nr rows and kc values.
PackedP& packed_for(size_t nr, size_t kc, bool lo) {
    thread_local PackedP pk;
    pk.ks = (kc + 31) / 32;
    const size_t plines = 16 * ((nr + 15) / 16) * pk.ks;
    if (pk.ph.size() < plines) pk.ph.resize(plines);
    if (lo && pk.pl.size() < plines) pk.pl.resize(plines);
    return pk;
}

bool empty_call(size_t mc, size_t nr, size_t kc, float* y, size_t ldy, bool accumulate) {
    if (mc == 0 || nr == 0) return true;
    if (kc != 0) return false;
    if (!accumulate)
        for (size_t m = 0; m < mc; ++m) std::memset(y + m * ldy, 0, nr * sizeof(float));
    return true;
}

}  // namespace

void gemm_panel_dq(const SplitX& xs, size_t m0, size_t mc, size_t k0, const float* p, size_t ldp, size_t nr,
                   size_t kc, float* y, size_t ldy, bool accumulate) {
    if (empty_call(mc, nr, kc, y, ldy, accumulate)) return;
    PackedP& pk = packed_for(nr, kc, true);
    pack_p(p, ldp, nr, (nr + 15) / 16, kc, pk);
    run_tiles<true>(xs, m0, mc, k0, pk, nr, nullptr, y, ldy, accumulate);
}

void gemm_panel_dq_i4(const SplitX& xs, size_t m0, size_t mc, size_t k0, const WeightView& w, size_t gs, size_t n0,
                      size_t nr, size_t kc, float* y, size_t ldy, bool accumulate) {
    if (empty_call(mc, nr, kc, y, ldy, accumulate)) return;
    PackedP& pk = packed_for(nr, kc, true);
    pack_i4(w, gs, n0, nr, (nr + 15) / 16, k0, kc, pk);
    run_tiles<true>(xs, m0, mc, k0, pk, nr, nullptr, y, ldy, accumulate);
}

void gemm_panel_dq_i8(const SplitX& xs, size_t m0, size_t mc, size_t k0, const WeightView& w, size_t n0, size_t nr,
                      size_t kc, float* y, size_t ldy, bool accumulate) {
    if (empty_call(mc, nr, kc, y, ldy, accumulate)) return;
    PackedP& pk = packed_for(nr, kc, false);
    pack_codes(w, n0, nr, (nr + 15) / 16, k0, kc, pk);
    run_tiles<false>(xs, m0, mc, k0, pk, nr, w.scales + n0, y, ldy, accumulate);
}

}  // namespace amx
}  // namespace qk

#endif  // x86-64
