// Dense linear algebra for calibrated quantization (GPTQ), in float64.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../kernels/kernels.h"

namespace qk {

// The upper Cholesky factor of the inverse of a symmetric positive definite
// matrix: given H [K, K] (row-major, float64; only its lower triangle is
// read), overwrites it with the upper-triangular U such that H^-1 = U^T U
// (zeros below the diagonal). This is the matrix GPTQ walks column by
// column. Computed without forming H^-1: with J the index reversal,
// J H J = R R^T (lower Cholesky factor R) gives H^-1 = (J R^-T J)(J R^-1 J),
// so U = J R^-1 J. Work: about K^3 / 6 multiply-adds for the factor and as
// many for the inverse, both blocked so that nearly all of it runs in the
// float64 product kernel (Kernels::dgemm_nt_sub) on the thread pool.
// Returns false (H unchanged in meaning, contents unspecified) when H is not
// numerically positive definite (a pivot <= 0 or not finite).
bool chol_inverse_upper(const Kernels& k, double* h, size_t K);

// One stretch of GPTQ's column walk (lib/quant/gptq.ts, which documents the
// algorithm): the columns [p0, p1) of the lazy-batch block [b0, b1), in walk
// order. For each row n and column p: q = clamp(round_half_even(w / s) + z,
// qmin, qmax) with the scale and zero point of the storage column's group,
// written to codes[n, col[p]]; e = (w - (q - z) * s) / U[p, p], kept in
// E[n, p - b0]; and every later column of the block, t in (p, b1), takes
// w[n, t] -= e * U[p, t]. Rows are independent (in parallel). The arithmetic
// is the one the TypeScript walk used (float quotient and dequantized value,
// float64 error and update, rounded to float when stored), so the codes are
// the same bits.
struct GptqWalk {
    float* w;               // working weights [N, K], walk order
    size_t N, K;
    const double* u;        // U [K, K] (walk order)
    const int32_t* col;     // [K]: the storage column walked p-th
    const float* scales;    // [N, ng], storage order of groups
    const int32_t* zps;     // [N, ng]
    size_t ng, G;           // groups per row, columns per group
    int32_t qmin, qmax;
    int8_t* codes;          // [N, K], storage order
    float* e;               // E [N, b1 - b0]
    size_t b0, b1;
};
void gptq_walk(const GptqWalk& g, size_t p0, size_t p1);

// GPTQ's lazy-batch update after the block [b0, b1) of a walk over w [N, K]:
// W[:, b1:] -= E [N, b1 - b0] · U[b0:b1, b1:], as one f32 GEMM (the driver
// of gemm_ops.h, U's block rounded to float and transposed into a weight
// [K - b1, b1 - b0]) and a float subtraction: the product and rounding the
// TypeScript did through matmul(), so the same bits.
void gptq_lazy_update(const Kernels& k, float* w, size_t N, size_t K, const double* u, const float* e, size_t b0,
                      size_t b1);

// GPTQ's group fit (lib/quant/gptq.ts), rows in parallel. For a slice
// x [N, L] in groups of G columns (the last one shorter when G does not
// divide L; gl = ceil(L / G) per row) whose columns are columns k0 .. k0 + L
// of the layer's Hessian h (float64, row stride ldh, symmetric), a group
// quantized with scale s = scales[n, j] and zero point z = zps[n, j] (zps
// may be null: 0) has codes q = clamp(round_half_even(x / s) + z, qmin,
// qmax) (the quotient in float) and rounding error r = x - (q - z) * s (the
// dequantized value in float). Its error is the change of the layer's
// output it causes on the calibration inputs, r' H_g r, H_g the group's
// diagonal block of h, taken in diagonal blocks of kGroupHBlock columns
// (a per-channel group of K columns would cost K^2 per row otherwise).
// Sums in float64 through the product kernel (dgemm_nt_sub), so the last
// bits depend on the ISA as GPTQ's updates do.
constexpr size_t kGroupHBlock = 128;
// gptq_group_errors: out[n, j] = that error.
void gptq_group_errors(const Kernels& kn, const float* x, size_t N, size_t L, size_t G, const float* scales,
                       const int32_t* zps, int32_t qmin, int32_t qmax, const double* h, size_t ldh, size_t k0,
                       double* out);
// gptq_group_refit: per group, up to `rounds` times: the codes at the
// current scale, then the scale that fits those codes best under H_g
// (least squares: s = (d' H_g x) / (d' H_g d), d = q - z; z stays), kept
// (rounded to float) while its own error is lower than err[n, j], which
// holds the error of scales[n, j] on entry; both updated in place.
void gptq_group_refit(const Kernels& kn, const float* x, size_t N, size_t L, size_t G, float* scales,
                      const int32_t* zps, int32_t qmin, int32_t qmax, const double* h, size_t ldh, size_t k0,
                      size_t rounds, double* err);
// clamp_groups: out[n, i] = clamp(x[n, i], lo[n, j] * c, hi[n, j] * c) for i
// in group j, the bounds in float64, rounded to float when stored.
void clamp_groups(const float* x, size_t N, size_t L, size_t G, const float* lo, const float* hi, double c, float* out);

}  // namespace qk
