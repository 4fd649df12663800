// AMX-INT8 W4A8 GEMM (the amx table's gemm_w4a8_rows from kW4A8AmxMinM
// rows of X): the same per-output sequence, and so the same bits, as the
// AVX-512 kernels (w4a8_avx512_rows.cpp's header; kernels.h, W4A8Args):
//   acc[0..3] = 0; for each block b of 32 values, in k order:
//     acc[b % 4] = fma((float) D_b, s[n, g] * sx[m, b], acc[b % 4])
//     at the last block of group g: acc[b % 4] = fnma(s[n, g] z'[n, g], tg[m, g], acc[b % 4])
//   y = (acc[0] + acc[1]) + (acc[2] + acc[3]) (+ bias[n])
// with D_b the exact int32 sum over the block of u'[n, k] xq[m, k].
//
// Where the AVX-512 kernel spends 8 vpdpbusd per block and 16 weight rows
// on each row of X, the tiles make D_b for 16 rows of X x 16 weight rows at
// once, and the vector units only do the float steps above (one tile row =
// one row of X over 16 weight rows: the rows kernel's lanes).
//
// Formulation. tdpbsud multiplies signed bytes A[16][16] (rows of X) by
// unsigned bytes B[4][64] holding 4-byte groups of 16 columns:
//   C[m][j] += sum_{r < 4, t < 4} A[m][4 r + t] * B[r][4 j + t]
// A block's even values are 16 contiguous bytes of each activation row
// (the chunked layout: xc + 128 (b / 4) + 16 (b % 4)), its odd values the
// same + 64: two A tiles read IN PLACE (stride ldx). B is the low (even k)
// or high (odd k) nibbles of the block's 16 bytes of 16 weight rows, 4
// bytes per row in each of 4 rows of 64 bytes: one 16 x 16 transpose of
// 32-bit lanes per 64 bytes of the rows, masked and flipped as the AVX-512
// kernel does (u' = u, or nibble ^ 8), into a per-call panel (16 rows x 32
// values = 512 bytes per block). So D_b = A_even B_even + A_odd B_odd,
// exact.
//
// Tiles: tmm0-3 C (16 x 16 int32: two groups of 16 weight rows, double
// buffered: block b's sums are stored, then block b + 1 is queued, so that
// its products can run while the vector units do block b's float steps;
// queueing it before the store measured the same), tmm4-5
// X's even / odd values of a block (16 rows x 16 bytes), tmm6-7 the
// weights' even / odd codes (4 rows x 64 bytes). Loop order per call: for
// each 32 weight rows, the panel once, then every 16 rows of X over it (X
// in L2, the panel in L1 or L2); the four float chains of the 16 x 32
// outputs live in an 8 KiB array.
//
// Cost. Every block's sums must leave the tiles for their float steps: two
// 1 KiB tile stores per block of 16 x 32 outputs, which alone cost ~100
// cycles on a Sapphire Rapids-class core (a tile-only loop: 166 cycles a
// block with the stores, 68 without), against 4 products of 16 x 16 x 16.
// Then the float steps (a convert, a multiply and an fma per 16 outputs
// per block, the chains' loads and stores). 128 x 2048 x 768, one thread:
// ~1.05-1.2 ms against 1.44 for the AVX-512 rows kernel; 4096 x 4096 at
// M = 128 10.7 against 15.8 ms. Measured and slower (1.13-1.47 and 1.5-1.65
// ms): each row's chains in registers over chunks of 4 blocks (the tiles
// running a chunk ahead), and all of a row block's sums stored first, then
// each row's float steps over them.
#if defined(__x86_64__) || defined(_M_X64)

#include "gcc_avx512_warnings.h"
#include "w4a8_amx.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "../isa.h"
#include "amx_tiles.h"
#include "avx512_prefetch.h"
#include "avx512_transpose.h"
#include "w4a8_avx512_rows.h"
#include "w4a8_avx512_scales.h"

namespace qk {
namespace amx {

namespace {

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

struct alignas(64) Line {
    uint8_t b[64];
};

// tmm0-3: 16 x 64 bytes; tmm4-5: 16 x 16; tmm6-7: 4 x 64.
void configure() {
    TileConfig c;
    std::memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; ++t) {
        c.colsb[t] = t >= 4 && t < 6 ? 16 : 64;
        c.rows[t] = t >= 6 ? 4 : 16;
    }
    tile_memory_barrier();
    _tile_loadconfig(&c);
}

// The panel of weight rows [n, n + nr) (nr <= 16; the rest zero): block b
// at panel[8 b .. 8 b + 7], lines t < 4 the low nibbles of piece t (bytes
// 16 (b % 4) + 4 t .. + 3 of each row's chunk b / 4, lane j = row n + j),
// lines 4 + t the high nibbles, each u' (symmetric: nibble ^ 8). The rows
// of the next 32 are prefetched meanwhile.
void fill_panel(const W4A8Args& a, size_t n, size_t nr, __m512i* panel) {
    const size_t rb = a.w.row_bytes, nb = a.K / 32;
    const __m512i low = _mm512_set1_epi8(0x0F);
    const __m512i flip = _mm512_set1_epi8(a.w.zps ? 0 : char(0x88));
    const avx512::NextTile next(a.w.data, rb, n, a.N, 32);
    for (size_t c = 0; c < (a.K + 127) / 128; ++c) {
        next.slice(c, 1024);
        // bytes of each row from this chunk on (of the K values, not of the
        // row stride, as in the AVX-512 kernel)
        const size_t left = a.K / 2 - 64 * c;
        const __mmask64 mk = left >= 64 ? ~__mmask64(0) : (__mmask64(1) << left) - 1;
        const uint8_t* base = static_cast<const uint8_t*>(a.w.data) + n * rb + 64 * c;
        __m512i r[16];
        for (size_t j = 0; j < 16; ++j) r[j] = j < nr ? _mm512_maskz_loadu_epi8(mk, base + j * rb) : _mm512_setzero_si512();
        avx512::transpose16(r);  // r[4 q + t] lane j = piece t of block 4 c + q of row n + j
        const size_t nq = min_sz(4, nb - 4 * c);
        for (size_t q = 0; q < nq; ++q)
            for (size_t t = 0; t < 4; ++t) {
                const __m512i v = r[4 * q + t];
                __m512i* o = panel + 8 * (4 * c + q);
                // (v ^ flip) & 0x0F in one ternary-logic op (0x28: (A ^ B) & C)
                _mm512_store_si512(o + t, _mm512_ternarylogic_epi32(v, flip, low, 0x28));
                _mm512_store_si512(o + 4 + t, _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 4), flip, low, 0x28));
            }
    }
}

// Zeroes C tiles C0 (and C1 with NT = 2) and adds block b's products: X
// rows at x (stride ldx) against the panels p0 (and p1). (GCC's tile
// intrinsics take the tile numbers as literals: hence the macro.)
#define QK_W4A8_ISSUE(C0, C1)                                           \
    do {                                                                \
        const int8_t* xb = x + 128 * (b / 4) + 16 * (b % 4);            \
        _tile_zero(C0);                                                 \
        if constexpr (NT == 2) _tile_zero(C1);                          \
        _tile_loadd(4, xb, ldx);                                        \
        _tile_loadd(5, xb + 64, ldx);                                   \
        _tile_loadd(6, p0 + 8 * b, 64);                                 \
        _tile_dpbsud(C0, 4, 6);                                         \
        _tile_loadd(7, p0 + 8 * b + 4, 64);                             \
        _tile_dpbsud(C0, 5, 7);                                         \
        if constexpr (NT == 2) {                                        \
            _tile_loadd(6, p1 + 8 * b, 64);                             \
            _tile_dpbsud(C1, 4, 6);                                     \
            _tile_loadd(7, p1 + 8 * b + 4, 64);                         \
            _tile_dpbsud(C1, 5, 7);                                     \
        }                                                               \
    } while (0)

template <int P, int NT>
inline void issue(const int8_t* x, size_t ldx, size_t b, const __m512i* p0, const __m512i* p1) {
    if constexpr (P == 0) QK_W4A8_ISSUE(0, 1);
    else QK_W4A8_ISSUE(2, 3);
}
#undef QK_W4A8_ISSUE

template <int P, int NT>
inline void store_pair(int32_t (*c)[256]) {
    if constexpr (P == 0) {
        _tile_stored(0, c[0], 64);
        if constexpr (NT == 2) _tile_stored(1, c[1], 64);
    } else {
        _tile_stored(2, c[0], 64);
        if constexpr (NT == 2) _tile_stored(3, c[1], 64);
    }
}

// The float state of 16 rows of X x up to 32 weight rows.
struct Acc {
    // [row of X][weight tile][chain][lane]: the two weight tiles' chains
    // 1 KiB apart, not 4 KiB (a store and a load 4 KiB apart can look
    // dependent to the CPU; the measured difference was within noise)
    alignas(64) float v[16][2][4][16];
};

// Rows of the block scales and group sums of 16 rows of X.
struct XRows {
    const float* sx[16];
    const float* tg[16];
};

// One block's float steps for `rows` rows of X and NT weight tiles. A
// chain's first block (b < 4) starts it: fma(d, s, +0), the AVX-512
// kernel's first step from its zeroed accumulators, without the load.
template <int NT, bool FIRST>
inline void block_floats(const int32_t (*c)[256], const float* const* sw, const float* const* sz, const XRows& xr,
                         size_t rows, size_t b, size_t bpg, Acc& acc) {
    const size_t g = b / bpg, q = b % 4;
    const bool last = b % bpg == bpg - 1;
    __m512 swg[NT], szg[NT];
    for (int j = 0; j < NT; ++j) {
        swg[j] = _mm512_load_ps(sw[j] + 16 * g);
        szg[j] = _mm512_load_ps(sz[j] + 16 * g);
    }
    for (size_t i = 0; i < rows; ++i) {
        const __m512 sxb = _mm512_set1_ps(xr.sx[i][b]);
        const __m512 tgg = _mm512_set1_ps(last ? xr.tg[i][g] : 0.0f);
        for (int j = 0; j < NT; ++j) {
            float* ac = acc.v[i][j][q];
            const __m512 d = _mm512_cvtepi32_ps(_mm512_load_si512(c[j] + 16 * i));
            __m512 v = _mm512_fmadd_ps(d, _mm512_mul_ps(swg[j], sxb), FIRST ? _mm512_setzero_ps() : _mm512_load_ps(ac));
            if (last) v = _mm512_fnmadd_ps(szg[j], tgg, v);
            _mm512_store_ps(ac, v);
        }
    }
}

// 16 rows of X (rows of them real, from m0; X read at x, stride ldx) over
// the panels of NT weight tiles.
template <int NT>
void rows_block(const W4A8Args& a, const int8_t* x, size_t ldx, const __m512i* const* panel, const float* const* sw,
                const float* const* sz, size_t m0, size_t rows, size_t n, const size_t* nr, Acc& acc) {
    const size_t nb = a.K / 32, bpg = a.w.group / 32;
    XRows xr;
    for (size_t i = 0; i < rows; ++i) {
        xr.sx[i] = a.sx + (m0 + i) * a.ldsx;
        xr.tg[i] = a.tg + (m0 + i) * a.ldtg;
    }
    // chains no block starts (K < 128) stay at zero
    for (int j = 0; j < NT; ++j)
        for (size_t i = 0; i < rows; ++i)
            for (size_t q = nb; q < 4; ++q) _mm512_store_ps(acc.v[i][j][q], _mm512_setzero_ps());
    alignas(64) int32_t c[2][256];
    // The output lines of these rows (NT lines each), fetched for writing a
    // row per block while the blocks run, so the last stores find them in
    // cache.
    const char* yl = reinterpret_cast<const char*>(a.y + m0 * a.ldy + n);
    issue<0, NT>(x, ldx, 0, panel[0], panel[1]);
    for (size_t b = 0; b < nb; ++b) {
        if (b < rows)
            for (int j = 0; j < NT; ++j) prefetch_for_write(yl + 4 * b * a.ldy + 64 * j);
        // The tile unit runs in order: block b's sums are stored first, then
        // block b + 1 is queued, and its products run while the vector units
        // do block b's float steps.
        if (b % 2 == 0) {
            store_pair<0, NT>(c);
            if (b + 1 < nb) issue<1, NT>(x, ldx, b + 1, panel[0], panel[1]);
        } else {
            store_pair<1, NT>(c);
            if (b + 1 < nb) issue<0, NT>(x, ldx, b + 1, panel[0], panel[1]);
        }
        tile_memory_barrier();
        if (b < 4) block_floats<NT, true>(c, sw, sz, xr, rows, b, bpg, acc);
        else block_floats<NT, false>(c, sw, sz, xr, rows, b, bpg, acc);
    }
    for (int j = 0; j < NT; ++j) {
        const __mmask16 mk = nr[j] >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr[j]) - 1);
        const size_t nj = n + 16 * size_t(j);
        const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mk, a.bias + nj) : _mm512_setzero_ps();
        for (size_t i = 0; i < rows; ++i) {
            const float(*ac)[16] = acc.v[i][j];
            const __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(ac[0]), _mm512_load_ps(ac[1])),
                                             _mm512_add_ps(_mm512_load_ps(ac[2]), _mm512_load_ps(ac[3])));
            _mm512_mask_storeu_ps(a.y + (m0 + i) * a.ldy + nj, mk, a.bias ? _mm512_add_ps(sum, bias) : sum);
        }
    }
}

template <typename S>
void run(const W4A8Args& a, const S* scales, size_t n0, size_t n1) {
    const size_t K = a.K, nb = K / 32, ng = K / a.w.group, gs = scale_stride(a.w, K);
    // Per-thread scratch of 64-byte lines, grown to the largest call seen:
    // per weight tile s and s z' (a line per group) and its panel (8 lines
    // per block); 16 rows of X for a last partial block of rows.
    const size_t xlines = 16 * a.ldx / 64 + 1;
    const size_t lines = 2 * (2 * ng + 8 * nb) + xlines;
    thread_local std::vector<Line> scratch;
    thread_local Acc acc;
    if (scratch.size() < lines) scratch.resize(lines);
    float* sw[2];
    float* sz[2];
    __m512i* panel[2];
    Line* at = scratch.data();
    for (int j = 0; j < 2; ++j) {
        sw[j] = reinterpret_cast<float*>(at);
        sz[j] = reinterpret_cast<float*>(at + ng);
        panel[j] = reinterpret_cast<__m512i*>(at + 2 * ng);
        at += 2 * ng + 8 * nb;
    }
    int8_t* xt = reinterpret_cast<int8_t*>(at);
    configure();
    for (size_t n = n0; n < n1; n += 32) {
        const size_t nr[2] = {min_sz(16, n1 - n), n1 - n > 16 ? min_sz(16, n1 - n - 16) : 0};
        const int nt = nr[1] ? 2 : 1;
        for (int j = 0; j < nt; ++j) {
            avx512::fill_scales(a, scales, n + 16 * size_t(j), nr[j], ng, gs, sw[j], sz[j]);
            fill_panel(a, n + 16 * size_t(j), nr[j], panel[j]);
        }
        tile_memory_barrier();
        for (size_t m0 = 0; m0 < a.M; m0 += 16) {
            const size_t rows = min_sz(16, a.M - m0);
            const int8_t* x = a.xc + m0 * a.ldx;
            if (rows < 16) {  // a last partial block of rows: zero rows after it
                std::memcpy(xt, x, rows * a.ldx);
                std::memset(xt + rows * a.ldx, 0, (16 - rows) * a.ldx);
                x = xt;
                tile_memory_barrier();
            }
            if (nt == 2) rows_block<2>(a, x, a.ldx, panel, sw, sz, m0, rows, n, nr, acc);
            else rows_block<1>(a, x, a.ldx, panel, sw, sz, m0, rows, n, nr, acc);
        }
    }
    _tile_release();
}

}  // namespace

void gemm_w4a8_rows(const W4A8Args& a, size_t n0, size_t n1) {
    const size_t G = a.w.group;
    // the AVX-512 kernels' cases (w4a8_avx512_rows.cpp): others take the reference there
    if (a.M < kW4A8AmxMinM || a.K % G != 0 || !(G == 32 || G == 64 || G % 128 == 0) || n0 >= n1)
        return avx512::gemm_w4a8_rows(a, n0, n1);
    if (a.w.scales16) run(a, a.w.scales16, n0, n1);
    else run(a, a.w.scales, n0, n1);
}

}  // namespace amx
}  // namespace qk

#endif  // x86-64
