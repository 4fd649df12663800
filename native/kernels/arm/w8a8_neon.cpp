// AArch64 W8A8 int8 GEMM (Kernels::gemm_w8a8), bit-exact with qk::ref
// (w8a8_ref.cpp, the spec).
//
// The biased activation codes are turned back into signed ones
// (qx = a ^ 0x80, one EOR per 16 activations, shared by the NR weight rows).
// Two formulations, chosen at run time from qk::cpu_features().neon_dot:
//  - SDOT (Armv8.2 dot product, optional before Armv8.4): each int32 lane
//    accumulates 4 int8 x int8 products exactly. Only that function is
//    compiled for armv8.2-a+dotprod (target attribute), so the file runs on
//    CPUs without the extension.
//  - Baseline: SMULL / SMLAL2 form qx_k * w_k + qx_{k+8} * w_{k+8} in int16
//    (|.| <= 2 * 127 * 127 = 32258 < 32767, exact), SADALP adds the int16
//    pairs into int32 lanes (exact).
// Inner-product register tiling of MR x NR outputs (4 x 4 / 1 x 8 with SDOT,
// 4 x 2 / 1 x 4 baseline) over 16 values of k; the K tail goes through
// zero-padded copies. The rescale is the ref's scalar IEEE sequence.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "../../dispatch.h"
#include "../isa.h"

namespace qk {
namespace neon {

namespace {

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

// The ref's rescale of one exact sum.
static inline void store_one(const W8A8Args& p, size_t m, size_t n, int32_t acc) {
    if (p.c) {
        p.c[m * p.ldc + n] = acc;
        return;
    }
    float v = float(acc) * p.sa[m];
    v = v * p.sb[n];
    float* y = p.y + m * p.ldy + n;
    if (p.accumulate) v = v + *y;
    if (p.bias) v = v + p.bias[n];
    *y = v;
}

// 16 activations of row i (signed) and 16 weights of row j at depth k, with
// the K tail (r < 16 values left) through zero-padded copies.
static inline int8x16_t load_act(const uint8_t* a, size_t r) {
    if (r >= 16) return vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a), vdupq_n_u8(0x80)));
    uint8_t t[16];
    for (size_t i = 0; i < 16; ++i) t[i] = i < r ? uint8_t(a[i] ^ 0x80) : uint8_t(0);
    return vreinterpretq_s8_u8(vld1q_u8(t));
}
static inline int8x16_t load_w(const int8_t* b, size_t r) {
    if (r >= 16) return vld1q_s8(b);
    int8_t t[16];
    for (size_t i = 0; i < 16; ++i) t[i] = i < r ? b[i] : int8_t(0);
    return vld1q_s8(t);
}

// Baseline: acc += qx . w (16 values) via int16 pair sums.
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    int16x8_t s = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    s = vmlal_high_s8(s, a, b);
    return vpadalq_s16(acc, s);
}

template <int MR, int NR>
void tile_base(const W8A8Args& p, size_t m0, size_t n0) {
    const size_t K = p.K;
    int32x4_t acc[MR][NR];
    const uint8_t* ap[MR];
    const int8_t* bp[NR];
    for (int i = 0; i < MR; ++i) {
        ap[i] = p.a + (m0 + i) * p.lda;
        for (int j = 0; j < NR; ++j) acc[i][j] = vdupq_n_s32(0);
    }
    for (int j = 0; j < NR; ++j) bp[j] = p.b + (n0 + j) * p.ldb;
    for (size_t k = 0; k < K; k += 16) {
        const size_t r = K - k;
        int8x16_t q[MR];
        for (int i = 0; i < MR; ++i) q[i] = load_act(ap[i] + k, r);
        for (int j = 0; j < NR; ++j) {
            const int8x16_t w = load_w(bp[j] + k, r);
            for (int i = 0; i < MR; ++i) acc[i][j] = dot16(acc[i][j], q[i], w);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) store_one(p, m0 + i, n0 + j, vaddvq_s32(acc[i][j]));
}

template <int MR, int NR>
__attribute__((target("arch=armv8.2-a+dotprod"))) void tile_dot(const W8A8Args& p, size_t m0, size_t n0) {
    const size_t K = p.K;
    int32x4_t acc[MR][NR];
    const uint8_t* ap[MR];
    const int8_t* bp[NR];
    for (int i = 0; i < MR; ++i) {
        ap[i] = p.a + (m0 + i) * p.lda;
        for (int j = 0; j < NR; ++j) acc[i][j] = vdupq_n_s32(0);
    }
    for (int j = 0; j < NR; ++j) bp[j] = p.b + (n0 + j) * p.ldb;
    for (size_t k = 0; k < K; k += 16) {
        const size_t r = K - k;
        int8x16_t q[MR];
        for (int i = 0; i < MR; ++i) q[i] = load_act(ap[i] + k, r);
        for (int j = 0; j < NR; ++j) {
            const int8x16_t w = load_w(bp[j] + k, r);
            for (int i = 0; i < MR; ++i) acc[i][j] = vdotq_s32(acc[i][j], q[i], w);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) store_one(p, m0 + i, n0 + j, vaddvq_s32(acc[i][j]));
}

using TileFn = void (*)(const W8A8Args&, size_t, size_t);

// [MR - 1][NR - 1]; MR = 4 for M >= 4, else MR = M with wider NR.
const TileFn kDot[4][8] = {
    {tile_dot<1, 1>, tile_dot<1, 2>, tile_dot<1, 3>, tile_dot<1, 4>, tile_dot<1, 5>, tile_dot<1, 6>, tile_dot<1, 7>,
     tile_dot<1, 8>},
    {tile_dot<2, 1>, tile_dot<2, 2>, tile_dot<2, 3>, tile_dot<2, 4>, nullptr, nullptr, nullptr, nullptr},
    {tile_dot<3, 1>, tile_dot<3, 2>, tile_dot<3, 3>, tile_dot<3, 4>, nullptr, nullptr, nullptr, nullptr},
    {tile_dot<4, 1>, tile_dot<4, 2>, tile_dot<4, 3>, tile_dot<4, 4>, nullptr, nullptr, nullptr, nullptr},
};
const TileFn kBase[4][8] = {
    {tile_base<1, 1>, tile_base<1, 2>, tile_base<1, 3>, tile_base<1, 4>, nullptr, nullptr, nullptr, nullptr},
    {tile_base<2, 1>, tile_base<2, 2>, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
    {tile_base<3, 1>, tile_base<3, 2>, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
    {tile_base<4, 1>, tile_base<4, 2>, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace

void gemm_w8a8(const W8A8Args& p, size_t n0, size_t n1) {
    if (p.M == 0 || n0 >= n1) return;
    const bool dot = cpu_features().neon_dot;
    const TileFn(*tiles)[8] = dot ? kDot : kBase;
    const size_t nr1 = dot ? 8 : 4;  // width of a one-row (decode) tile
    const size_t nr = dot ? 4 : 2;   // width of the multi-row tiles
    if (p.M == 1) {
        for (size_t n = n0; n < n1; n += nr1) tiles[0][min_sz(nr1, n1 - n) - 1](p, 0, n);
        return;
    }
    size_t mb = (size_t(256) << 10) / (p.K ? p.K : 1);
    mb = mb < 4 ? 4 : mb / 4 * 4;
    for (size_t mb0 = 0; mb0 < p.M; mb0 += mb) {
        const size_t mb1 = min_sz(p.M, mb0 + mb);
        for (size_t n = n0; n < n1; n += nr) {
            const size_t w = min_sz(nr, n1 - n);
            for (size_t m = mb0; m < mb1; m += 4) tiles[min_sz(4, mb1 - m) - 1][w - 1](p, m, n);
        }
    }
}

}  // namespace neon
}  // namespace qk

#endif  // __aarch64__
