// Dynamic W8A8 int8 GEMM (PyTorch quantize_dynamic / ONNX Runtime
// DynamicQuantizeMatMul semantics) and the LLM.int8() mixed-precision
// decomposition, on the CPU thread pool:
//   Y[M, N] = X[M, K] · W[N, K]^T + bias[N]
// with W pre-quantized int8 SYMMETRIC per output channel (codes in
// [-127, 127], scale[N]: what qk::quantize gives for bits 8, symmetric,
// Granularity::channel), and X quantized on the fly per row (per token),
// symmetric: the row's (min, max) go through qk::choose_params exactly as
// qk::quantize does per channel (scale = absmax / 127, with its degenerate
// row rules), codes in [-127, 127]. The int32 products are exact; each
// output is ((float)acc * sx[m]) * sw[n] + bias[n] in that order, so every
// ISA and every thread count returns bit-identical results.
// Work is split over blocks of N only. Compiled without ISA flags.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../kernels/kernels.h"

namespace qk {

// A prepared int8 weight. q, scale and rowsum are borrowed (the caller keeps
// them alive); rowsum comes from w8a8_rowsums, computed once per weight.
struct W8A8Weight {
    const int8_t* q;         // [N, K] row-major codes in [-127, 127]
    const float* scale;      // [N] per-channel scales (finite, > 0)
    const int32_t* rowsum;   // [N] sum_k q[n, k] (VNNI bias compensation)
    size_t N, K;             // K <= kW8A8MaxK (133144)
};

// rowsum[n] = sum_k q[n, k]; once per weight (parallel over rows).
void w8a8_rowsums(const int8_t* q, size_t N, size_t K, int32_t* rowsum);

// Y[M, N] (row-major, stride N) = dynamic-W8A8 X[M, K] · W^T (+ bias[N] or
// nullptr). Returns SIZE_MAX, or the flat index of the first NaN/Inf of X
// (Y is then unspecified).
size_t gemm_w8a8(const W8A8Weight& w, const float* x, size_t M, const float* bias, float* y);

// One product of a gemm_w8a8_multi call: y[M, w.N] = x · w^T (+ bias).
struct W8A8Product {
    W8A8Weight w;
    const float* bias;  // [N] or nullptr
    float* y;           // [M, N]
};
constexpr size_t kW8A8MaxProducts = 4;

// Several products of one input x[M, K] (every w.K the same; a layer's
// q/k/v, or gate/up): each y_p as gemm_w8a8 gives it, bit for bit, with x
// quantized once and every product's tasks in one parallel_for. Same return
// value as gemm_w8a8.
size_t gemm_w8a8_multi(const W8A8Product* ps, size_t P, const float* x, size_t M);
size_t gemm_w8a8_multi(const Kernels& k, const W8A8Product* ps, size_t P, const float* x, size_t M);

// LLM.int8(): the input feature columns k where any |x[m, k]| >= threshold
// are outliers. They are multiplied in float against the matching weight
// columns DEQUANTIZED FROM THE STORED INT8 (q[n, k] * scale[n], as
// bitsandbytes does with its row-wise int8 weight; no float copy of W is
// kept), through qk::gemm; the other columns are quantized per row (absmax
// over the non-outlier columns only, outlier codes set to 0) and multiplied
// in int8 as in gemm_w8a8. Per output, in this order:
//   y = (((float)acc * sx[m]) * sw[n] + outlier_part) + bias[n].
// threshold <= 0 (or no column reaching it) gives exactly gemm_w8a8.
// *n_outlier_cols_out (if not nullptr) receives the number of outlier
// columns. Same return value as gemm_w8a8.
size_t gemm_llm_int8(const W8A8Weight& w, const float* x, size_t M, float threshold, const float* bias,
                     float* y, size_t* n_outlier_cols_out);

// The same with an explicit kernel table (tests run every ISA).
size_t gemm_w8a8(const Kernels& k, const W8A8Weight& w, const float* x, size_t M, const float* bias, float* y);
size_t gemm_llm_int8(const Kernels& k, const W8A8Weight& w, const float* x, size_t M, float threshold,
                     const float* bias, float* y, size_t* n_outlier_cols_out);

// LLM.int8() with each row's own outlier columns (those where |x[m, k]| >=
// threshold in that row), so a row's result depends on that row alone
// (batched decoding's row invariance) while the int8 product still runs
// once for all rows. Per output:
//   y = (outlier_part + ((float)acc * sx[m]) * sw[n]) + bias[n],
//   outlier_part = sum over the row's outlier columns c, ascending, of
//                  x[m, c] * (q[n, c] * sw[n])   (one float at a time).
// *max_outlier_cols_out receives the most outlier columns of any row.
size_t gemm_llm_int8_rows(const Kernels& k, const W8A8Weight& w, const float* x, size_t M, float threshold,
                          const float* bias, float* y, size_t* max_outlier_cols_out);
size_t gemm_llm_int8_rows(const W8A8Weight& w, const float* x, size_t M, float threshold, const float* bias, float* y,
                          size_t* max_outlier_cols_out);

// The activation quantization step (exposed for tests): per row m of
// x[M, K], with the columns where outlier_cols[k] != 0 (nullptr: none) read
// as 0, sx[m] from qk::choose_params (8 bits, symmetric) and the codes
// stored biased, a[m * K + k] = qx + 128. Returns SIZE_MAX or the flat index
// of the first NaN/Inf of x (outlier columns included).
size_t w8a8_quantize_rows(const Kernels& k, const float* x, size_t M, size_t K, const uint8_t* outlier_cols,
                          uint8_t* a, float* sx);

// The packed activation layout of W8A8Args::ap (see kernels.h): its size
// in bytes for M rows of K codes, and the packing of a[M, K] (row stride
// lda) into ap (padding zero-filled).
size_t w8a8_packed_bytes(size_t M, size_t K);
void w8a8_pack_a(const uint8_t* a, size_t lda, size_t M, size_t K, uint8_t* ap);
void w8a8_pack_a(const Kernels& k, const uint8_t* a, size_t lda, size_t M, size_t K, uint8_t* ap);

}  // namespace qk
