// The float64 Cholesky-inverse factor of calibrated quantization
// (ops/linalg_ops.h): U upper triangular with H^-1 = U^T U, checked as
// H U^T U = I on random SPD matrices of odd sizes; a matrix that is not
// positive definite is refused. ISA independent (runs once per table).
#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops/linalg_ops.h"
#include "harness.h"

QKT_TEST(linalg_chol_inverse_upper) {
    qkt::Rng rng(5, 71);
    for (size_t K : {size_t(1), size_t(2), size_t(3), size_t(17), size_t(64), size_t(131)}) {
        std::vector<double> a(K * K), h(K * K, 0.0);
        for (auto& v : a) v = rng.uni(-1.0f, 1.0f);
        for (size_t i = 0; i < K; ++i)
            for (size_t j = 0; j < K; ++j) {
                double s = i == j ? 0.5 : 0.0;
                for (size_t k = 0; k < K; ++k) s += a[i * K + k] * a[j * K + k];
                h[i * K + j] = s;
            }
        std::vector<double> u = h;
        QKT_CHECK(qk::chol_inverse_upper(u.data(), K), "K=%zu: refused an SPD matrix", K);
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
    std::vector<double> bad = {1, 2, 2, 1};
    QKT_CHECK(!qk::chol_inverse_upper(bad.data(), 2), "an indefinite matrix was accepted");
    std::vector<double> nan = {std::nan("")};
    QKT_CHECK(!qk::chol_inverse_upper(nan.data(), 1), "NaN was accepted");
}
