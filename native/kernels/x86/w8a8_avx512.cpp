// AVX-512 VNNI W8A8 int8 GEMM (Kernels::gemm_w8a8), bit-exact with
// qk::ref (w8a8_ref.cpp, the spec).
//
// Formulation. vpdpbusd multiplies UNSIGNED bytes by SIGNED bytes and adds
// each group of 4 products to an int32 lane, without intermediate
// saturation (the non-"s" form wraps modulo 2^32). The activation codes come
// biased, a = qx + 128 in 1..255 (the unsigned operand), the weight codes
// are the signed operand, so a lane accumulates
//   sum_k (qx[k] + 128) * w[k] = acc + 128 * rowsum(w)
// and the exact acc is recovered by subtracting 128 * b_rowsum[n], which the
// driver computes once per weight. Modular int32 arithmetic makes this exact
// whenever acc itself fits in int32 (K <= kW8A8MaxK), even if the biased
// partial sums wrap.
//
// Inner-product register tiling: an MR x NR tile of outputs keeps MR * NR
// zmm accumulators (each lane a partial sum over k = lane mod 16 groups),
// and per 64 values of k loads MR activation rows and NR weight rows and runs
// MR * NR vpdpbusd (4 x 6 = 24 accumulators for M >= 4, its loop in inline
// assembly because GCC 12 spills the accumulators; 1..3 x 8 for small M, the
// decode path). Both prefetch the next tile's weight rows into L1 (see
// tile): the weights stream from memory once per call. Weights are
// read in place (row-major, no packing); the K tail uses masked loads (zero
// bytes contribute nothing). At the end of K, a shuffle tree reduces the
// accumulators of one row to one vector of NR sums and the rescale runs on
// that vector with masked loads/stores. Integer sums are exact, so the
// blocking never changes a result; the float rescale is the ref's sequence of
// IEEE operations.
//
// Blocking: M is cut into blocks of about 512 KB of activations (L2
// resident); inside a block, an NR-row weight tile (NR * K bytes, L1
// resident for K up to ~6K) is reused by every MR-row activation tile.
//
// From M = 7 rows (kW8A8PackedMinM), when the driver passes packed
// activations (W8A8Args::ap), the outer-product kernel of
// w8a8_avx512_packed.cpp runs instead (about 1.8x this one at M = 128: no
// horizontal sums, one vector load per 16 rows).
#if defined(__x86_64__) || defined(_M_X64)

#include "gcc_avx512_warnings.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../isa.h"
#include "w8a8_avx512_packed.h"

namespace qk {
namespace avx512 {

namespace {

static inline __mmask64 mask64(size_t r) { return r >= 64 ? ~__mmask64(0) : __mmask64((1ull << r) - 1); }
static inline __mmask8 mask8(size_t r) { return __mmask8((1u << r) - 1); }  // r <= 8

// Eight int32 vectors -> one __m256i of their eight lane sums (v0..v7 order).
static inline __m256i hsum8(__m512i v0, __m512i v1, __m512i v2, __m512i v3, __m512i v4, __m512i v5,
                            __m512i v6, __m512i v7) {
    // Per 128-bit lane: [v0 v1 v0 v1] partials.
    const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(v0, v1), _mm512_unpackhi_epi32(v0, v1));
    const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(v2, v3), _mm512_unpackhi_epi32(v2, v3));
    const __m512i t45 = _mm512_add_epi32(_mm512_unpacklo_epi32(v4, v5), _mm512_unpackhi_epi32(v4, v5));
    const __m512i t67 = _mm512_add_epi32(_mm512_unpacklo_epi32(v6, v7), _mm512_unpackhi_epi32(v6, v7));
    // Per 128-bit lane: [v0 v1 v2 v3] and [v4 v5 v6 v7] partials.
    const __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
    const __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi64(t45, t67), _mm512_unpackhi_epi64(t45, t67));
    // Lanes: [u0.L0+u0.L1, u0.L2+u0.L3, u1.L0+u1.L1, u1.L2+u1.L3].
    const __m512i w = _mm512_add_epi32(_mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                       _mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i r = _mm512_add_epi32(_mm512_shuffle_i32x4(w, w, _MM_SHUFFLE(3, 1, 2, 0)),
                                       _mm512_shuffle_i32x4(w, w, _MM_SHUFFLE(2, 0, 3, 1)));
    return _mm512_castsi512_si256(r);
}

// One MR x NR tile: rows m0.., columns n0.., the whole depth K. Written with
// named accumulators (cIJ: row I, column J) rather than arrays, so GCC keeps
// all of them in zmm registers; the tests on MR / NR are compile-time and
// the unused accumulators vanish.
#define QK_W8_ROWS(X) X(0) X(1) X(2) X(3)
#define QK_W8_COLS(X, i) X(i, 0) X(i, 1) X(i, 2) X(i, 3) X(i, 4) X(i, 5) X(i, 6) X(i, 7)
#define QK_W8_DECL(i, j) __m512i c##i##j = _mm512_setzero_si512();
#define QK_W8_DECL_ROW(i) QK_W8_COLS(QK_W8_DECL, i)
#define QK_W8_RELOAD_ROW(i) QK_W8_COLS(QK_W8_RELOAD, i)
#define QK_W8_FMA(i, j) \
    if (MR > i) c##i##j = _mm512_dpbusd_epi32(c##i##j, a##i, bv);
#define QK_W8_COL(j)                                  \
    if (NR > j) {                                     \
        const __m512i bv = LOADB(bp##j + k);          \
        QK_W8_FMA(0, j) QK_W8_FMA(1, j) QK_W8_FMA(2, j) QK_W8_FMA(3, j) \
    }
#define QK_W8_ALLCOLS QK_W8_COL(0) QK_W8_COL(1) QK_W8_COL(2) QK_W8_COL(3) QK_W8_COL(4) QK_W8_COL(5) QK_W8_COL(6) QK_W8_COL(7)

template <int MR, int NR>
void tile(const W8A8Args& p, size_t m0, size_t n0) {
    const size_t K = p.K;
    QK_W8_ROWS(QK_W8_DECL_ROW)
    const uint8_t* ap0 = p.a + m0 * p.lda;
    const uint8_t* ap1 = ap0 + (MR > 1 ? p.lda : 0);
    const uint8_t* ap2 = ap0 + (MR > 2 ? 2 * p.lda : 0);
    const uint8_t* ap3 = ap0 + (MR > 3 ? 3 * p.lda : 0);
    const int8_t* bp0 = p.b + n0 * p.ldb;
    const int8_t* bp1 = bp0 + (NR > 1 ? p.ldb : 0);
    const int8_t* bp2 = bp0 + (NR > 2 ? 2 * p.ldb : 0);
    const int8_t* bp3 = bp0 + (NR > 3 ? 3 * p.ldb : 0);
    const int8_t* bp4 = bp0 + (NR > 4 ? 4 * p.ldb : 0);
    const int8_t* bp5 = bp0 + (NR > 5 ? 5 * p.ldb : 0);
    const int8_t* bp6 = bp0 + (NR > 6 ? 6 * p.ldb : 0);
    const int8_t* bp7 = bp0 + (NR > 7 ? 7 * p.ldb : 0);

    size_t k = 0;
    if constexpr (MR == 4 && NR == 6) {
        // The 4 x 6 main tile in assembly: GCC 12 does not keep 24 zmm
        // accumulators in registers across this loop (it spills and copies
        // them every iteration). Same instructions as the generic loop below:
        // per 64 values of k, 4 activation loads, 6 weight loads, 24
        // vpdpbusd; the accumulators (zmm 4j + i = row i, column j) are
        // stored to buf at the end and the tail and epilogue continue in C++.
        alignas(64) int32_t buf[24 * 16];
        size_t nblk = K / 64;
        const uint8_t* a = ap0;
        const int8_t* b = bp0;
        const int8_t* b4 = bp4;
        const size_t lda = p.lda, ldb = p.ldb, lda3 = 3 * p.lda, ldb3 = 3 * p.ldb;
        // The next tile's 6 rows, one line of each per step, into L1 (the
        // current rows when this is the last tile). Without it, the loop
        // waited on every new weight line: the 12 layers of bench:e2e's
        // model, cold, at M = 4 took 5.0 ms against 3.8, and at M = 8 (before
        // the packed kernel took 8 rows) 8.2-9.0 against 5.2-5.9 (AMD EPYC
        // Zen 5, one thread). Two tiles ahead, or a second stream into L2
        // further ahead, measured no faster.
        const bool pf_next = n0 + 12 <= p.N;
        const int8_t* pf = pf_next ? bp0 + 6 * ldb : bp0;
        const int8_t* pf4 = pf_next ? bp0 + 10 * ldb : bp4;
        __asm__ volatile(
        "vpxord %%zmm0, %%zmm0, %%zmm0\n"
        "vpxord %%zmm1, %%zmm1, %%zmm1\n"
        "vpxord %%zmm2, %%zmm2, %%zmm2\n"
        "vpxord %%zmm3, %%zmm3, %%zmm3\n"
        "vpxord %%zmm4, %%zmm4, %%zmm4\n"
        "vpxord %%zmm5, %%zmm5, %%zmm5\n"
        "vpxord %%zmm6, %%zmm6, %%zmm6\n"
        "vpxord %%zmm7, %%zmm7, %%zmm7\n"
        "vpxord %%zmm8, %%zmm8, %%zmm8\n"
        "vpxord %%zmm9, %%zmm9, %%zmm9\n"
        "vpxord %%zmm10, %%zmm10, %%zmm10\n"
        "vpxord %%zmm11, %%zmm11, %%zmm11\n"
        "vpxord %%zmm12, %%zmm12, %%zmm12\n"
        "vpxord %%zmm13, %%zmm13, %%zmm13\n"
        "vpxord %%zmm14, %%zmm14, %%zmm14\n"
        "vpxord %%zmm15, %%zmm15, %%zmm15\n"
        "vpxord %%zmm16, %%zmm16, %%zmm16\n"
        "vpxord %%zmm17, %%zmm17, %%zmm17\n"
        "vpxord %%zmm18, %%zmm18, %%zmm18\n"
        "vpxord %%zmm19, %%zmm19, %%zmm19\n"
        "vpxord %%zmm20, %%zmm20, %%zmm20\n"
        "vpxord %%zmm21, %%zmm21, %%zmm21\n"
        "vpxord %%zmm22, %%zmm22, %%zmm22\n"
        "vpxord %%zmm23, %%zmm23, %%zmm23\n"
        "test %[n], %[n]\n"
        "jz 2f\n"
        ".p2align 5\n"
        "1:\n"
        "vmovdqu64 (%[a]), %%zmm24\n"
        "vmovdqu64 (%[a], %[lda], 1), %%zmm25\n"
        "vmovdqu64 (%[a], %[lda], 2), %%zmm26\n"
        "vmovdqu64 (%[a], %[lda3], 1), %%zmm27\n"
        "vmovdqu64 (%[b]), %%zmm28\n"
        "prefetcht0 (%[pf])\n"
        "vpdpbusd %%zmm28, %%zmm24, %%zmm0\n"
        "vpdpbusd %%zmm28, %%zmm25, %%zmm1\n"
        "vpdpbusd %%zmm28, %%zmm26, %%zmm2\n"
        "vpdpbusd %%zmm28, %%zmm27, %%zmm3\n"
        "vmovdqu64 (%[b], %[ldb], 1), %%zmm29\n"
        "prefetcht0 (%[pf], %[ldb], 1)\n"
        "vpdpbusd %%zmm29, %%zmm24, %%zmm4\n"
        "vpdpbusd %%zmm29, %%zmm25, %%zmm5\n"
        "vpdpbusd %%zmm29, %%zmm26, %%zmm6\n"
        "vpdpbusd %%zmm29, %%zmm27, %%zmm7\n"
        "vmovdqu64 (%[b], %[ldb], 2), %%zmm30\n"
        "prefetcht0 (%[pf], %[ldb], 2)\n"
        "vpdpbusd %%zmm30, %%zmm24, %%zmm8\n"
        "vpdpbusd %%zmm30, %%zmm25, %%zmm9\n"
        "vpdpbusd %%zmm30, %%zmm26, %%zmm10\n"
        "vpdpbusd %%zmm30, %%zmm27, %%zmm11\n"
        "vmovdqu64 (%[b], %[ldb3], 1), %%zmm31\n"
        "prefetcht0 (%[pf], %[ldb3], 1)\n"
        "vpdpbusd %%zmm31, %%zmm24, %%zmm12\n"
        "vpdpbusd %%zmm31, %%zmm25, %%zmm13\n"
        "vpdpbusd %%zmm31, %%zmm26, %%zmm14\n"
        "vpdpbusd %%zmm31, %%zmm27, %%zmm15\n"
        "vmovdqu64 (%[b4]), %%zmm28\n"
        "prefetcht0 (%[pf4])\n"
        "vpdpbusd %%zmm28, %%zmm24, %%zmm16\n"
        "vpdpbusd %%zmm28, %%zmm25, %%zmm17\n"
        "vpdpbusd %%zmm28, %%zmm26, %%zmm18\n"
        "vpdpbusd %%zmm28, %%zmm27, %%zmm19\n"
        "vmovdqu64 (%[b4], %[ldb], 1), %%zmm29\n"
        "prefetcht0 (%[pf4], %[ldb], 1)\n"
        "vpdpbusd %%zmm29, %%zmm24, %%zmm20\n"
        "vpdpbusd %%zmm29, %%zmm25, %%zmm21\n"
        "vpdpbusd %%zmm29, %%zmm26, %%zmm22\n"
        "vpdpbusd %%zmm29, %%zmm27, %%zmm23\n"
        "add $64, %[a]\n"
        "add $64, %[b]\n"
        "add $64, %[b4]\n"
        "add $64, %[pf]\n"
        "add $64, %[pf4]\n"
        "dec %[n]\n"
        "jnz 1b\n"
        "2:\n"
        "vmovdqa64 %%zmm0, 0(%[out])\n"
        "vmovdqa64 %%zmm1, 64(%[out])\n"
        "vmovdqa64 %%zmm2, 128(%[out])\n"
        "vmovdqa64 %%zmm3, 192(%[out])\n"
        "vmovdqa64 %%zmm4, 256(%[out])\n"
        "vmovdqa64 %%zmm5, 320(%[out])\n"
        "vmovdqa64 %%zmm6, 384(%[out])\n"
        "vmovdqa64 %%zmm7, 448(%[out])\n"
        "vmovdqa64 %%zmm8, 512(%[out])\n"
        "vmovdqa64 %%zmm9, 576(%[out])\n"
        "vmovdqa64 %%zmm10, 640(%[out])\n"
        "vmovdqa64 %%zmm11, 704(%[out])\n"
        "vmovdqa64 %%zmm12, 768(%[out])\n"
        "vmovdqa64 %%zmm13, 832(%[out])\n"
        "vmovdqa64 %%zmm14, 896(%[out])\n"
        "vmovdqa64 %%zmm15, 960(%[out])\n"
        "vmovdqa64 %%zmm16, 1024(%[out])\n"
        "vmovdqa64 %%zmm17, 1088(%[out])\n"
        "vmovdqa64 %%zmm18, 1152(%[out])\n"
        "vmovdqa64 %%zmm19, 1216(%[out])\n"
        "vmovdqa64 %%zmm20, 1280(%[out])\n"
        "vmovdqa64 %%zmm21, 1344(%[out])\n"
        "vmovdqa64 %%zmm22, 1408(%[out])\n"
        "vmovdqa64 %%zmm23, 1472(%[out])\n"
        : [a] "+r"(a), [b] "+r"(b), [b4] "+r"(b4), [n] "+r"(nblk), [pf] "+r"(pf), [pf4] "+r"(pf4)
        : [lda] "r"(lda), [ldb] "r"(ldb), [lda3] "r"(lda3), [ldb3] "r"(ldb3), [out] "r"(buf)
        : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
          "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22",
          "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
#define QK_W8_RELOAD(i, j) \
        if (MR > i && NR > j) c##i##j = _mm512_load_si512(buf + (j * 4 + i) * 16);
        QK_W8_ROWS(QK_W8_RELOAD_ROW)
        k = K / 64 * 64;
    }
    // Decode (MR < 4): the weights stream from memory once, NR rows at a
    // time; each row starts a new page, where the hardware prefetchers stop,
    // so the next tile's rows are prefetched one tile ahead, into L1: into
    // L2, the 12 layers above took 1.12-1.14x the time at M = 1, 1.24-1.27x
    // at M = 2 and 1.05-1.14x at M = 3 (same machine).
    const bool pf = MR < 4 && n0 + 2 * NR <= p.N;
    const int8_t* pf0 = pf ? bp0 + NR * p.ldb : bp0;
    for (; k + 64 <= K; k += 64) {
#define LOADB(ptr) _mm512_loadu_si512(ptr)
        if (MR < 4 && pf) {
            for (int j = 0; j < NR; ++j) _mm_prefetch((const char*)(pf0 + j * p.ldb + k), _MM_HINT_T0);
        }
        const __m512i a0 = _mm512_loadu_si512(ap0 + k);
        const __m512i a1 = MR > 1 ? _mm512_loadu_si512(ap1 + k) : a0;
        const __m512i a2 = MR > 2 ? _mm512_loadu_si512(ap2 + k) : a0;
        const __m512i a3 = MR > 3 ? _mm512_loadu_si512(ap3 + k) : a0;
        QK_W8_ALLCOLS
#undef LOADB
    }
    if (k < K) {
        const __mmask64 km = mask64(K - k);
#define LOADB(ptr) _mm512_maskz_loadu_epi8(km, ptr)
        const __m512i a0 = _mm512_maskz_loadu_epi8(km, ap0 + k);
        const __m512i a1 = MR > 1 ? _mm512_maskz_loadu_epi8(km, ap1 + k) : a0;
        const __m512i a2 = MR > 2 ? _mm512_maskz_loadu_epi8(km, ap2 + k) : a0;
        const __m512i a3 = MR > 3 ? _mm512_maskz_loadu_epi8(km, ap3 + k) : a0;
        QK_W8_ALLCOLS
#undef LOADB
    }

    // Epilogue: exact int32 sums, then the ref's float sequence on NR lanes.
    const __mmask8 nm = mask8(NR);
    const __m256i comp = _mm256_slli_epi32(_mm256_maskz_loadu_epi32(nm, p.b_rowsum + n0), 7);
    const __m256 sb = p.c ? _mm256_setzero_ps() : _mm256_maskz_loadu_ps(nm, p.sb + n0);
    const __m256 bias = p.bias ? _mm256_maskz_loadu_ps(nm, p.bias + n0) : _mm256_setzero_ps();
#define QK_W8_ROW_OUT(i)                                                                                     \
    if (MR > i) {                                                                                            \
        const __m256i s = _mm256_sub_epi32(hsum8(c##i##0, c##i##1, c##i##2, c##i##3, c##i##4, c##i##5, c##i##6, c##i##7), comp); \
        const size_t m = m0 + i;                                                                             \
        if (p.c) {                                                                                           \
            _mm256_mask_storeu_epi32(p.c + m * p.ldc + n0, nm, s);                                           \
        } else {                                                                                             \
            float* y = p.y + m * p.ldy + n0;                                                                 \
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(p.sa[m]));                        \
            v = _mm256_mul_ps(v, sb);                                                                        \
            if (p.accumulate) v = _mm256_add_ps(v, _mm256_maskz_loadu_ps(nm, y));                            \
            if (p.bias) v = _mm256_add_ps(v, bias);                                                          \
            _mm256_mask_storeu_ps(y, nm, v);                                                                 \
        }                                                                                                    \
    }
    QK_W8_ROWS(QK_W8_ROW_OUT)
#undef QK_W8_ROW_OUT
}

#undef QK_W8_ROWS
#undef QK_W8_COLS
#undef QK_W8_DECL
#undef QK_W8_DECL_ROW
#undef QK_W8_RELOAD_ROW
#undef QK_W8_RELOAD
#undef QK_W8_FMA
#undef QK_W8_COL
#undef QK_W8_ALLCOLS

using TileFn = void (*)(const W8A8Args&, size_t, size_t);

// Row-tile heights 1..4 (index MR - 1) by widths 1..8 (index NR - 1); MR = 4
// stops at NR = 6 (24 accumulators + 4 activation vectors + 1 weight vector).
const TileFn kTiles[4][8] = {
    {tile<1, 1>, tile<1, 2>, tile<1, 3>, tile<1, 4>, tile<1, 5>, tile<1, 6>, tile<1, 7>, tile<1, 8>},
    {tile<2, 1>, tile<2, 2>, tile<2, 3>, tile<2, 4>, tile<2, 5>, tile<2, 6>, tile<2, 7>, tile<2, 8>},
    {tile<3, 1>, tile<3, 2>, tile<3, 3>, tile<3, 4>, tile<3, 5>, tile<3, 6>, tile<3, 7>, tile<3, 8>},
    {tile<4, 1>, tile<4, 2>, tile<4, 3>, tile<4, 4>, tile<4, 5>, tile<4, 6>, nullptr, nullptr},
};

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

}  // namespace

void gemm_w8a8(const W8A8Args& p, size_t n0, size_t n1) {
    if (p.M == 0 || n0 >= n1) return;
    if (p.ap && p.M >= kW8A8PackedMinM) return gemm_w8a8_packed(p, n0, n1);  // prefill, batched decode
    if (p.M < 4) {
        // Decode: every weight row is read once, 8 rows at a time.
        const TileFn* row = kTiles[p.M - 1];
        for (size_t n = n0; n < n1; n += 8) row[min_sz(8, n1 - n) - 1](p, 0, n);
        return;
    }
    // Activation blocks of ~512 KB (a multiple of 4 rows).
    size_t mb = (size_t(512) << 10) / (p.K ? p.K : 1);
    mb = mb < 4 ? 4 : mb / 4 * 4;
    for (size_t mb0 = 0; mb0 < p.M; mb0 += mb) {
        const size_t mb1 = min_sz(p.M, mb0 + mb);
        for (size_t n = n0; n < n1; n += 6) {
            const size_t nr = min_sz(6, n1 - n);
            for (size_t m = mb0; m < mb1; m += 4) kTiles[min_sz(4, mb1 - m) - 1][nr - 1](p, m, n);
        }
    }
}

}  // namespace avx512
}  // namespace qk

#endif  // x86-64
