// AVX2 W8A8 int8 GEMM (Kernels::gemm_w8a8), bit-exact with qk::ref
// (w8a8_ref.cpp, the spec).
//
// Formulation: the sign trick. vpmaddubsw multiplies unsigned bytes by
// signed bytes and adds adjacent pairs into int16 WITH signed saturation, so
// the biased activations (up to 255) times weights could saturate
// (2 * 255 * 127 > 32767). Instead, with qx = a ^ 0x80 (the signed code):
//   maddubs(|qx|, sign(w, qx))    (vpabsb, vpsignb)
// computes pairs |qx_k| * (w_k * sgn(qx_k)) = qx_k * w_k. Both codes lie in
// [-127, 127] (|qx| <= 127 fits the unsigned operand; w = -128 never occurs,
// so vpsignb cannot overflow), hence each pair sum is at most
// 2 * 127 * 127 = 32258 < 32767 in magnitude: no saturation, exact. vpmaddwd
// with ones then widens the pairs to int32 (exact) for the accumulators.
//
// Inner-product register tiling (MR x NR ymm accumulators over 32 values of
// k, 2 x 3 for M >= 2, 1 x 4 for decode); the K tail goes through
// zero-padded copies. Lane sums are reduced per output and the rescale is
// the ref's scalar IEEE sequence.
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../isa.h"

namespace qk {
namespace avx2 {

namespace {

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

static inline int32_t hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// acc += qx . w over 32 values (qx the signed activation codes).
static inline __m256i dot32(__m256i acc, __m256i qx_abs, __m256i qx, __m256i w, __m256i ones16) {
    const __m256i pairs = _mm256_maddubs_epi16(qx_abs, _mm256_sign_epi8(w, qx));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones16));
}

// The ref's rescale of one exact sum.
static inline void store_one(const W8A8Args& p, size_t m, size_t n, int32_t acc) {
    if (p.c) {
        p.c[m * p.ldc + n] = acc;
        return;
    }
    float v = float(acc) * p.sa[m];
    v = v * p.sb[n];
    float* y = p.y + m * p.ldy + n;
    if (p.accumulate) v = v + *y;
    if (p.bias) v = v + p.bias[n];
    *y = v;
}

template <int MR, int NR>
void tile(const W8A8Args& p, size_t m0, size_t n0) {
    const size_t K = p.K;
    const __m256i bias80 = _mm256_set1_epi8(char(0x80));
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256i acc[MR][NR];
    const uint8_t* ap[MR];
    const int8_t* bp[NR];
    for (int i = 0; i < MR; ++i) {
        ap[i] = p.a + (m0 + i) * p.lda;
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
    }
    for (int j = 0; j < NR; ++j) bp[j] = p.b + (n0 + j) * p.ldb;

    // The next tile's rows, a line of each per 64 values of k, into L1: the
    // weights stream from memory once per call, and each row starts on a new
    // page, where the hardware prefetchers stop. The 12 layers of bench:e2e's
    // model, cold, one thread (QUANTKIT_ISA=avx2 on AMD EPYC Zen 5): M = 1 /
    // 2 / 8 / 16 took 1.23x / 1.50x / 1.40x / 1.25x the time without it.
    const int8_t* pf = n0 + 2 * NR <= p.N ? p.b + (n0 + NR) * p.ldb : nullptr;
    size_t k = 0;
    for (; k + 32 <= K; k += 32) {
        if (pf && k % 64 == 0)
            for (int j = 0; j < NR; ++j) _mm_prefetch((const char*)(pf + j * p.ldb + k), _MM_HINT_T0);
        __m256i q[MR], qa[MR];
        for (int i = 0; i < MR; ++i) {
            q[i] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(ap[i] + k)), bias80);
            qa[i] = _mm256_abs_epi8(q[i]);
        }
        for (int j = 0; j < NR; ++j) {
            const __m256i w = _mm256_loadu_si256((const __m256i*)(bp[j] + k));
            for (int i = 0; i < MR; ++i) acc[i][j] = dot32(acc[i][j], qa[i], q[i], w, ones16);
        }
    }
    if (k < K) {
        // Zero-padded copies: a zero weight byte contributes nothing.
        alignas(32) uint8_t ta[MR][32];
        alignas(32) int8_t tb[NR][32];
        const size_t r = K - k;
        for (int i = 0; i < MR; ++i)
            for (size_t t = 0; t < 32; ++t) ta[i][t] = t < r ? ap[i][k + t] : uint8_t(0x80);
        for (int j = 0; j < NR; ++j)
            for (size_t t = 0; t < 32; ++t) tb[j][t] = t < r ? bp[j][k + t] : int8_t(0);
        __m256i q[MR], qa[MR];
        for (int i = 0; i < MR; ++i) {
            q[i] = _mm256_xor_si256(_mm256_load_si256((const __m256i*)ta[i]), bias80);
            qa[i] = _mm256_abs_epi8(q[i]);
        }
        for (int j = 0; j < NR; ++j) {
            const __m256i w = _mm256_load_si256((const __m256i*)tb[j]);
            for (int i = 0; i < MR; ++i) acc[i][j] = dot32(acc[i][j], qa[i], q[i], w, ones16);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) store_one(p, m0 + i, n0 + j, hsum(acc[i][j]));
}

using TileFn = void (*)(const W8A8Args&, size_t, size_t);

// [MR - 1][NR - 1]: 2 x 3 for M >= 2 (6 accumulators + 4 activation
// vectors), 1 x 4 for a single row.
const TileFn kTiles[2][4] = {
    {tile<1, 1>, tile<1, 2>, tile<1, 3>, tile<1, 4>},
    {tile<2, 1>, tile<2, 2>, tile<2, 3>, nullptr},
};

}  // namespace

void gemm_w8a8(const W8A8Args& p, size_t n0, size_t n1) {
    if (p.M == 0 || n0 >= n1) return;
    if (p.M == 1) {
        for (size_t n = n0; n < n1; n += 4) kTiles[0][min_sz(4, n1 - n) - 1](p, 0, n);
        return;
    }
    size_t mb = (size_t(512) << 10) / (p.K ? p.K : 1);
    mb = mb < 2 ? 2 : mb / 2 * 2;
    for (size_t mb0 = 0; mb0 < p.M; mb0 += mb) {
        const size_t mb1 = min_sz(p.M, mb0 + mb);
        for (size_t n = n0; n < n1; n += 3) {
            const size_t nr = min_sz(3, n1 - n);
            for (size_t m = mb0; m < mb1; m += 2) kTiles[min_sz(2, mb1 - m) - 1][nr - 1](p, m, n);
        }
    }
}

}  // namespace avx2
}  // namespace qk

#endif  // x86-64
