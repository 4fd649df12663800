// AVX2 + FMA float64 product under the blocked Cholesky factor
// (Kernels::dgemm_nt_sub): dgemm_nt.h over 4-lane ymm, 6 rows x 8 columns of
// sums in 12 registers (16 ymm in all).
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "../dgemm_nt.h"
#include "../isa.h"

namespace qk {
namespace avx2 {

namespace {
struct Vd {
    using T = __m256d;
    static constexpr size_t kLanes = 4;
    static T zero() { return _mm256_setzero_pd(); }
    static T load(const double* p) { return _mm256_loadu_pd(p); }
    static void store(double* p, T v) { _mm256_storeu_pd(p, v); }
    static T bcast(double x) { return _mm256_set1_pd(x); }
    static T fma(T a, T b, T acc) { return _mm256_fmadd_pd(a, b, acc); }
    static T sub(T a, T b) { return _mm256_sub_pd(a, b); }
};
}  // namespace

void dgemm_nt_sub(const double* a, size_t lda, size_t M, const double* b, size_t ldb, size_t N, size_t kc,
                  double* c, size_t ldc) {
    dgemm_nt_sub_simd<Vd, 6>(a, lda, M, b, ldb, N, kc, c, ldc);
}

}  // namespace avx2
}  // namespace qk

#endif
