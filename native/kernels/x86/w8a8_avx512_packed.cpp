// AVX-512 VNNI W8A8 int8 GEMM over packed activations (M >= 7: prefill, batched decode),
// bit-exact with qk::ref::gemm_w8a8 (w8a8_ref.cpp, the spec).
//
// Outer product with the vector lanes over rows of X. vpdpbusd takes the
// unsigned operand from a register and the signed one from anywhere, so:
//   - the biased activation codes (unsigned) come from the packed layout
//     (W8A8Args::ap): one zmm = 16 rows x 4 consecutive k;
//   - the weight codes (signed) are read IN PLACE from the row-major B[N, K]:
//     4 bytes of one weight row, broadcast to the 16 lanes (vpbroadcastd,
//     a load-port uop).
// A tile of MV blocks of 16 rows x NR weight rows keeps MV * NR zmm
// accumulators, lane i of c[v][j] being the sum for row 16 (b + v) + i and
// column n0 + j. Per 4 values of k: MV loads, NR broadcasts, MV * NR
// vpdpbusd, no horizontal sums (vs the inner-product kernel's 24 vpdpbusd
// per 10 full-width loads and a shuffle tree per output). Tiles: 2 x 12
// (24 accumulators) for two or more blocks, 1 x 16 for a single block
// (GCC 12 keeps both in registers; 1 x 20 and up spill), narrower when the
// weight rows alias in L1 (see gemm_w8a8_packed).
//
// The +128 bias compensation is as in w8a8_avx512.cpp: packed rows and
// columns past M and K are 0, which adds nothing, and the subtraction of
// 128 * rowsum is exact modulo 2^32. The K % 4 tail reads the last 1..3
// weight bytes of each row through a zero-extended copy (a 4-byte load could
// run past the end of B). The epilogue does the ref's float sequence with
// the lanes over rows, transposed into rows of Y by 16 x 16 shuffles
// (avx512_transpose.h). The activations are packed by this file's
// w8a8_pack_a (the same transpose, on 4-byte groups).
//
// Loop order per call ([n0, n1) = one task of the driver): for each NR-row
// weight tile, every activation tile. The weight tile (NR * K bytes) stays
// in L1/L2 for all of X; the packed X (M * K bytes, 512 KB at M = 128,
// K = 4096) streams from L2. The first activation tile of each weight tile
// prefetches the next weight tile into L1, one line of one row per step:
// each row starts on a new page, where the hardware prefetchers stop, and
// in batched decoding (one or two activation tiles) the weights come from
// memory. Measured (AMD EPYC Zen 5, one thread, the 12 layers of
// bench:e2e's model, cold): M = 16 8.0 -> 4.7-5.0 ms, M = 32 8.6-9.9 ->
// 7.5-7.6, M = 128 32.7-33.7 -> 29.5-29.8.
#if defined(__x86_64__) || defined(_M_X64)

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own
// _mm512_undefined_*() (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "w8a8_avx512_packed.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "../isa.h"
#include "avx512_transpose.h"

namespace qk {
namespace avx512 {

namespace {

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

// The main loop of a tile: acc[v][j][i] = sum over the first 4 Kf values of
// k of the packed rows (MV blocks at ap, bstride apart) times weight row j
// (b + j * ldb). pf (or nullptr): the first of NR rows (stride ldb) to
// prefetch, line q / 16 of row q % 16 at step q. Its own function, with the
// accumulators stored once at the end: anything else reading or writing
// c[][] (the K tail, the epilogue's loops) makes GCC 12 keep them in memory
// through the loop.
template <int MV, int NR>
__attribute__((noinline)) void accumulate(const uint8_t* ap, size_t bstride, const int8_t* b, size_t ldb, size_t Kf,
                                          const int8_t* pf, int32_t* acc) {
    __m512i c[MV][NR];
    for (int v = 0; v < MV; ++v)
        for (int j = 0; j < NR; ++j) c[v][j] = _mm512_setzero_si512();
    // Weight row j is bb[j / 3] + (j % 3) * ldb: few base registers and the
    // stride as an index (GCC addresses all NR rows without spilling).
    constexpr int NB = (NR + 2) / 3;
    const int8_t* bb[NB];
    for (int i = 0; i < NB; ++i) bb[i] = b + 3 * size_t(i) * ldb;
    const size_t ldb2 = 2 * ldb;
    for (size_t q = 0; q < Kf; ++q) {
        if (pf && (q & 15) < NR) _mm_prefetch((const char*)(pf + (q & 15) * ldb + (q >> 4) * 64), _MM_HINT_T0);
        __m512i a[MV];
        for (int v = 0; v < MV; ++v) a[v] = _mm512_loadu_si512(ap + v * bstride + q * 64);
#pragma GCC unroll 16
        for (int j = 0; j < NR; ++j) {
            const int8_t* r = bb[j / 3] + (j % 3 == 0 ? 0 : j % 3 == 1 ? ldb : ldb2) + 4 * q;
            int32_t w;
            std::memcpy(&w, r, 4);
            const __m512i bv = _mm512_set1_epi32(w);
#pragma GCC unroll 2
            for (int v = 0; v < MV; ++v) c[v][j] = _mm512_dpbusd_epi32(c[v][j], a[v], bv);
        }
    }
    for (int v = 0; v < MV; ++v)
        for (int j = 0; j < NR; ++j) _mm512_store_si512(acc + (v * NR + j) * 16, c[v][j]);
}

// Rows [m0, m0 + rows) x columns [n0, n0 + NR), rows <= 16 * MV, m0 a
// multiple of 16.
template <int MV, int NR>
void ptile(const W8A8Args& p, size_t m0, size_t rows, size_t n0, const int8_t* pf) {
    const size_t K = p.K, Kq = (K + 3) / 4, Kf = K / 4;
    const size_t bstride = 64 * Kq;  // bytes per packed 16-row block
    const uint8_t* ap = p.ap + (m0 / 16) * bstride;

    alignas(64) int32_t acc[MV][NR][16];
    accumulate<MV, NR>(ap, bstride, p.b + n0 * p.ldb, p.ldb, Kf, pf, &acc[0][0][0]);
    if (Kf < Kq) {  // the last 1..3 values of k, on the stored sums
        const size_t kt = K - 4 * Kf;
        for (int j = 0; j < NR; ++j) {
            int32_t w = 0;
            std::memcpy(&w, p.b + (n0 + j) * p.ldb + 4 * Kf, kt);
            const __m512i bv = _mm512_set1_epi32(w);
            for (int v = 0; v < MV; ++v) {
                const __m512i a = _mm512_loadu_si512(ap + v * bstride + Kf * 64);
                _mm512_store_si512(acc[v][j], _mm512_dpbusd_epi32(_mm512_load_si512(acc[v][j]), a, bv));
            }
        }
    }
    w8a8_packed_epilogue(p, m0, rows, n0, NR, &acc[0][0][0], MV);
}

using TileFn = void (*)(const W8A8Args&, size_t, size_t, size_t, const int8_t*);

// [NR - 1]: two-block tiles up to 12 columns, one-block tiles up to 16.
const TileFn kTiles2[12] = {ptile<2, 1>, ptile<2, 2>, ptile<2, 3>, ptile<2, 4>,  ptile<2, 5>,  ptile<2, 6>,
                            ptile<2, 7>, ptile<2, 8>, ptile<2, 9>, ptile<2, 10>, ptile<2, 11>, ptile<2, 12>};
const TileFn kTiles1[16] = {ptile<1, 1>,  ptile<1, 2>,  ptile<1, 3>,  ptile<1, 4>,  ptile<1, 5>,  ptile<1, 6>,
                            ptile<1, 7>,  ptile<1, 8>,  ptile<1, 9>,  ptile<1, 10>, ptile<1, 11>, ptile<1, 12>,
                            ptile<1, 13>, ptile<1, 14>, ptile<1, 15>, ptile<1, 16>};

}  // namespace

// Epilogue of a tile. acc[v][j][i] is the biased sum of row m0 + 16 v + i,
// column n0 + j (j < nr <= 16). Per block of 16 rows: the exact sums, and
// (fused mode) ((float)acc * sa[m]) * sb[n], with the lanes over rows; one
// 16 x 16 transpose turns them into rows of Y, then + Y (accumulate) and
// + bias as row vectors: per element the ref's operations in its order.
void w8a8_packed_epilogue(const W8A8Args& p, size_t m0, size_t rows, size_t n0, int nr, const int32_t* acc, int mv) {
    const __mmask16 cm = __mmask16((1u << nr) - 1);
    const __m512 bias = p.bias ? _mm512_maskz_loadu_ps(cm, p.bias + n0) : _mm512_setzero_ps();
    for (int v = 0; v < mv && 16 * size_t(v) < rows; ++v) {
        const size_t mb = m0 + 16 * size_t(v);
        const size_t nrow = min_sz(16, rows - 16 * size_t(v));
        const __mmask16 rm = __mmask16((1u << nrow) - 1);
        __m512i s[16];
        for (int j = 0; j < 16; ++j) {
            if (j >= nr) {
                s[j] = _mm512_setzero_si512();
                continue;
            }
            const __m512i c = _mm512_load_si512(acc + (size_t(v) * nr + j) * 16);
            s[j] = _mm512_sub_epi32(c, _mm512_set1_epi32(int32_t(uint32_t(p.b_rowsum[n0 + j]) << 7)));
        }
        if (p.c) {  // raw mode
            transpose16(s);
            for (size_t i = 0; i < nrow; ++i) _mm512_mask_storeu_epi32(p.c + (mb + i) * p.ldc + n0, cm, s[i]);
            continue;
        }
        const __m512 sa = _mm512_maskz_loadu_ps(rm, p.sa + mb);
        __m512 f[16];
        for (int j = 0; j < 16; ++j)
            f[j] = j < nr ? _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[j]), sa), _mm512_set1_ps(p.sb[n0 + j]))
                          : _mm512_setzero_ps();
        transpose16(f);  // f[i] = row mb + i, lanes = columns
        for (size_t i = 0; i < nrow; ++i) {
            float* yr = p.y + (mb + i) * p.ldy + n0;
            __m512 r = f[i];
            if (p.accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(cm, yr));
            if (p.bias) r = _mm512_add_ps(r, bias);
            _mm512_mask_storeu_ps(yr, cm, r);
        }
    }
}


// One packed block: per 64 values of k, the 16 rows' 64-byte pieces (masked
// loads: rows >= rows and columns >= K read as 0) are the 16 x 16 matrix of
// their 4-byte groups; transposed, vector q holds group q of every row.
void w8a8_pack_a(const uint8_t* a, size_t lda, size_t rows, size_t K, uint8_t* ap) {
    const size_t Kq = (K + 3) / 4;
    for (size_t k = 0; k < K; k += 64) {
        const size_t kn = min_sz(64, K - k);
        const __mmask64 km = kn == 64 ? ~__mmask64(0) : (__mmask64(1) << kn) - 1;
        __m512i r[16];
        for (size_t i = 0; i < 16; ++i)
            r[i] = i < rows ? _mm512_maskz_loadu_epi8(km, a + i * lda + k) : _mm512_setzero_si512();
        transpose16(r);
        const size_t qn = min_sz(16, Kq - k / 4);
        for (size_t q = 0; q < qn; ++q) _mm512_storeu_si512(ap + (k / 4 + q) * 64, r[q]);
    }
}

void gemm_w8a8_packed(const W8A8Args& p, size_t n0, size_t n1) {
    const size_t blocks = (p.M + 15) / 16;
    // One block: 1 x 16 tiles. More: 2 x 12, and 1 x 12 for an odd last block.
    // The NR weight rows are read 4 bytes at a time in step. With a row
    // stride that is a multiple of 1 KiB (K = 4096: every row on the same L1
    // set; the L1 has 64 sets of 64 bytes on Zen 4 and on Intel since
    // Skylake) their lines compete for the 8 (Zen 4) or 12 (Sapphire Rapids)
    // ways of at most 4 sets, and 16 rows evict each other before their next
    // step: then 8 and 10 rows. Measured (AMD EPYC Zen 4, one thread, weights
    // in cache), 4096 x 4096 at M = 16: 2.9 -> 1.3-1.4 ms (1 x 8), M = 32
    // and 128: +5-7 % (2 x 10); K = 4000 or 11008, which do not alias, keep
    // 16 and 12 (1 x 8 there: ~5 % slower). Same sums, any tile width.
    const bool aliased = p.ldb % 1024 == 0;
    const size_t nr = blocks == 1 ? (aliased ? 8 : 16) : (aliased ? 10 : 12);
    for (size_t n = n0; n < n1; n += nr) {
        const size_t w = min_sz(nr, n1 - n);
        // the next tile's rows, prefetched by the first activation tile (see the header)
        const int8_t* pf = n + 2 * nr <= n1 ? p.b + (n + nr) * p.ldb : nullptr;
        size_t b = 0;
        for (; b + 2 <= blocks; b += 2, pf = nullptr) kTiles2[w - 1](p, 16 * b, min_sz(32, p.M - 16 * b), n, pf);
        if (b < blocks) kTiles1[w - 1](p, 16 * b, p.M - 16 * b, n, pf);
    }
}

}  // namespace avx512
}  // namespace qk

#endif  // x86-64
