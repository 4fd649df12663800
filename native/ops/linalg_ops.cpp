#include "linalg_ops.h"

#include <cmath>
#include <vector>

#include "../threadpool.h"

namespace qk {

namespace {

// Four independent partial sums: the compiler vectorizes this loop and the
// FMA/add latency is hidden (the Cholesky and the inverse are all dot
// products of contiguous row prefixes).
inline double dot(const double* a, const double* b, size_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

}  // namespace

bool chol_inverse_upper(double* h, size_t K) {
    if (K == 0) return true;
    // A = J H J (lower triangle), row-major: A[i][j] = H[K-1-i][K-1-j].
    std::vector<double> a(K * K, 0.0);
    for (size_t i = 0; i < K; ++i)
        for (size_t j = 0; j <= i; ++j) a[i * K + j] = h[(K - 1 - i) * K + (K - 1 - j)];
    // Cholesky-Banachiewicz, row by row: R[i][j] = (A[i][j] - R[i][:j].R[j][:j]) / R[j][j].
    for (size_t i = 0; i < K; ++i) {
        double* ri = a.data() + i * K;
        for (size_t j = 0; j < i; ++j) {
            const double* rj = a.data() + j * K;
            ri[j] = (ri[j] - dot(ri, rj, j)) / rj[j];
        }
        const double d = ri[i] - dot(ri, ri, i);
        if (!(d > 0) || !std::isfinite(d)) return false;
        ri[i] = std::sqrt(d);
    }
    // Rinv = R^-1 (lower), one column at a time (independent columns): for
    // column c, x[c] = 1 / R[c][c], x[i] = -R[i][c:i].x[c:i] / R[i][i].
    // Stored transposed (row c of `inv` holds column c) so that every dot
    // product reads two contiguous ranges.
    std::vector<double> inv(K * K, 0.0);
    parallel_for(K, [&](size_t c, size_t) {
        double* x = inv.data() + c * K;  // x[i] = Rinv[i][c], i >= c
        x[c] = 1.0 / a[c * K + c];
        for (size_t i = c + 1; i < K; ++i) {
            const double* ri = a.data() + i * K;
            x[i] = -dot(ri + c, x + c, i - c) / ri[i];
        }
    });
    // U = J Rinv J: U[p][q] = Rinv[K-1-p][K-1-q] = inv[(K-1-q) * K + (K-1-p)], upper.
    for (size_t p = 0; p < K; ++p)
        for (size_t q = 0; q < K; ++q) h[p * K + q] = q >= p ? inv[(K - 1 - q) * K + (K - 1 - p)] : 0.0;
    return true;
}

}  // namespace qk
