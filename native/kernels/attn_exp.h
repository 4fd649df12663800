// attn_exp: the f32 exponential of the attention and SiLU kernels, the spec
// every ISA's vector version evaluates operation for operation (so their
// results are bit-identical to it). The scalar function is in
// ref/attn_ref.cpp; each SIMD kernel file spells the same steps with its
// vectors. Only constants here: no code compiled twice with ISA flags.
//
//   NaN -> NaN; x > kHi -> +inf (overflow); otherwise
//   x  = max(x, kLo)             (kLo/kHi keep 2^n a normal float)
//   n  = round_half_even(x * log2(e))
//   r  = x - n * ln2, as fma(n, -kLn2Hi, x) then fma(n, -kLn2Lo, r)
//        (ln2 split in two so n * kLn2Hi is exact)
//   y  = ((((kP0 r + kP1) r + kP2) r + kP3) r + kP4) r + kP5   (fma each step)
//   y  = fma(y, r * r, r) + 1     ~ e^r on |r| <= ln2 / 2 (minimax, ~1 ulp)
//   e^x = y * 2^n                 (2^n built from its exponent bits)
// Relative error about 2e-7 over the whole range; exp(0) is exactly 1.
#pragma once

namespace qk {
namespace attn_exp_consts {
constexpr float kLo = -87.3365447504f;  // ~ln(FLT_MIN): n >= -126
constexpr float kHi = 88.3762626647949f;  // n <= 127
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f;
constexpr float kP1 = 1.3981999507e-3f;
constexpr float kP2 = 8.3334519073e-3f;
constexpr float kP3 = 4.1665795894e-2f;
constexpr float kP4 = 1.6666665459e-1f;
constexpr float kP5 = 5.0000001201e-1f;
// GELU (tanh form): 0.044715 and -2 sqrt(2 / pi)
constexpr float kGeluC = 0.044715f;
constexpr float kGeluK = -1.5957691216057308f;
}  // namespace attn_exp_consts

}  // namespace qk
