// AArch64 W4A8 kernel (Kernels::gemm_w4a8; the spec is ref/w4a8_ref.cpp,
// the layout and the offset formula are on W4A8Args). Same structure as
// the x86 ones (x86/w4a8_avx512.cpp) on 16-byte steps.
//
// One step is 16 bytes of a weight row: 32 values, i.e. exactly activation
// block b = 4 c + p (quarter p of 128-value chunk c) and, as G % 32 == 0,
// inside one weight group. Their low nibbles are the even values, whose
// activations are the 16 bytes at xc + 128 c + 16 p, and their high nibbles
// the odd ones, at xc + 128 c + 64 + 16 p. Per step and weight row:
//   v = bytes ^ 0x88 (symmetric: nibble ^ 8 = q + 8 in 0..15)
//   lo = v & 0x0F, hi = v >> 4   (0..15: also valid as signed int8)
//   d = lo . x_even + hi . x_odd, int32 lane j = bytes 4 j .. 4 j + 3 of
//       both nibble planes = values 8 j .. 8 j + 7 of the block
// (the lane structure of the spec: lane 4 p + j of the chunk), then
// acc += (float)d * (s[n, g] * sxl), and at the end of the row the offset
// (q + 8 or u against the zero point) is taken out with the per-group
// activation sums tg. d has two formulations, chosen at run time from
// qk::cpu_features().neon_dot (as in w8a8_neon.cpp):
//  - SDOT (Armv8.2 dot product): vdotq_s32(vdotq_s32(0, lo, x_even), hi,
//    x_odd). Only the tile functions using it are compiled for
//    armv8.2-a+dotprod (target attribute), so the file runs on CPUs without
//    the extension.
//  - Baseline: SMULL / SMLAL form lo_k x_even_k + hi_k x_odd_k per byte in
//    int16 (|.| <= 2 * 15 * 127 = 3810), ADDP adds those of adjacent bytes
//    in int16 (<= 7620 < 32767, exact), SADDLP adjacent pairs into int32:
//    the same int32 lanes as SDOT, so both paths give bit-identical results.
//
// Tiles: R = 4 weight rows (1 for the last few) x MC <= 4 activation rows
// (16 float accumulators of the 32 vector registers; the 4 x 4 tiles spill
// a few operands in the loop). No software prefetch
// (the other NEON kernels rely on the hardware prefetchers too). The K tail
// needs nothing special: K % 32 == 0 on this path and a step is one whole
// block, so no byte past a row is read. Group sizes other than 32, 64 and
// multiples of 128 take the ref path (the contract on W4A8Args).
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../dispatch.h"
#include "../isa.h"

namespace qk {
namespace neon {

namespace {

// Operands of one tile: R weight rows from n, MC activation rows from m0.
// (The accumulators are locals of the tile functions: kept in registers.)
template <int R, int MC>
struct Tile {
    const uint8_t* w[R];
    const float* s[R];        // f32 scales, or
    const uint16_t* h[R];     // f16 scales (WeightView::scales16), widened by fcvt as read
    const int8_t* xc[MC];
    const float* sxl[MC];
    size_t ng;   // weight groups per row: K / G
    size_t gs;   // scale row stride (scale_stride)
    size_t nb;   // activation blocks (steps): K / 32
    size_t bpg;  // blocks per weight group: G / 32

    inline __attribute__((always_inline)) Tile(const W4A8Args& a, size_t m0, size_t n) {
        ng = a.K / a.w.group;
        gs = scale_stride(a.w, a.K);
        for (int r = 0; r < R; ++r) {
            w[r] = static_cast<const uint8_t*>(a.w.data) + (n + r) * a.w.row_bytes;
            s[r] = a.w.scales16 ? nullptr : a.w.scales + (n + r) * gs;
            h[r] = a.w.scales16 ? a.w.scales16 + (n + r) * gs : nullptr;
        }
        for (int i = 0; i < MC; ++i) {
            xc[i] = a.xc + (m0 + i) * a.ldx;
            sxl[i] = a.sxl + (m0 + i) * a.ldsxl;
        }
        nb = a.K / 32;
        bpg = a.w.group / 32;
    }
};

// Scale g of tile row r as a float (f16 widened exactly by fcvt).
template <int R, int MC>
static inline __attribute__((always_inline)) float scale_of(const Tile<R, MC>& t, int r, size_t g) {
    if (!t.h[r]) return t.s[r][g];
    __fp16 v;
    std::memcpy(&v, t.h[r] + g, sizeof v);
    return float(v);
}

// Offset of block b's even activations in a row (the odd ones at + 64).
static inline size_t act_off(size_t b) { return 128 * (b / 4) + 16 * (b % 4); }

// The two nibble planes of weight row bytes [16 b, 16 b + 16), as unsigned
// operands u' in 0..15.
template <bool ASYM>
static inline __attribute__((always_inline)) void planes(const uint8_t* w, size_t b, int8x16_t& lo, int8x16_t& hi) {
    uint8x16_t v = vld1q_u8(w + 16 * b);
    if (!ASYM) v = veorq_u8(v, vdupq_n_u8(0x88));
    lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
    hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
}

// acc += (float)d * (s * sxl[4 b .. 4 b + 4)).
static inline __attribute__((always_inline)) float32x4_t accumulate(float32x4_t acc, int32x4_t d, float s,
                                                                     const float* sxl, size_t b) {
    const float32x4_t f = vmulq_n_f32(vld1q_f32(sxl + 4 * b), s);
    return vfmaq_f32(acc, vcvtq_f32_s32(d), f);
}

// Baseline d (see the header): int32 lane j = bytes 4 j .. 4 j + 3.
static inline __attribute__((always_inline)) int32x4_t dot_base(int8x16_t lo, int8x16_t hi, int8x16_t xe,
                                                                 int8x16_t xo) {
    // Per byte k: lo_k xe_k + hi_k xo_k, |.| <= 3810 (bytes 0..7, then 8..15).
    const int16x8_t p0 = vmlal_s8(vmull_s8(vget_low_s8(lo), vget_low_s8(xe)), vget_low_s8(hi), vget_low_s8(xo));
    const int16x8_t p1 = vmlal_high_s8(vmull_high_s8(lo, xe), hi, xo);
    // Lane k: bytes 2 k, 2 k + 1, |.| <= 7620; then int32 lane j: bytes 4 j .. 4 j + 3.
    return vpaddlq_s16(vpaddq_s16(p0, p1));
}

// Offset, bias and store: y = hsum(acc) - sum_g s[n, g] z'[n, g] tg[m, g] (+ bias).
template <bool ASYM, int R, int MC>
static inline __attribute__((always_inline)) void finish(float32x4_t (&acc)[R][MC], const Tile<R, MC>& t,
                                                         const W4A8Args& a, size_t m0, size_t n) {
    const size_t ng = t.ng;
    for (size_t g = 0; g < ng; g += 4) {
        const size_t nl = ng - g < 4 ? ng - g : 4;
        float32x4_t tg[MC];
        for (int i = 0; i < MC; ++i) {
            const float* p = a.tg + (m0 + i) * a.ldtg + g;
            if (nl == 4) {
                tg[i] = vld1q_f32(p);
            } else {
                float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                for (size_t j = 0; j < nl; ++j) buf[j] = p[j];
                tg[i] = vld1q_f32(buf);
            }
        }
        for (int r = 0; r < R; ++r) {
            float32x4_t sz;
            if (nl == 4) {
                sz = t.h[r] ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(t.h[r] + g))) : vld1q_f32(t.s[r] + g);
            } else {
                float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                for (size_t j = 0; j < nl; ++j) buf[j] = scale_of(t, r, g + j);
                sz = vld1q_f32(buf);
            }
            if (ASYM) {
                // 4 zero points (little endian: byte j -> lane j), widened to float.
                const uint8_t* z = static_cast<const uint8_t*>(a.w.zps) + (n + r) * t.gs + g;
                uint32_t zw = 0;
                if (nl == 4) std::memcpy(&zw, z, 4);
                else
                    for (size_t j = 0; j < nl; ++j) zw |= uint32_t(z[j]) << (8 * j);
                const uint16x8_t z16 = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(zw)));
                sz = vmulq_f32(sz, vcvtq_f32_u32(vmovl_u16(vget_low_u16(z16))));
            } else {
                sz = vmulq_f32(sz, vdupq_n_f32(8.0f));
            }
            for (int i = 0; i < MC; ++i) acc[r][i] = vfmsq_f32(acc[r][i], sz, tg[i]);
        }
    }
    for (int i = 0; i < MC; ++i) {
        float* y = a.y + (m0 + i) * a.ldy + n;
        for (int r = 0; r < R; ++r) {
            float v = vaddvq_f32(acc[r][i]);
            if (a.bias) v = v + a.bias[n + r];
            y[r] = v;
        }
    }
}

// The two tile functions differ only in d; the loop is written twice
// because the SDOT one must be compiled with the dotprod target as a whole
// (GCC does not inline a dotprod function into a default-target template).
template <bool ASYM, int R, int MC>
void tile_base(const W4A8Args& a, size_t m0, size_t n) {
    const Tile<R, MC> t(a, m0, n);
    float32x4_t acc[R][MC];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < MC; ++i) acc[r][i] = vdupq_n_f32(0.0f);
    size_t g = 0, bg = 0;  // weight group of block b, block within the group
    for (size_t b = 0; b < t.nb; ++b) {
        const size_t xo = act_off(b);
        for (int r = 0; r < R; ++r) {
            int8x16_t lo, hi;
            planes<ASYM>(t.w[r], b, lo, hi);
            const float s = scale_of(t, r, g);
            for (int i = 0; i < MC; ++i) {
                const int32x4_t d = dot_base(lo, hi, vld1q_s8(t.xc[i] + xo), vld1q_s8(t.xc[i] + xo + 64));
                acc[r][i] = accumulate(acc[r][i], d, s, t.sxl[i], b);
            }
        }
        if (++bg == t.bpg) {
            bg = 0;
            ++g;
        }
    }
    finish<ASYM>(acc, t, a, m0, n);
}

template <bool ASYM, int R, int MC>
__attribute__((target("arch=armv8.2-a+dotprod"))) void tile_dot(const W4A8Args& a, size_t m0, size_t n) {
    const Tile<R, MC> t(a, m0, n);
    float32x4_t acc[R][MC];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < MC; ++i) acc[r][i] = vdupq_n_f32(0.0f);
    const int32x4_t zero = vdupq_n_s32(0);
    size_t g = 0, bg = 0;
    for (size_t b = 0; b < t.nb; ++b) {
        const size_t xo = act_off(b);
        for (int r = 0; r < R; ++r) {
            int8x16_t lo, hi;
            planes<ASYM>(t.w[r], b, lo, hi);
            const float s = scale_of(t, r, g);
            for (int i = 0; i < MC; ++i) {
                const int32x4_t d0 = vdotq_s32(zero, lo, vld1q_s8(t.xc[i] + xo));
                const int32x4_t d = vdotq_s32(d0, hi, vld1q_s8(t.xc[i] + xo + 64));
                acc[r][i] = accumulate(acc[r][i], d, s, t.sxl[i], b);
            }
        }
        if (++bg == t.bpg) {
            bg = 0;
            ++g;
        }
    }
    finish<ASYM>(acc, t, a, m0, n);
}

template <bool DOT, bool ASYM, int MC>
void rows(const W4A8Args& a, size_t m0, size_t n0, size_t n1) {
    constexpr void (*tile4)(const W4A8Args&, size_t, size_t) = DOT ? tile_dot<ASYM, 4, MC> : tile_base<ASYM, 4, MC>;
    constexpr void (*tile1)(const W4A8Args&, size_t, size_t) = DOT ? tile_dot<ASYM, 1, MC> : tile_base<ASYM, 1, MC>;
    size_t n = n0;
    for (; n + 4 <= n1; n += 4) tile4(a, m0, n);
    for (; n < n1; ++n) tile1(a, m0, n);
}

template <bool DOT, bool ASYM>
void run(const W4A8Args& a, size_t n0, size_t n1) {
    size_t m = 0;
    for (; m + 4 <= a.M; m += 4) rows<DOT, ASYM, 4>(a, m, n0, n1);
    switch (a.M - m) {
        case 3: rows<DOT, ASYM, 3>(a, m, n0, n1); break;
        case 2: rows<DOT, ASYM, 2>(a, m, n0, n1); break;
        case 1: rows<DOT, ASYM, 1>(a, m, n0, n1); break;
        default: break;
    }
}

template <bool DOT>
void run_d(const W4A8Args& a, size_t n0, size_t n1) {
    if (a.w.zps) run<DOT, true>(a, n0, n1);
    else run<DOT, false>(a, n0, n1);
}

}  // namespace

void gemm_w4a8(const W4A8Args& a, size_t n0, size_t n1) {
    const size_t G = a.w.group;
    // The group sizes of the SIMD path (G % 32 == 0 for all three); the
    // step loop itself would take any multiple of 32.
    if (!(G == 32 || G == 64 || G % 128 == 0) || a.K % G != 0) {  // (a shorter last group too)
        ref::gemm_w4a8(a, n0, n1);
        return;
    }
    if (cpu_features().neon_dot) run_d<true>(a, n0, n1);
    else run_d<false>(a, n0, n1);
}

// Kernels::w4a8_chunk_x: per 32 values, vld2q_s8 splits the even and odd
// bytes into two registers (stored at their places in the chunk), and the
// block's sum is two widening pairwise adds and one across-vector add
// (partial sums of at most 4 codes per int16 lane, exact).
void w4a8_chunk_x(const int8_t* q, size_t chunks, int8_t* xc, int32_t* bsum) {
    for (size_t c = 0; c < chunks; ++c) {
        const int8_t* src = q + 128 * c;
        int8_t* dst = xc + 128 * c;
        for (size_t b = 0; b < 4; ++b) {
            const int8x16x2_t v = vld2q_s8(src + 32 * b);  // val[0]: q[32 b + 2 i], val[1]: q[32 b + 2 i + 1]
            vst1q_s8(dst + 16 * b, v.val[0]);
            vst1q_s8(dst + 64 + 16 * b, v.val[1]);
            bsum[4 * c + b] = vaddlvq_s16(vaddq_s16(vpaddlq_s8(v.val[0]), vpaddlq_s8(v.val[1])));
        }
    }
}

}  // namespace neon
}  // namespace qk

#endif  // __aarch64__
