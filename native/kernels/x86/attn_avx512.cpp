// AVX-512 transformer glue kernels: causal attention over the blocked key
// cache (attn_rows) and silu(g) * u. Both evaluate the reference's
// operations (ref/attn_ref.cpp, ref/attn_exp_ref.h) lane by lane, so the
// results are the reference's bits:
//   scores   a block of 64 keys is 4 zmm of lanes; each lane runs the same
//            sequential fma chain over the head dimension as the reference
//            (q[i] broadcast, K row i loaded: no horizontal sums).
//   max      NaN-free (a NaN score never wins vmaxps with the running max
//            as second operand), then any tree (max is exact).
//   p · V    per 64-wide chunk of the head dimension, 4 accumulators, one
//            fma per key in key order (the reference's order per element).
// Work order: blocks outer, rows inner, so one block of K/V (16 KB at
// hd = 64) is read from L1 by every row of the call.
#if defined(__x86_64__) || defined(_M_X64)

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cmath>

#include "../isa.h"
#include "../attn_exp.h"

namespace qk {
namespace avx512 {

namespace {

using namespace attn_exp_consts;

inline __mmask16 mask16(size_t n) { return n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1u); }

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

// o[0 .. hd) = o * c (when rescale), then o[i] = fma(p[jj], V[jj][i], o[i]) for jj < nb.
inline void pv(float* o, size_t hd, bool rescale, float c, const float* p, size_t nb, const float* v, size_t ldv) {
    const __m512 cv = _mm512_set1_ps(c);
    for (size_t i0 = 0; i0 < hd; i0 += 64) {
        const size_t w = hd - i0 < 64 ? hd - i0 : 64;
        __mmask16 mk[4];
        __m512 acc[4];
        for (int u = 0; u < 4; ++u) {
            const size_t lo = size_t(16 * u);
            mk[u] = w > lo ? mask16(w - lo) : __mmask16(0);
            acc[u] = _mm512_maskz_loadu_ps(mk[u], o + i0 + lo);
            if (rescale) acc[u] = _mm512_mul_ps(acc[u], cv);
        }
        if (w == 64) {
            for (size_t jj = 0; jj < nb; ++jj) {
                const __m512 pj = _mm512_set1_ps(p[jj]);
                const float* vj = v + jj * ldv + i0;
                acc[0] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj), acc[0]);
                acc[1] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16), acc[1]);
                acc[2] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 32), acc[2]);
                acc[3] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 48), acc[3]);
            }
        } else {
            for (size_t jj = 0; jj < nb; ++jj) {
                const __m512 pj = _mm512_set1_ps(p[jj]);
                const float* vj = v + jj * ldv + i0;
                for (int u = 0; u < 4; ++u)
                    if (mk[u]) acc[u] = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(mk[u], vj + 16 * u), acc[u]);
            }
        }
        for (int u = 0; u < 4; ++u) _mm512_mask_storeu_ps(o + i0 + 16 * u, mk[u], acc[u]);
    }
}

}  // namespace

void attn_rows(const AttnRowsArgs& a) {
    const size_t hd = a.hd, rows = a.rows;
    float* o = a.scratch;            // [rows][hd]
    float* m = o + rows * hd;        // [rows]
    float* l = m + rows;             // [rows]
    float* p = l + rows;             // [kAttnBlock]
    size_t maxlim = 0;
    for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < hd; ++i) o[r * hd + i] = 0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
        maxlim = a.lim[r] > maxlim ? a.lim[r] : maxlim;
    }
    const __m512 ninf = _mm512_set1_ps(-INFINITY), scale = _mm512_set1_ps(a.scale);
    for (size_t b = 0; b * kAttnBlock < maxlim; ++b) {
        const size_t j0 = b * kAttnBlock;
        const float* kt = a.kt + b * a.kt_stride;
        for (size_t r = 0; r < rows; ++r) {
            const size_t lim = a.lim[r];
            if (lim <= j0) continue;
            const size_t nb = lim - j0 < kAttnBlock ? lim - j0 : kAttnBlock;
            const float* q = a.q[r];
            __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            for (size_t i = 0; i < hd; ++i) {
                const __m512 qi = _mm512_set1_ps(q[i]);
                const float* kr = kt + i * kAttnBlock;
                s0 = _mm512_fmadd_ps(qi, _mm512_loadu_ps(kr), s0);
                s1 = _mm512_fmadd_ps(qi, _mm512_loadu_ps(kr + 16), s1);
                s2 = _mm512_fmadd_ps(qi, _mm512_loadu_ps(kr + 32), s2);
                s3 = _mm512_fmadd_ps(qi, _mm512_loadu_ps(kr + 48), s3);
            }
            const __mmask16 k0 = mask16(nb), k1 = nb > 16 ? mask16(nb - 16) : 0, k2 = nb > 32 ? mask16(nb - 32) : 0,
                            k3 = nb > 48 ? mask16(nb - 48) : 0;
            s0 = _mm512_mask_blend_ps(k0, ninf, _mm512_mul_ps(s0, scale));
            s1 = _mm512_mask_blend_ps(k1, ninf, _mm512_mul_ps(s1, scale));
            s2 = _mm512_mask_blend_ps(k2, ninf, _mm512_mul_ps(s2, scale));
            s3 = _mm512_mask_blend_ps(k3, ninf, _mm512_mul_ps(s3, scale));
            __m512 mv = _mm512_max_ps(s0, ninf);
            mv = _mm512_max_ps(s1, mv);
            mv = _mm512_max_ps(s2, mv);
            mv = _mm512_max_ps(s3, mv);
            const float mb = hmax(mv);
            const float mn = b == 0 ? mb : (mb > m[r] ? mb : m[r]);
            float c = 1.0f;
            if (b > 0) {
                c = _mm512_cvtss_f32(exp16(_mm512_set1_ps(m[r] - mn)));
                l[r] *= c;
            }
            const __m512 mnv = _mm512_set1_ps(mn);
            _mm512_storeu_ps(p, _mm512_maskz_mov_ps(k0, exp16(_mm512_sub_ps(s0, mnv))));
            _mm512_storeu_ps(p + 16, _mm512_maskz_mov_ps(k1, exp16(_mm512_sub_ps(s1, mnv))));
            _mm512_storeu_ps(p + 32, _mm512_maskz_mov_ps(k2, exp16(_mm512_sub_ps(s2, mnv))));
            _mm512_storeu_ps(p + 48, _mm512_maskz_mov_ps(k3, exp16(_mm512_sub_ps(s3, mnv))));
            float lr = l[r];
            for (size_t jj = 0; jj < nb; ++jj) lr += p[jj];
            l[r] = lr;
            pv(o + r * hd, hd, b > 0, c, p, nb, a.v + j0 * a.ldv, a.ldv);
            m[r] = mn;
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

void silu_mul(float* g, const float* u, size_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512i sign = _mm512_set1_epi32(int(0x80000000u));
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = mask16(n - i);
        const __m512 x = _mm512_maskz_loadu_ps(k, g + i);
        const __m512 e = exp16(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), sign)));  // exp(-x)
        const __m512 y = _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(k, u + i));
        _mm512_mask_storeu_ps(g + i, k, y);
    }
}

}  // namespace avx512
}  // namespace qk

#endif
