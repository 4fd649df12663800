// Element-wise activation ops of the model code, on the thread pool.
// Compiled without ISA flags (the compiler vectorizes what it can; exp is
// the libm one).
#pragma once

#include <cstddef>

namespace qk {

// SwiGLU's gate: g[i] = f32(silu(g[i])) * u[i], silu(v) = v / (1 + exp(-v))
// evaluated in double and rounded once to f32, then an f32 product: the same
// sequence of roundings as the JavaScript silu() + multiply it replaces
// (only exp's last-bit differences between libm and V8 can show).
void silu_mul(float* g, const float* u, size_t n);

// RMSNorm of rows x [rows, D] with weight w [D] into out [rows, D]:
// out = f32(x * inv * w), inv = 1 / sqrt(sum(x^2) / D + eps), the sum in
// double in index order and every product in double: the operations and
// roundings of the JavaScript RMSNorm (lib/nn/norm.ts), so the two agree
// bit for bit (the build keeps -ffp-contract=off: no fused multiply-adds).
// out may be x.
void rms_norm(const float* x, const float* w, float* out, size_t rows, size_t D, double eps);

}  // namespace qk
