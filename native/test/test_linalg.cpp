// The float64 linear algebra of calibrated quantization, on every ISA table:
// the product kernel dgemm_nt_sub against the reference's dot products
// (odd shapes, row strides wider than the rows, k past one packing chunk);
// and the Cholesky-inverse factor (ops/linalg_ops.h): U upper triangular
// with H^-1 = U^T U, checked as H U^T U = I on random SPD matrices of odd
// sizes, on both sides of the block size; a matrix that is not positive
// definite is refused.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops/linalg_ops.h"
#include "harness.h"

QKT_TEST(linalg_dgemm_nt_sub) {
    qkt::Rng rng(6, 71);
    struct Shape { size_t M, N, kc, pad; };
    for (const Shape& sh : {Shape{1, 1, 1, 0}, Shape{3, 5, 7, 1}, Shape{8, 16, 64, 0}, Shape{13, 37, 300, 3}, Shape{64, 70, 129, 2},
                            Shape{9, 17, 600, 5}, Shape{5, 3, 0, 0}}) {
        const size_t lda = sh.kc + sh.pad, ldb = sh.kc + 2 * sh.pad, ldc = sh.N + sh.pad;
        std::vector<double> a(sh.M * lda), b(sh.N * ldb), c(sh.M * ldc);
        for (auto& v : a) v = rng.uni(-1.0f, 1.0f);
        for (auto& v : b) v = rng.uni(-1.0f, 1.0f);
        for (auto& v : c) v = rng.uni(-4.0f, 4.0f);
        std::vector<double> want = c, got = c;
        qk::kernels_ref.dgemm_nt_sub(a.data(), lda, sh.M, b.data(), ldb, sh.N, sh.kc, want.data(), ldc);
        ctx.k->dgemm_nt_sub(a.data(), lda, sh.M, b.data(), ldb, sh.N, sh.kc, got.data(), ldc);
        for (size_t i = 0; i < sh.M; ++i)
            for (size_t j = 0; j < ldc; ++j) {
                const double w = want[i * ldc + j], g = got[i * ldc + j];
                if (j >= sh.N) {
                    QKT_CHECK(g == c[i * ldc + j], "M=%zu N=%zu kc=%zu: padding C[%zu][%zu] was written", sh.M, sh.N, sh.kc, i, j);
                    continue;
                }
                // the orders of summation differ: allow a few ulps of the sum of |terms|
                double mag = std::fabs(c[i * ldc + j]);
                for (size_t k = 0; k < sh.kc; ++k) mag += std::fabs(a[i * lda + k] * b[j * ldb + k]);
                QKT_CHECK(std::fabs(g - w) <= 1e-14 * mag, "M=%zu N=%zu kc=%zu: C[%zu][%zu] = %.17g, reference %.17g", sh.M, sh.N, sh.kc, i, j, g, w);
            }
    }
}

QKT_TEST(linalg_chol_inverse_upper) {
    qkt::Rng rng(5, 71);
    for (size_t K : {size_t(1), size_t(2), size_t(3), size_t(17), size_t(64), size_t(65), size_t(131), size_t(200)}) {
        std::vector<double> a(K * K), h(K * K, 0.0);
        for (auto& v : a) v = rng.uni(-1.0f, 1.0f);
        for (size_t i = 0; i < K; ++i)
            for (size_t j = 0; j < K; ++j) {
                double s = i == j ? 0.5 : 0.0;
                for (size_t k = 0; k < K; ++k) s += a[i * K + k] * a[j * K + k];
                h[i * K + j] = s;
            }
        std::vector<double> u = h;
        QKT_CHECK(qk::chol_inverse_upper(*ctx.k, u.data(), K), "K=%zu: refused an SPD matrix", K);
        double worst = 0;
        for (size_t i = 0; i < K; ++i)
            for (size_t j = 0; j < i; ++j) QKT_CHECK(u[i * K + j] == 0.0, "K=%zu: U[%zu][%zu] below the diagonal is %g", K, i, j, u[i * K + j]);
        for (size_t i = 0; i < K; ++i)
            for (size_t j = 0; j < K; ++j) {
                double s = 0;
                for (size_t k = 0; k < K; ++k) {
                    double hinv = 0;  // (U^T U)[k][j]
                    for (size_t p = 0; p <= std::min(k, j); ++p) hinv += u[p * K + k] * u[p * K + j];
                    s += h[i * K + k] * hinv;
                }
                worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
            }
        QKT_CHECK(worst < 1e-9, "K=%zu: max |H U^T U - I| = %g", K, worst);
    }
    {
        // indefinite only in the second block of the factor (row 150 of the reversed matrix)
        const size_t K = 170;
        std::vector<double> h(K * K, 0.0);
        for (size_t i = 0; i < K; ++i) {
            h[i * K + i] = 2.0;
            if (i > 0) h[i * K + i - 1] = h[(i - 1) * K + i] = 0.5;
        }
        h[19 * K + 19] = -1.0;
        QKT_CHECK(!qk::chol_inverse_upper(*ctx.k, h.data(), K), "a matrix indefinite past the first block was accepted");
    }
    std::vector<double> bad = {1, 2, 2, 1};
    QKT_CHECK(!qk::chol_inverse_upper(*ctx.k, bad.data(), 2), "an indefinite matrix was accepted");
    std::vector<double> nan = {std::nan("")};
    QKT_CHECK(!qk::chol_inverse_upper(*ctx.k, nan.data(), 1), "NaN was accepted");
}
