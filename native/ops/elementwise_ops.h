// Element-wise ops of the model code, on the thread pool. Compiled without
// ISA flags: silu_mul, the norms and rotary embeddings run the Kernels
// table's (their specs, NormArgs and RopeArgs, are in kernels/kernels.h);
// the add is plain C++ the compiler vectorizes.
#pragma once

#include <cstddef>

#include "../kernels/kernels.h"

namespace qk {

// SwiGLU's gate: g[i] = (g[i] / (1 + exp(-g[i]))) * u[i] in f32 with the
// kernels' exponential (Kernels::silu_mul: relative error ~2e-7 per value,
// the same bits on every ISA).
void silu_mul(float* g, const float* u, size_t n);

// GELU, tanh form, in place (Kernels::gelu_tanh: relative error ~3e-7, the
// same bits on every ISA).
void gelu_tanh(float* x, size_t n);

// The norm of every row (NormArgs), rows shared out over the pool.
void norm_rows(const NormArgs& a);

// Rotary embeddings of every position (RopeArgs), positions shared out over
// the pool.
void rope(const RopeArgs& a);

// x[i] = x[i] + y[i] (f32), on the pool for long arrays.
void add_inplace(float* x, const float* y, size_t n);

// Index of the largest of x[0 .. n): the first one among equal values (-0
// equals +0), NaN never chosen, 0 when every value is NaN or -Infinity
// (greedy sampling's argmax, as lib/eval/sampling.ts's JavaScript loop
// defines it). On the calling thread.
size_t argmax(const float* x, size_t n);

}  // namespace qk
