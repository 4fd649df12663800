// Scalar reference of the W8A8 int8 GEMM (Kernels::gemm_w8a8). This file IS
// the specification: every SIMD version returns the same int32 sums and the
// same floats, bit for bit (see W8A8Args in kernels.h).
// Compiled without ISA flags.
#include "../isa.h"

namespace qk {
namespace ref {

// acc[m, n] = sum_k (a[m, k] - 128) * b[n, k] in int32, then the raw store or
// the fused rescale ((float)acc * sa[m]) * sb[n] (+ y) (+ bias).
void gemm_w8a8(const W8A8Args& a, size_t n0, size_t n1) {
    for (size_t m = 0; m < a.M; ++m) {
        const uint8_t* x = a.a + m * a.lda;
        for (size_t n = n0; n < n1; ++n) {
            const int8_t* w = a.b + n * a.ldb;
            int32_t acc = 0;
            for (size_t k = 0; k < a.K; ++k) acc += (int32_t(x[k]) - 128) * int32_t(w[k]);
            if (a.c) {
                a.c[m * a.ldc + n] = acc;
                continue;
            }
            float v = float(acc) * a.sa[m];
            v = v * a.sb[n];
            float* y = a.y + m * a.ldy + n;
            if (a.accumulate) v = v + *y;
            if (a.bias) v = v + a.bias[n];
            *y = v;
        }
    }
}

// One packed block: ap[q * 64 + 4 i + j] = a[i, 4 q + j], 0 past rows / K.
void w8a8_pack_a(const uint8_t* a, size_t lda, size_t rows, size_t K, uint8_t* ap) {
    const size_t Kq = (K + 3) / 4;
    for (size_t q = 0; q < Kq; ++q)
        for (size_t i = 0; i < 16; ++i)
            for (size_t j = 0; j < 4; ++j) {
                const size_t k = 4 * q + j;
                ap[q * 64 + 4 * i + j] = (i < rows && k < K) ? a[i * lda + k] : 0;
            }
}

}  // namespace ref
}  // namespace qk
