// AVX2 row norms and rotary embeddings (NormArgs, RopeArgs in kernels.h):
// the reference's double operations four lanes at a time, so its bits. A
// row's eight partial sums are two __m256d (lanes 0-3 and 4-7: value i in
// partial i % 8, each in index order); rows go four at a time so that
// their dependent add chains overlap (see norm_avx512.cpp).
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cmath>

#include "../isa.h"

namespace qk {
namespace avx2 {

namespace {

// Lane mask of the first n of 4 (all from n = 4 up), for maskload/maskstore.
inline __m128i mask4(size_t n) {
    const __m128i idx = _mm_setr_epi32(0, 1, 2, 3);
    return _mm_cmpgt_epi32(_mm_set1_epi32(int(n < 4 ? n : 4)), idx);
}

// f32 values p[0 .. 4) (lanes past mask k: 0) as doubles, and back.
inline __m256d load4(const float* p, __m128i k) { return _mm256_cvtps_pd(_mm_maskload_ps(p, k)); }
inline void store4(float* p, __m128i k, __m256d v) { _mm_maskstore_ps(p, k, _mm256_cvtpd_ps(v)); }
// The lanes of k (as doubles) kept, the others +0.
inline __m256d keep(__m256d v, __m128i k) { return _mm256_and_pd(v, _mm256_castsi256_pd(_mm256_cvtepi32_epi64(k))); }

inline double finish(__m256d lo, __m256d hi) {
    alignas(32) double p[8];
    _mm256_store_pd(p, lo);
    _mm256_store_pd(p + 4, hi);
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// The row sums of f over x, partial i % 8 in lane i % 4 of acc[i % 8 / 4].
// Lanes past D add +0, which leaves a partial sum as it is (a sum that
// starts at +0 is never -0).
template <int R, class F>
inline void sums(float* const* x, size_t D, F f, __m256d (*acc)[2]) {
    for (int j = 0; j < R; ++j) acc[j][0] = acc[j][1] = _mm256_setzero_pd();
    for (size_t i = 0; i < D; i += 8) {
        const __m128i k0 = mask4(D - i), k1 = mask4(D - i > 4 ? D - i - 4 : 0);
        for (int j = 0; j < R; ++j) {
            acc[j][0] = _mm256_add_pd(acc[j][0], keep(f(load4(x[j] + i, k0), j), k0));
            acc[j][1] = _mm256_add_pd(acc[j][1], keep(f(load4(x[j] + i + 4, k1), j), k1));
        }
    }
}

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
            size_t i = 0;
            for (; i + 8 <= D; i += 8)
                _mm256_storeu_ps(x[j] + i, _mm256_add_ps(_mm256_loadu_ps(x[j] + i), _mm256_loadu_ps(res + i)));
            for (; i < D; ++i) x[j][i] = x[j][i] + res[i];
        }
    }
    // rms: the mean is taken as 0 (x - 0 is x exactly, so these are the
    // reference's (x inv) w); layer: the mean, then the squared deviations
    __m256d acc[R][2];
    __m256d mean[R];
    double inv[R];
    if (a.kind == NormKind::rms) {
        sums<R>(x, D, [](__m256d v, int) { return _mm256_mul_pd(v, v); }, acc);  // exact in double
        for (int j = 0; j < R; ++j) mean[j] = _mm256_setzero_pd();
    } else {
        sums<R>(x, D, [](__m256d v, int) { return v; }, acc);
        for (int j = 0; j < R; ++j) mean[j] = _mm256_set1_pd(finish(acc[j][0], acc[j][1]) / double(D));
        sums<R>(x, D, [&mean](__m256d v, int j) {
            const __m256d d = _mm256_sub_pd(v, mean[j]);
            return _mm256_mul_pd(d, d);
        }, acc);
    }
    for (int j = 0; j < R; ++j) inv[j] = 1.0 / std::sqrt(finish(acc[j][0], acc[j][1]) / double(D) + eps);
    for (int j = 0; j < R; ++j) {
        const __m256d iv = _mm256_set1_pd(inv[j]);
        const float* const xj = x[j];
        float* const oj = o[j];
        for (size_t i = 0; i < D; i += 4) {
            const __m128i k = mask4(D - i);
            __m256d y = _mm256_mul_pd(_mm256_sub_pd(load4(xj + i, k), mean[j]), iv);
            if (w) y = _mm256_mul_pd(y, load4(w + i, k));
            if (b) y = _mm256_add_pd(y, load4(b + i, k));
            store4(oj + i, k, y);
        }
    }
}

}  // namespace

void norm_rows(const NormArgs& a, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) norm_block<4>(a, r);
    for (; r < r1; ++r) norm_block<1>(a, r);
}

// Four pairs per step, as norm_avx512.cpp's rope_rows. Interleaved pairs:
// unpacklo / unpackhi of the two converted halves give x0 and x1 in pair
// order 0, 2, 1, 3, so c and s are permuted the same way, and the same two
// unpacks put the results back in place.
void rope_rows(const RopeArgs& a, size_t t0, size_t t1) {
    const size_t half = a.half;
    const bool interleaved = a.interleaved;
    const size_t n_heads = a.n_heads, stride = a.stride;
    float* const x = a.x;
    for (size_t t = t0; t < t1; ++t) {
        const double* c = a.cos + (a.pos0 + t) * half;
        const double* s = a.sin + (a.pos0 + t) * half;
        for (size_t h = 0; h < n_heads; ++h) {
            float* v = x + (t * n_heads + h) * stride;
            for (size_t i = 0; i < half; i += 4) {
                const __m128i k = mask4(half - i);
                const __m256i kd = _mm256_cvtepi32_epi64(k);
                __m256d cc = _mm256_maskload_pd(c + i, kd), ss = _mm256_maskload_pd(s + i, kd);
                if (!interleaved) {
                    const __m256d x0 = load4(v + i, k), x1 = load4(v + half + i, k);
                    store4(v + i, k, _mm256_sub_pd(_mm256_mul_pd(x0, cc), _mm256_mul_pd(x1, ss)));
                    store4(v + half + i, k, _mm256_add_pd(_mm256_mul_pd(x0, ss), _mm256_mul_pd(x1, cc)));
                    continue;
                }
                const size_t n = half - i < 4 ? half - i : 4;  // pairs in this step
                const __m128i k0 = mask4(2 * n), k1 = mask4(2 * n > 4 ? 2 * n - 4 : 0);
                const __m256d lo = load4(v + 2 * i, k0), hi = load4(v + 2 * i + 4, k1);
                const __m256d x0 = _mm256_unpacklo_pd(lo, hi), x1 = _mm256_unpackhi_pd(lo, hi);
                cc = _mm256_permute4x64_pd(cc, _MM_SHUFFLE(3, 1, 2, 0));
                ss = _mm256_permute4x64_pd(ss, _MM_SHUFFLE(3, 1, 2, 0));
                const __m256d ya = _mm256_sub_pd(_mm256_mul_pd(x0, cc), _mm256_mul_pd(x1, ss));
                const __m256d yb = _mm256_add_pd(_mm256_mul_pd(x0, ss), _mm256_mul_pd(x1, cc));
                store4(v + 2 * i, k0, _mm256_unpacklo_pd(ya, yb));
                store4(v + 2 * i + 4, k1, _mm256_unpackhi_pd(ya, yb));
            }
        }
    }
}

}  // namespace avx2
}  // namespace qk

#endif
