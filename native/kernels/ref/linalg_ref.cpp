// Scalar reference of the float64 product under the blocked Cholesky factor
// (Kernels::dgemm_nt_sub, kernels.h): one dot product per element, in k order.
#include "../isa.h"

namespace qk {
namespace ref {

void dgemm_nt_sub(const double* a, size_t lda, size_t M, const double* b, size_t ldb, size_t N, size_t kc,
                  double* c, size_t ldc) {
    for (size_t i = 0; i < M; ++i)
        for (size_t j = 0; j < N; ++j) {
            double s = 0;
            for (size_t k = 0; k < kc; ++k) s += a[i * lda + k] * b[j * ldb + k];
            c[i * ldc + j] -= s;
        }
}

}  // namespace ref
}  // namespace qk
