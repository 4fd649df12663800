// W4A8: an int4 weight (per-group or per-channel scales, symmetric or with
// zero points: what qk::quantize gives for bits 4) times activations
// quantized to int8 on every call, per block of 32 consecutive values of a
// row (symmetric absmax: qk::choose_params for 8 bits, codes in
// [-127, 127]). This is the arithmetic of ONNX Runtime's MatMulNBits with
// accuracy_level 4: the products are exact int32 sums per (weight group x
// activation block) segment, rescaled in float. See W4A8Args (kernels.h)
// for the exact formula. Work is split over blocks of N; the result does not
// depend on the thread count, nor (batch invariance) on M or the other rows.
// Compiled without ISA flags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../kernels/kernels.h"

namespace qk {

// The activation operands of W4A8Args for M rows of K values (group G).
struct W4A8Acts {
    size_t M = 0, K = 0, G = 0;
    size_t ldx = 0, ldsx = 0, ldsxl = 0, ldtg = 0;
    std::vector<int8_t> xc;
    std::vector<float> sx, sxl, tg;
};

// Quantize x[M, K] per block of 32 into `acts` (layout of W4A8Args).
// Returns SIZE_MAX, or the flat index of the first NaN/Inf of x.
// ldx: row stride of x in floats (0: K), so a column range of a wider X can be quantized in place.
size_t w4a8_quantize_rows(const Kernels& k, const float* x, size_t M, size_t K, size_t G, W4A8Acts& acts, size_t ldx = 0);

// Y[M, N] (row stride N) = x[M, K] · W^T (+ bias[N] or nullptr) with w an
// i4 WeightView of N rows (K even, G even and dividing K). Same return value
// as w4a8_quantize_rows (Y is then unspecified). Row-invariant: a row's
// result does not depend on M or on the other rows (the two kernels the
// driver picks between by M, Kernels::w4a8_rows_min_m, give the same bits).
size_t gemm_w4a8(const Kernels& k, const WeightView& w, size_t N, size_t K, const float* x, size_t M,
                 const float* bias, float* y);
size_t gemm_w4a8(const WeightView& w, size_t N, size_t K, const float* x, size_t M, const float* bias, float* y);

// One product of a gemm_w4a8_multi call: y[M, N] = x · w^T (+ bias).
struct W4A8Product {
    WeightView w;
    size_t N;
    const float* bias;  // [N] or nullptr
    float* y;           // [M, N]
};
// Most products one call shares its activations among (q, k, v: 3).
constexpr size_t kW4A8MaxProducts = 4;

// Several products of one input x[M, K] (a layer's q/k/v projections, or
// gate/up): each y_p as gemm_w4a8 gives it, bit for bit. When the weights
// have the same group size (and no split last group), x is quantized once
// and every product's tasks run in one parallel_for: fewer passes over x and
// fewer hand-offs to the pool. Same return value as gemm_w4a8 (the first
// NaN/Inf of x); the ys are then unspecified.
size_t gemm_w4a8_multi(const Kernels& k, const W4A8Product* ps, size_t P, size_t K, const float* x, size_t M);
size_t gemm_w4a8_multi(const W4A8Product* ps, size_t P, size_t K, const float* x, size_t M);

}  // namespace qk
