// AArch64 Advanced SIMD transformer glue kernels: attn_rows, silu_mul and gelu_tanh,
// the reference's operations lane by lane (bit-identical to it; see
// x86/attn_avx512.cpp for the scheme). A block of 64 keys is 16 q-registers
// of score lanes; p · V runs over 16-wide chunks of the head dimension with
// a scalar fma tail (the same fused operation as a vector lane).
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cmath>

#include "../isa.h"
#include "../attn_exp.h"

namespace qk {
namespace neon {

namespace {

using namespace attn_exp_consts;

// The reference's attn_exp on 4 lanes (selects, not vmaxq/vminq: those
// would turn a NaN into NaN where the reference clamps it to kLo first).
inline float32x4_t exp4(float32x4_t x) {
    const uint32x4_t ok = vceqq_f32(x, x);
    const float32x4_t lo = vdupq_n_f32(kLo), hi = vdupq_n_f32(kHi);
    float32x4_t c = vbslq_f32(vcgtq_f32(x, lo), x, lo);
    c = vbslq_f32(vcltq_f32(c, hi), c, hi);
    const float32x4_t n = vrndnq_f32(vmulq_f32(c, vdupq_n_f32(kLog2e)));
    float32x4_t r = vfmaq_f32(c, n, vdupq_n_f32(-kLn2Hi));
    r = vfmaq_f32(r, n, vdupq_n_f32(-kLn2Lo));
    const float32x4_t z = vmulq_f32(r, r);
    float32x4_t y = vdupq_n_f32(kP0);
    y = vfmaq_f32(vdupq_n_f32(kP1), y, r);
    y = vfmaq_f32(vdupq_n_f32(kP2), y, r);
    y = vfmaq_f32(vdupq_n_f32(kP3), y, r);
    y = vfmaq_f32(vdupq_n_f32(kP4), y, r);
    y = vfmaq_f32(vdupq_n_f32(kP5), y, r);
    y = vfmaq_f32(r, y, z);
    y = vaddq_f32(y, vdupq_n_f32(1.0f));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    const float32x4_t v = vbslq_f32(vcgtq_f32(x, hi), vdupq_n_f32(INFINITY), vmulq_f32(y, vreinterpretq_f32_s32(e)));
    return vbslq_f32(ok, v, x);
}

// Lanes [0, n) of 4, as a mask (n may exceed 4 or be <= 0).
inline uint32x4_t lanes(long n) {
    static const uint32_t idx[4] = {0, 1, 2, 3};
    return vcltq_u32(vld1q_u32(idx), vdupq_n_u32(uint32_t(n < 0 ? 0 : n > 4 ? 4 : n)));
}

// o[0 .. hd) = o * c (when rescale), then o[i] = fma(p[jj], V[jj][i], o[i]) for jj < nb.
inline void pv(float* o, size_t hd, bool rescale, float c, const float* p, size_t nb, const float* v, size_t ldv) {
    size_t i0 = 0;
    for (; i0 + 16 <= hd; i0 += 16) {
        float32x4_t acc[4];
        for (int u = 0; u < 4; ++u) {
            acc[u] = vld1q_f32(o + i0 + 4 * u);
            if (rescale) acc[u] = vmulq_n_f32(acc[u], c);
        }
        for (size_t jj = 0; jj < nb; ++jj) {
            const float32x4_t pj = vdupq_n_f32(p[jj]);
            const float* vj = v + jj * ldv + i0;
            for (int u = 0; u < 4; ++u) acc[u] = vfmaq_f32(acc[u], pj, vld1q_f32(vj + 4 * u));
        }
        for (int u = 0; u < 4; ++u) vst1q_f32(o + i0 + 4 * u, acc[u]);
    }
    for (size_t i = i0; i < hd; ++i) {
        float acc = rescale ? o[i] * c : o[i];
        for (size_t jj = 0; jj < nb; ++jj) acc = std::fma(p[jj], v[jj * ldv + i], acc);
        o[i] = acc;
    }
}

}  // namespace

void attn_rows(const AttnRowsArgs& a) {
    const size_t hd = a.hd, rows = a.rows;
    float* o = a.scratch;            // [rows][hd]
    float* m = o + rows * hd;        // [rows]
    float* l = m + rows;             // [rows]
    float* p = l + rows;             // [kAttnBlock]
    size_t maxlim = 0;
    for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < hd; ++i) o[r * hd + i] = 0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
        maxlim = a.lim[r] > maxlim ? a.lim[r] : maxlim;
    }
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    for (size_t b = 0; b * kAttnBlock < maxlim; ++b) {
        const size_t j0 = b * kAttnBlock;
        const float* kt = a.kt + b * a.kt_stride;
        for (size_t r = 0; r < rows; ++r) {
            const size_t lim = a.lim[r];
            if (lim <= j0) continue;
            const size_t nb = lim - j0 < kAttnBlock ? lim - j0 : kAttnBlock;
            const float* q = a.q[r];
            float32x4_t s[16];
            for (int u = 0; u < 16; ++u) s[u] = vdupq_n_f32(0.0f);
            for (size_t i = 0; i < hd; ++i) {
                const float32x4_t qi = vdupq_n_f32(q[i]);
                const float* kr = kt + i * kAttnBlock;
                for (int u = 0; u < 16; ++u) s[u] = vfmaq_f32(s[u], qi, vld1q_f32(kr + 4 * u));
            }
            uint32x4_t valid[16];
            float32x4_t mv = ninf;
            for (int u = 0; u < 16; ++u) {
                valid[u] = lanes(long(nb) - 4 * u);
                s[u] = vbslq_f32(valid[u], vmulq_n_f32(s[u], a.scale), ninf);
                mv = vbslq_f32(vcgtq_f32(s[u], mv), s[u], mv);
            }
            const float mb = vmaxvq_f32(mv);
            const float mn = b == 0 ? mb : (mb > m[r] ? mb : m[r]);
            float c = 1.0f;
            if (b > 0) {
                c = vgetq_lane_f32(exp4(vdupq_n_f32(m[r] - mn)), 0);
                l[r] *= c;
            }
            const float32x4_t mnv = vdupq_n_f32(mn);
            for (int u = 0; u < 16; ++u)
                vst1q_f32(p + 4 * u, vreinterpretq_f32_u32(vandq_u32(valid[u], vreinterpretq_u32_f32(exp4(vsubq_f32(s[u], mnv))))));
            float lr = l[r];
            for (size_t jj = 0; jj < nb; ++jj) lr += p[jj];
            l[r] = lr;
            pv(o + r * hd, hd, b > 0, c, p, nb, a.v + j0 * a.ldv, a.ldv);
            m[r] = mn;
        }
    }
    for (size_t r = 0; r < rows; ++r) {
        float* out = a.out[r];
        const float* orow = o + r * hd;
        const float32x4_t lv = vdupq_n_f32(l[r]);
        size_t i = 0;
        for (; i + 4 <= hd; i += 4) vst1q_f32(out + i, vdivq_f32(vld1q_f32(orow + i), lv));
        for (; i < hd; ++i) out[i] = orow[i] / l[r];
    }
}

void gelu_tanh(float* x, size_t n) {
    size_t i = 0;
    const float32x4_t one = vdupq_n_f32(1.0f), c = vdupq_n_f32(kGeluC), kk = vdupq_n_f32(kGeluK);
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        const float32x4_t y = vfmaq_f32(v, c, vmulq_f32(vmulq_f32(v, v), v));
        vst1q_f32(x + i, vdivq_f32(v, vaddq_f32(one, exp4(vmulq_f32(kk, y)))));
    }
    if (i < n) {  // tail through the same vector code on a zero-padded copy
        float b[4] = {0, 0, 0, 0};
        for (size_t j = i; j < n; ++j) b[j - i] = x[j];
        gelu_tanh(b, 4);
        for (size_t j = i; j < n; ++j) x[j] = b[j - i];
    }
}

void silu_mul(float* g, const float* u, size_t n) {
    size_t i = 0;
    const float32x4_t one = vdupq_n_f32(1.0f);
    for (; i + 4 <= n; i += 4) {
        const float32x4_t x = vld1q_f32(g + i);
        const float32x4_t y = vmulq_f32(vdivq_f32(x, vaddq_f32(one, exp4(vnegq_f32(x)))), vld1q_f32(u + i));
        vst1q_f32(g + i, y);
    }
    if (i < n) {  // tail through the same vector code on a zero-padded copy
        float gb[4] = {0, 0, 0, 0}, ub[4] = {0, 0, 0, 0};
        for (size_t j = i; j < n; ++j) gb[j - i] = g[j], ub[j - i] = u[j];
        silu_mul(gb, ub, 4);
        for (size_t j = i; j < n; ++j) g[j] = gb[j - i];
    }
}

}  // namespace neon
}  // namespace qk

#endif
