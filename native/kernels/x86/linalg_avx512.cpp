// AVX-512 float64 product under the blocked Cholesky factor
// (Kernels::dgemm_nt_sub): dgemm_nt.h over 8-lane zmm, 8 rows x 16 columns
// of sums in 16 of the 32 registers.
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include "../dgemm_nt.h"
#include "../isa.h"

namespace qk {
namespace avx512 {

namespace {
struct Vd {
    using T = __m512d;
    static constexpr size_t kLanes = 8;
    static T zero() { return _mm512_setzero_pd(); }
    static T load(const double* p) { return _mm512_loadu_pd(p); }
    static void store(double* p, T v) { _mm512_storeu_pd(p, v); }
    static T bcast(double x) { return _mm512_set1_pd(x); }
    static T fma(T a, T b, T acc) { return _mm512_fmadd_pd(a, b, acc); }
    static T sub(T a, T b) { return _mm512_sub_pd(a, b); }
};
}  // namespace

void dgemm_nt_sub(const double* a, size_t lda, size_t M, const double* b, size_t ldb, size_t N, size_t kc,
                  double* c, size_t ldc) {
    dgemm_nt_sub_simd<Vd, 8>(a, lda, M, b, ldb, N, kc, c, ldc);
}

}  // namespace avx512
}  // namespace qk

#endif
