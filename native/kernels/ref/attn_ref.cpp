// Scalar reference (the spec) of the transformer glue kernels: attention
// over the blocked key cache, SwiGLU's silu(g) * u and GELU (tanh form).
// The formulas are documented on AttnRowsArgs, Kernels::silu_mul and
// Kernels::gelu_tanh in kernels.h; this file spells them out one value at a
// time.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../isa.h"
#include "../attn_exp.h"

namespace qk {
namespace ref {

namespace {

// The spec of the exponential (attn_exp.h), one value at a time.
float attn_exp(float x) {
    using namespace attn_exp_consts;
    // (the vector versions compute every lane on the clamped value, then
    // blend NaN and +inf back in)
    if (x != x) return x;
    if (x > kHi) return INFINITY;
    x = x > kLo ? x : kLo;
    const float n = std::nearbyint(x * kLog2e);
    float r = std::fma(n, -kLn2Hi, x);
    r = std::fma(n, -kLn2Lo, r);
    const float z = r * r;
    float y = kP0;
    y = std::fma(y, r, kP1);
    y = std::fma(y, r, kP2);
    y = std::fma(y, r, kP3);
    y = std::fma(y, r, kP4);
    y = std::fma(y, r, kP5);
    y = std::fma(y, z, r);
    y = y + 1.0f;
    const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
    float two_n;
    std::memcpy(&two_n, &bits, sizeof two_n);
    return y * two_n;
}

}  // namespace

void attn_rows(const AttnRowsArgs& a) {
    const size_t hd = a.hd;
    float* o = a.scratch;  // [hd]
    float* s = a.scratch + hd;  // [kAttnBlock]
    for (size_t r = 0; r < a.rows; ++r) {
        const float* q = a.q[r];
        const size_t lim = a.lim[r];
        float m = -INFINITY, l = 0.0f;
        for (size_t i = 0; i < hd; ++i) o[i] = 0.0f;
        for (size_t b = 0; b * kAttnBlock < lim; ++b) {
            const size_t j0 = b * kAttnBlock;
            const size_t nb = lim - j0 < kAttnBlock ? lim - j0 : kAttnBlock;
            const float* kt = a.kt + b * a.kt_stride;
            float mb = -INFINITY;
            for (size_t jj = 0; jj < nb; ++jj) {
                float acc = 0.0f;
                for (size_t i = 0; i < hd; ++i) acc = std::fma(q[i], kt[i * kAttnBlock + jj], acc);
                s[jj] = acc * a.scale;
                mb = s[jj] > mb ? s[jj] : mb;
            }
            const float mn = b == 0 ? mb : (mb > m ? mb : m);
            if (b > 0) {
                const float c = attn_exp(m - mn);
                l *= c;
                for (size_t i = 0; i < hd; ++i) o[i] *= c;
            }
            for (size_t jj = 0; jj < nb; ++jj) {
                const float p = attn_exp(s[jj] - mn);
                l += p;
                const float* vj = a.v + (j0 + jj) * a.ldv;
                for (size_t i = 0; i < hd; ++i) o[i] = std::fma(p, vj[i], o[i]);
            }
            m = mn;
        }
        float* out = a.out[r];
        for (size_t i = 0; i < hd; ++i) out[i] = o[i] / l;
    }
}

void silu_mul(float* g, const float* u, size_t n) {
    for (size_t i = 0; i < n; ++i) g[i] = (g[i] / (1.0f + attn_exp(-g[i]))) * u[i];
}

void gelu_tanh(float* x, size_t n) {
    using namespace attn_exp_consts;
    for (size_t i = 0; i < n; ++i) {
        const float v = x[i];
        const float y = std::fma(kGeluC, (v * v) * v, v);
        x[i] = v / (1.0f + attn_exp(kGeluK * y));
    }
}

}  // namespace ref
}  // namespace qk
