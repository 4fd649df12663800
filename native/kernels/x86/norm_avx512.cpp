// AVX-512 row norms and rotary embeddings (NormArgs, RopeArgs in
// kernels.h): the reference's double operations eight lanes at a time, so
// its bits. A row's eight partial sums are the eight lanes of one __m512d
// (value i in lane i % 8, each lane in index order), and its products and
// conversions are the reference's, one rounding each. One row's sum is a
// chain of dependent adds (4 cycles per 8 values), so rows go four at a
// time with their chains interleaved; the order within a row is unchanged.
#if defined(__x86_64__) || defined(_M_X64)

#include "gcc_avx512_warnings.h"

#include <immintrin.h>

#include <cmath>

#include "../isa.h"
#include "avx512_mask.h"

namespace qk {
namespace avx512 {

namespace {

inline __mmask8 mask8(size_t n) { return n >= 8 ? __mmask8(0xFF) : __mmask8((1u << n) - 1u); }

// f32 values p[0 .. 8) (lanes past mask k: 0) as doubles, and back.
inline __m512d load8(const float* p, __mmask8 k) { return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, p)); }
inline void store8(float* p, __mmask8 k, __m512d v) { _mm256_mask_storeu_ps(p, k, _mm512_cvtpd_ps(v)); }

// ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)) of the lanes.
inline double finish(__m512d p) {
    alignas(64) double q[8];
    _mm512_store_pd(q, p);
    return ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
}

// The row sums of f over x: value i into lane i % 8 of acc[j], each lane in
// index order (lanes past D add nothing).
template <int R, class F>
inline void sums(float* const* x, size_t D, F f, __m512d* acc) {
    for (int j = 0; j < R; ++j) acc[j] = _mm512_setzero_pd();
    const size_t body = D / 8 * 8;
    for (size_t i = 0; i < body; i += 8)
        for (int j = 0; j < R; ++j) acc[j] = _mm512_add_pd(acc[j], f(_mm512_cvtps_pd(_mm256_loadu_ps(x[j] + i)), j));
    if (const __mmask8 kt = mask8(D - body))
        for (int j = 0; j < R; ++j) acc[j] = _mm512_mask_add_pd(acc[j], kt, acc[j], f(load8(x[j] + body, kt), j));
}

// Rows r .. r + R - 1 of the call.
template <int R>
void norm_block(const NormArgs& a, size_t r) {
    // (locals: the stores below may alias `a` as far as the compiler knows)
    const size_t D = a.D;
    const float* const w = a.w;
    const float* const b = a.b;
    const double eps = a.eps;
    float* x[R];
    float* o[R];
    for (int j = 0; j < R; ++j) x[j] = a.x + (r + j) * D, o[j] = a.out + (r + j) * D;
    if (a.residual) {
        for (int j = 0; j < R; ++j) {
            const float* res = a.residual + (r + j) * D;
            for (size_t i = 0; i < D; i += 16) {
                const __mmask16 k = mask16(D - i);
                _mm512_mask_storeu_ps(x[j] + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, x[j] + i), _mm512_maskz_loadu_ps(k, res + i)));
            }
        }
    }
    // rms: the mean is taken as 0 (x - 0 is x exactly, so these are the
    // reference's (x inv) w); layer: the mean, then the squared deviations
    __m512d acc[R], mean[R];
    if (a.kind == NormKind::rms) {
        sums<R>(x, D, [](__m512d v, int) { return _mm512_mul_pd(v, v); }, acc);  // exact in double
        for (int j = 0; j < R; ++j) mean[j] = _mm512_setzero_pd();
    } else {
        sums<R>(x, D, [](__m512d v, int) { return v; }, acc);
        for (int j = 0; j < R; ++j) mean[j] = _mm512_set1_pd(finish(acc[j]) / double(D));
        sums<R>(x, D, [&mean](__m512d v, int j) {
            const __m512d d = _mm512_sub_pd(v, mean[j]);
            return _mm512_mul_pd(d, d);
        }, acc);
    }
    for (int j = 0; j < R; ++j) {
        const __m512d inv = _mm512_set1_pd(1.0 / std::sqrt(finish(acc[j]) / double(D) + eps));
        const float* const xj = x[j];
        float* const oj = o[j];
        for (size_t i = 0; i < D; i += 8) {
            const __mmask8 k = mask8(D - i);
            __m512d y = _mm512_mul_pd(_mm512_sub_pd(load8(xj + i, k), mean[j]), inv);
            if (w) y = _mm512_mul_pd(y, load8(w + i, k));
            if (b) y = _mm512_add_pd(y, load8(b + i, k));
            store8(oj + i, k, y);
        }
    }
}

}  // namespace

void norm_rows(const NormArgs& a, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) norm_block<4>(a, r);
    for (; r < r1; ++r) norm_block<1>(a, r);
}

// Eight pairs per step: x0, x1 as doubles, then
//   a = x0 c - x1 s,  b = x0 s + x1 c   (each product and sum rounded)
// as the reference. Interleaved pairs are split into x0 / x1 lanes with a
// permute and put back the same way.
void rope_rows(const RopeArgs& a, size_t t0, size_t t1) {
    const size_t half = a.half;
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i lo_pairs = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0), hi_pairs = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    const bool interleaved = a.interleaved;
    const size_t n_heads = a.n_heads, stride = a.stride;
    float* const x = a.x;
    for (size_t t = t0; t < t1; ++t) {
        const double* c = a.cos + (a.pos0 + t) * half;
        const double* s = a.sin + (a.pos0 + t) * half;
        for (size_t h = 0; h < n_heads; ++h) {
            float* v = x + (t * n_heads + h) * stride;
            for (size_t i = 0; i < half; i += 8) {
                const __mmask8 k = mask8(half - i);
                const __m512d cc = _mm512_maskz_loadu_pd(k, c + i), ss = _mm512_maskz_loadu_pd(k, s + i);
                if (!interleaved) {
                    const __m512d x0 = load8(v + i, k), x1 = load8(v + half + i, k);
                    store8(v + i, k, _mm512_sub_pd(_mm512_mul_pd(x0, cc), _mm512_mul_pd(x1, ss)));
                    store8(v + half + i, k, _mm512_add_pd(_mm512_mul_pd(x0, ss), _mm512_mul_pd(x1, cc)));
                    continue;
                }
                const __mmask16 k2 = mask16(2 * (half - i));
                const __m512 raw = _mm512_maskz_loadu_ps(k2, v + 2 * i);
                const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(raw));
                const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(raw), 1)));
                const __m512d x0 = _mm512_permutex2var_pd(lo, even, hi), x1 = _mm512_permutex2var_pd(lo, odd, hi);
                const __m512d ya = _mm512_sub_pd(_mm512_mul_pd(x0, cc), _mm512_mul_pd(x1, ss));
                const __m512d yb = _mm512_add_pd(_mm512_mul_pd(x0, ss), _mm512_mul_pd(x1, cc));
                const __m256 out_lo = _mm512_cvtpd_ps(_mm512_permutex2var_pd(ya, lo_pairs, yb));
                const __m256 out_hi = _mm512_cvtpd_ps(_mm512_permutex2var_pd(ya, hi_pairs, yb));
                const __m512 out = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(out_lo)), _mm256_castps_pd(out_hi), 1));
                _mm512_mask_storeu_ps(v + 2 * i, k2, out);
            }
        }
    }
}

}  // namespace avx512
}  // namespace qk

#endif
