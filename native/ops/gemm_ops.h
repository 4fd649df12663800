// The portable GEMM driver: Y[M, N] = X[M, K] · W[N, K]^T (+ bias[N]) for
// every weight format of WeightView, on the CPU thread pool.
//
// Small M (decode) goes to the table's gemv kernel, up to 4 rows of X at a
// time, weights dequantized in registers. Large M (prefill) dequantizes W
// block by block into a small per-thread f32 panel (nb rows x kc columns,
// cache resident; f32 weights are used in place instead) and runs the
// table's gemm_panel_f32 micro-kernel on it for all M rows, so each weight is
// decoded once per call. GemmArgs::row_invariant sends every M to the gemv
// kernel instead (or, with invariant_panel, to the panel path with K blocks
// fixed whatever M), so a row's result does not depend on M (batched
// decoding of many sequences). Work is split over
// blocks of N only (never K), so results do not depend on the thread count.
// Compiled without ISA flags: it only calls through a Kernels table.
#pragma once

#include <cstddef>

#include "../kernels/kernels.h"

namespace qk {

// Blocking parameters of the driver (the defaults were tuned by measurement;
// tests pass small values to exercise every edge of the blocking).
struct GemmBlocking {
    size_t gemv_max_m;  // M <= gemv_max_m uses the gemv path
    size_t gemv_nb;     // W rows per task on the gemv path
    size_t nb;          // panel rows (W rows) per task on the panel path
    size_t kc;          // target panel depth in values (rounded to whole groups);
                        // 0: chosen from M (f32 weights, see gemm_ops.cpp)
    size_t mb;          // X rows per micro-kernel call (keeps X[mb, kc] in L2)
};

// The tuned defaults for a weight format; the second form also takes table
// k's own int4 gemv / panel crossover (Kernels::gemv_max_m_i4).
GemmBlocking default_gemm_blocking(WFormat fmt);
GemmBlocking default_gemm_blocking(const Kernels& k, WFormat fmt);

// Y = X · W^T (+ bias) with the active kernel table (qk::kernels()).
void gemm(const GemmArgs& a);

// Same with an explicit table (tests run each ISA) and optional blocking
// (nullptr = defaults). Blocking changes summation order, the thread count
// never does.
void gemm(const Kernels& k, const GemmArgs& a, const GemmBlocking* blocking = nullptr);

}  // namespace qk
