// Element-wise ops of the model code, on the thread pool. Compiled without
// ISA flags: silu_mul runs the Kernels table's (vector exp); the norms and
// the add are plain C++ written so the compiler can vectorize them (eight
// independent partial sums, no reassociation needed).
#pragma once

#include <cstddef>

namespace qk {

// SwiGLU's gate: g[i] = (g[i] / (1 + exp(-g[i]))) * u[i] in f32 with the
// kernels' exponential (Kernels::silu_mul: relative error ~2e-7 per value,
// the same bits on every ISA).
void silu_mul(float* g, const float* u, size_t n);

// GELU, tanh form, in place (Kernels::gelu_tanh: relative error ~3e-7, the
// same bits on every ISA).
void gelu_tanh(float* x, size_t n);

enum class NormKind { rms, layer };

// Per row of D values, optionally after the residual add that precedes the
// norm in a pre-norm block:
//   with residual: x[i] = x[i] + residual[i]   (f32, written back into x)
//   rms:   ss = sum x^2;  inv = 1 / sqrt(ss / D + eps);  out = f32(x inv w)
//   layer: mean = sum x / D;  v = sum (x - mean)^2;  inv = 1 / sqrt(v / D + eps)
//          y = (x - mean) inv;  y = y w (if w);  y = y + b (if b);  out = f32(y)
// Sums and products in double; a sum over i is eight partial sums (value i
// goes to partial i % 8, each in index order) added as
// ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)): one fixed order, so
// results depend neither on the thread count nor on the rows around.
struct NormArgs {
    NormKind kind;
    float* x;               // [rows, D]
    const float* residual;  // [rows, D] or nullptr
    const float* w;         // [D]; required for rms, optional for layer
    const float* b;         // [D] or nullptr (layer only)
    float* out;             // [rows, D]; may be x (then the sum x + residual is not kept)
    size_t rows, D;
    double eps;
};
void norm_rows(const NormArgs& a);

// Rotary embeddings in place on x [T, n_heads * stride] at positions
// pos0 .. pos0 + T - 1: per head, the first hd = 2 * half dimensions rotate
// in pairs (a, b) = (i, i + half) (rotate-half, HF Llama) or (2i, 2i + 1)
// (interleaved: llama2.c, GPT-J), by the angle of pair i at that position:
//   x[a] = f32(x0 c - x1 s),  x[b] = f32(x0 s + x1 c)   (double arithmetic)
// with c = cos[p * half + i], s = sin[p * half + i] (double tables, as
// lib/nn/rope.ts keeps them): the operations of its JavaScript loop.
struct RopeArgs {
    float* x;
    size_t T, n_heads, stride, half, pos0;
    const double* cos;
    const double* sin;
    bool interleaved;
};
void rope(const RopeArgs& a);

// x[i] = x[i] + y[i] (f32), on the pool for long arrays.
void add_inplace(float* x, const float* y, size_t n);

}  // namespace qk
