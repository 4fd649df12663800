// AArch64 Advanced SIMD float64 product under the blocked Cholesky factor
// (Kernels::dgemm_nt_sub): dgemm_nt.h over 2-lane q-registers, 8 rows x 4
// columns of sums in 16 of the 32 registers.
#if defined(__aarch64__)

#include <arm_neon.h>

#include "../dgemm_nt.h"
#include "../isa.h"

namespace qk {
namespace neon {

namespace {
struct Vd {
    using T = float64x2_t;
    static constexpr size_t kLanes = 2;
    static T zero() { return vdupq_n_f64(0.0); }
    static T load(const double* p) { return vld1q_f64(p); }
    static void store(double* p, T v) { vst1q_f64(p, v); }
    static T bcast(double x) { return vdupq_n_f64(x); }
    static T fma(T a, T b, T acc) { return vfmaq_f64(acc, a, b); }
    static T sub(T a, T b) { return vsubq_f64(a, b); }
};
}  // namespace

void dgemm_nt_sub(const double* a, size_t lda, size_t M, const double* b, size_t ldb, size_t N, size_t kc,
                  double* c, size_t ldc) {
    dgemm_nt_sub_simd<Vd, 8>(a, lda, M, b, ldb, N, kc, c, ldc);
}

}  // namespace neon
}  // namespace qk

#endif
