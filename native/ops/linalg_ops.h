// Dense linear algebra for calibrated quantization (GPTQ), in float64.
#pragma once

#include <cstddef>

namespace qk {

// The upper Cholesky factor of the inverse of a symmetric positive definite
// matrix: given H [K, K] (row-major, float64; only its lower triangle is
// read), overwrites it with the upper-triangular U such that H^-1 = U^T U
// (zeros below the diagonal). This is the matrix GPTQ walks column by
// column. Computed without forming H^-1: with J the index reversal,
// J H J = R R^T (lower Cholesky factor R) gives H^-1 = (J R^-T J)(J R^-1 J),
// so U = J R^-1 J. Work: K^3 / 3 for the factor, K^3 / 3 for the inverse
// (its columns in parallel on the thread pool).
// Returns false (H unchanged in meaning, contents unspecified) when H is not
// numerically positive definite (a pivot <= 0 or not finite).
bool chol_inverse_upper(double* h, size_t K);

}  // namespace qk
