// AVX-512 transformer glue kernels: attention over the blocked key cache
// (attn_rows), silu(g) * u and GELU (tanh form). All evaluate the
// reference's operations (ref/attn_ref.cpp, attn_exp.h) lane by lane, so the
// results are the reference's bits:
//   scores   a block of 64 keys is 4 zmm of lanes; each lane runs the same
//            sequential fma chain over the head dimension as the reference
//            (q[i] broadcast, K row i loaded: no horizontal sums).
//   max      NaN-free (a NaN score never wins vmaxps with the running max
//            as second operand), then any tree (max is exact).
//   p · V    per 64-wide chunk of the head dimension, 4 accumulators, one
//            fma per key in key order (the reference's order per element).
// Work order: blocks outer, rows inner, so one block of K/V (16 KB at
// hd = 64) is read from L1 by every row of the call; rows go up to four at
// a time (the query heads of one KV head, then the next positions),
// sharing each load of K (scores) and of V (p · V), and the 16-key
// vectors past a block's last visible key are skipped (their lanes are
// -inf / p = 0 in the reference: the same result, less work on the
// diagonal blocks of a prompt). Measured against one row at a time with
// every vector computed (T = 128 from position 0, 12 / 4 heads of 64, one
// thread, AMD EPYC): 0.99 -> 0.79-0.89 ms with two rows at a time; a
// decode step at position 127 14.1 -> 11.6-12.7 us. Four rows, with the
// rows' sums of p (l, a sequential scalar chain each, as in the reference)
// interleaved in one loop, on a Sapphire Rapids-class Xeon against two
// (interleaved runs): T = 128 0.58-0.68 -> 0.44-0.48 ms, T = 512 7.7-9.2
// -> 5.9 ms, a decode step at position 127 11-12 -> 9-10 us. The sums of p
// then moved into p · V's key loop, under its FMAs (same chains, same
// bits); against their own loop, AMD EPYC Zen 5, one thread, operands in
// cache, median of 400: T = 128 313-318 -> 289-306 us, T = 512 4.29 ->
// 4.00 ms, a decode step at position 127 6.1 -> 5.5-5.6 us.
#if defined(__x86_64__) || defined(_M_X64)

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cmath>

#include "../isa.h"
#include "avx512_mask.h"
#include "../attn_exp.h"

namespace qk {
namespace avx512 {

namespace {

using namespace attn_exp_consts;

// ref::attn_exp on 16 lanes.
inline __m512 exp16(__m512 x) {
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 c = _mm512_max_ps(x, _mm512_set1_ps(kLo));  // (x > lo ? x : lo)
    c = _mm512_min_ps(c, _mm512_set1_ps(kHi));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(c, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Hi), c);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Lo), r);
    const __m512 z = _mm512_mul_ps(r, r);
    __m512 y = _mm512_set1_ps(kP0);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP4));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP5));
    y = _mm512_fmadd_ps(y, z, r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    const __mmask16 big = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kHi), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(nan, _mm512_mask_blend_ps(big, _mm512_mul_ps(y, _mm512_castsi512_ps(e)), _mm512_set1_ps(INFINITY)), x);
}

inline float hmax(__m512 v) {
    const __m256 a = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0xee)));
    const __m128 b = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 c = _mm_max_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_max_ss(c, _mm_movehdup_ps(c)));
}

// Scores of R = 1 to 4 rows against the NV 16-key vectors of a block that
// hold visible keys (the rest stay unwritten: the caller treats them as
// -inf). Each lane is the reference's fma chain over the head dimension;
// the rows share every load of K.
template <int R, int NV>
inline void scores(const float* const* q, const float* kt, size_t hd, __m512 (*s)[4]) {
    for (int r = 0; r < R; ++r)
        for (int u = 0; u < NV; ++u) s[r][u] = _mm512_setzero_ps();
    for (size_t i = 0; i < hd; ++i) {
        const float* kr = kt + i * kAttnBlock;
        __m512 k[NV];
        for (int u = 0; u < NV; ++u) k[u] = _mm512_loadu_ps(kr + 16 * u);
        for (int r = 0; r < R; ++r) {
            const __m512 qi = _mm512_set1_ps(q[r][i]);
            for (int u = 0; u < NV; ++u) s[r][u] = _mm512_fmadd_ps(qi, k[u], s[r][u]);
        }
    }
}

template <int R>
inline void scores_n(int nv, const float* const* q, const float* kt, size_t hd, __m512 (*s)[4]) {
    switch (nv) {
        case 1: scores<R, 1>(q, kt, hd, s); break;
        case 2: scores<R, 2>(q, kt, hd, s); break;
        case 3: scores<R, 3>(q, kt, hd, s); break;
        default: scores<R, 4>(q, kt, hd, s); break;
    }
}

// One row's online-softmax step on its block scores s (nb visible keys of
// the first nv vectors): the reference's max, rescale factor and p values;
// p[0 .. 64) gets p (0 for hidden keys), m is updated and l rescaled (its
// sum of p is added in pv, in the key loop). Returns the
// rescale factor c of o (1 on the first block, which has no rescale).
inline float softmax_step(__m512* s, int nv, size_t nb, float scale, bool first, float& m, float& l, float* p) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY), sc = _mm512_set1_ps(scale);
    __m512 mv = ninf;
    __mmask16 k[4];
    for (int u = 0; u < 4; ++u) {
        k[u] = nb > size_t(16 * u) ? mask16(nb - 16 * u) : __mmask16(0);
        if (u < nv) {
            s[u] = _mm512_mask_blend_ps(k[u], ninf, _mm512_mul_ps(s[u], sc));
            mv = _mm512_max_ps(s[u], mv);  // (NaN-free: a NaN score never wins)
        }
    }
    const float mb = hmax(mv);
    const float mn = first ? mb : (mb > m ? mb : m);
    float c = 1.0f;
    if (!first) {
        c = _mm512_cvtss_f32(exp16(_mm512_set1_ps(m - mn)));
        l *= c;
    }
    const __m512 mnv = _mm512_set1_ps(mn);
    for (int u = 0; u < 4; ++u)
        _mm512_storeu_ps(p + 16 * u, u < nv ? _mm512_maskz_mov_ps(k[u], exp16(_mm512_sub_ps(s[u], mnv))) : _mm512_setzero_ps());
    m = mn;
    return c;
}

// For R = 1..4 rows: o_r[0 .. hd) = o_r * c_r (when rescale), then
// o_r[i] = fma(p_r[jj], V[jj][i], o_r[i]) for jj < nb_r, in key order (the
// reference's order per element); the rows share each load of V up to the
// shortest row's keys, then each row takes its remaining keys alone.
// The first 64-wide chunk also adds each row's p to its sum, l_r += p_r[jj]
// in key order (the reference's scalar chain, so its bits): a chain of
// dependent adds, 64 a block, which in a loop of its own held the block
// up (5-10 % of the attention with four rows interleaved, see the top of
// the file); inside the key loop it runs under the FMAs. hd > 0 (the op
// has no tasks otherwise).
template <int R>
inline void pv(float* const* o, size_t hd, bool rescale, const float* c, const float* const* p, const size_t* nb,
               const float* v, size_t ldv, float* const* l) {
    size_t nmin = nb[0];
    for (int r = 1; r < R; ++r) nmin = nb[r] < nmin ? nb[r] : nmin;
    float ls[R];
    for (int r = 0; r < R; ++r) ls[r] = *l[r];
    for (size_t i0 = 0; i0 < hd; i0 += 64) {
        const bool sum = i0 == 0;
        const size_t w = hd - i0 < 64 ? hd - i0 : 64;
        __mmask16 mk[4];
        __m512 acc[R][4];
        for (int u = 0; u < 4; ++u) {
            const size_t lo = size_t(16 * u);
            mk[u] = w > lo ? mask16(w - lo) : __mmask16(0);
            for (int r = 0; r < R; ++r) {
                acc[r][u] = _mm512_maskz_loadu_ps(mk[u], o[r] + i0 + lo);
                if (rescale) acc[r][u] = _mm512_mul_ps(acc[r][u], _mm512_set1_ps(c[r]));
            }
        }
        const int nu = int((w + 15) / 16);
        auto step = [&](size_t jj, int r0, int r1) {
            const float* vj = v + jj * ldv + i0;
            __m512 vv[4];
            for (int u = 0; u < nu; ++u) vv[u] = _mm512_maskz_loadu_ps(mk[u], vj + 16 * u);
            for (int r = r0; r < r1; ++r) {
                if (sum) ls[r] += p[r][jj];
                const __m512 pj = _mm512_set1_ps(p[r][jj]);
                for (int u = 0; u < nu; ++u) acc[r][u] = _mm512_fmadd_ps(pj, vv[u], acc[r][u]);
            }
        };
        if (w == 64) {  // the common case (hd a multiple of 64): whole vectors
            for (size_t jj = 0; jj < nmin; ++jj) {
                const float* vj = v + jj * ldv + i0;
                const __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16), v2 = _mm512_loadu_ps(vj + 32), v3 = _mm512_loadu_ps(vj + 48);
                for (int r = 0; r < R; ++r) {
                    if (sum) ls[r] += p[r][jj];
                    const __m512 pj = _mm512_set1_ps(p[r][jj]);
                    acc[r][0] = _mm512_fmadd_ps(pj, v0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(pj, v1, acc[r][1]);
                    acc[r][2] = _mm512_fmadd_ps(pj, v2, acc[r][2]);
                    acc[r][3] = _mm512_fmadd_ps(pj, v3, acc[r][3]);
                }
            }
        } else {
            for (size_t jj = 0; jj < nmin; ++jj) step(jj, 0, R);
        }
        for (int r = 0; r < R; ++r)
            for (size_t jj = nmin; jj < nb[r]; ++jj) step(jj, r, r + 1);
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < 4; ++u) _mm512_mask_storeu_ps(o[r] + i0 + 16 * u, mk[u], acc[r][u]);
    }
    for (int r = 0; r < R; ++r) *l[r] = ls[r];
}

// One block of keys (j0 = its first) for R rows rr[] that see some of it.
template <int R>
inline void block_rows(const AttnRowsArgs& a, const size_t* rr, size_t j0, bool first, const float* kt, const float* v,
                       float* o, float* m, float* l, float* pbuf) {
    const size_t hd = a.hd;
    size_t nb[R];
    const float* q[R];
    float* orow[R];
    const float* p[R];
    float* lrow[R];
    int nv = 0;
    for (int i = 0; i < R; ++i) {
        const size_t lim = a.lim[rr[i]];
        nb[i] = lim - j0 < kAttnBlock ? lim - j0 : kAttnBlock;
        const int n = int((nb[i] + 15) / 16);
        nv = n > nv ? n : nv;
        q[i] = a.q[rr[i]];
        orow[i] = o + rr[i] * hd;
        p[i] = pbuf + i * kAttnBlock;
        lrow[i] = l + rr[i];
    }
    __m512 s[R][4];
    scores_n<R>(nv, q, kt, hd, s);
    float c[R];
    for (int i = 0; i < R; ++i) c[i] = softmax_step(s[i], nv, nb[i], a.scale, first, m[rr[i]], l[rr[i]], pbuf + i * kAttnBlock);
    pv<R>(orow, hd, !first, c, p, nb, v, a.ldv, lrow);
}

}  // namespace

void attn_rows(const AttnRowsArgs& a) {
    const size_t hd = a.hd, rows = a.rows;
    float* o = a.scratch;            // [rows][hd]
    float* m = o + rows * hd;        // [rows]
    float* l = m + rows;             // [rows]
    float* pbuf = l + rows;          // [4][kAttnBlock]
    size_t maxlim = 0;
    for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < hd; ++i) o[r * hd + i] = 0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
        maxlim = a.lim[r] > maxlim ? a.lim[r] : maxlim;
    }
    for (size_t b = 0; b * kAttnBlock < maxlim; ++b) {
        const size_t j0 = b * kAttnBlock;
        const float* kt = a.kt + b * a.kt_stride;
        const float* v = a.v + j0 * a.ldv;
        // rows with visible keys in this block, up to four at a time
        size_t r = 0;
        for (;;) {
            size_t rr[4];
            int R = 0;
            for (; r < rows && R < 4; ++r)
                if (a.lim[r] > j0) rr[R++] = r;
            if (R == 0) break;
            switch (R) {
                case 1: block_rows<1>(a, rr, j0, b == 0, kt, v, o, m, l, pbuf); break;
                case 2: block_rows<2>(a, rr, j0, b == 0, kt, v, o, m, l, pbuf); break;
                case 3: block_rows<3>(a, rr, j0, b == 0, kt, v, o, m, l, pbuf); break;
                default: block_rows<4>(a, rr, j0, b == 0, kt, v, o, m, l, pbuf); break;
            }
        }
    }
    for (size_t r = 0; r < rows; ++r) {
        const __m512 lv = _mm512_set1_ps(l[r]);
        float* out = a.out[r];
        const float* orow = o + r * hd;
        for (size_t i = 0; i < hd; i += 16) {
            const __mmask16 k = mask16(hd - i);
            _mm512_mask_storeu_ps(out + i, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, orow + i), lv));
        }
    }
}

// One vector of each (the loops below and their tails share them, so the
// unrolled body and the masked tail do the same operations per lane):
//   gelu: v / (1 + exp(kGeluK (v + kGeluC v^3)))  (tanh form, kernels.h)
//   silu: x / (1 + exp(-x))
static inline __m512 gelu16(__m512 v) {
    const __m512 y = _mm512_fmadd_ps(_mm512_set1_ps(kGeluC), _mm512_mul_ps(_mm512_mul_ps(v, v), v), v);
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_mul_ps(_mm512_set1_ps(kGeluK), y))));
}
static inline __m512 silu16(__m512 x) {
    const __m512 neg = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int(0x80000000u))));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(neg)));
}

void gelu_tanh(float* x, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {  // four vectors a round, as silu_mul
        __m512 v[4];
        for (int j = 0; j < 4; ++j) v[j] = _mm512_loadu_ps(x + i + 16 * j);
        for (int j = 0; j < 4; ++j) _mm512_storeu_ps(x + i + 16 * j, gelu16(v[j]));
    }
    for (; i < n; i += 16) {
        const __mmask16 k = mask16(n - i);
        _mm512_mask_storeu_ps(x + i, k, gelu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

void silu_mul(float* g, const float* u, size_t n) {
    size_t i = 0;
    // Four vectors a round: one at a time ran at ~17 cycles a vector (the
    // exponential's dependent chain; 128 x 2048 values, one thread, AMD
    // EPYC Zen 5: 67-70 -> 56-58 us). Same operations per lane.
    for (; i + 64 <= n; i += 64) {
        __m512 x[4];
        for (int j = 0; j < 4; ++j) x[j] = _mm512_loadu_ps(g + i + 16 * j);
        for (int j = 0; j < 4; ++j) _mm512_storeu_ps(g + i + 16 * j, _mm512_mul_ps(silu16(x[j]), _mm512_loadu_ps(u + i + 16 * j)));
    }
    for (; i < n; i += 16) {
        const __mmask16 k = mask16(n - i);
        _mm512_mask_storeu_ps(g + i, k, _mm512_mul_ps(silu16(_mm512_maskz_loadu_ps(k, g + i)), _mm512_maskz_loadu_ps(k, u + i)));
    }
}

}  // namespace avx512
}  // namespace qk

#endif
