// AArch64 Advanced SIMD versions of the quantization element loops,
// conversions and sub-byte packing. Bit-exact with qk::ref (quant_ref.cpp,
// the spec): the same IEEE operations per element, only four at a time.
// No inline library code here, only static helpers (the same rule as the
// x86 kernel files, which are compiled with ISA flags).
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "../isa.h"

namespace qk {
namespace neon {

namespace {

static inline uint32_t bits_of(float f) {
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    return u;
}

static inline bool non_finite(float f) { return (bits_of(f) & 0x7f800000u) == 0x7f800000u; }

static inline size_t first_non_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (non_finite(x[i])) return i;
    return SIZE_MAX;
}

// The ref formula for one element (scalar tail).
static inline int8_t quant1(float x, float s, float z, float lo, float hi) {
    float v = vrndns_f32(x / s) + z;
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    return int8_t(int32_t(v));
}

// 4 quotients -> integral floats clamped to [lo, hi] -> int32. fmaxnm/fminnm
// turn a (quiet) NaN into the bound, as the ref's comparisons do.
static inline int32x4_t quant4(float32x4_t x, float32x4_t s, float32x4_t z, float32x4_t lo, float32x4_t hi) {
    float32x4_t v = vaddq_f32(vrndnq_f32(vdivq_f32(x, s)), z);
    return vcvtq_s32_f32(vminnmq_f32(vmaxnmq_f32(v, lo), hi));  // exact: integral, in int8 range
}

// Division-free quantize: the reciprocal bracket of x86/quant_avx512.cpp
// (see the derivation there). With r = fl(1/s) normal, rl/rh = r -/+ 4 ulps
// and C = 1.5*2^23 + z, a = fma(x, rl, C) and b = fma(x, rh, C) bracket
// RN(fl(x/s) + C); when a == b, a = C + rne(fl(x/s)) (or both clamp to the
// same bound), else (a few ulps from k + 0.5, or NaN) the lanes are redone
// with a real division. Groups whose r is not normal (subnormal scales:
// 1/s = inf) or whose |zp| > 2^16 take the division path.
constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23

static inline float float_of(uint32_t u) {
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

static inline bool fast_params(float s, int32_t zp, float* rl, float* rh) {
    const float r = 1.0f / s;
    const uint32_t e = (bits_of(r) >> 23) & 0xffu;
    if (e < 2 || e > 253 || zp > 65536 || zp < -65536) return false;
    *rl = float_of(bits_of(r) - 4);
    *rh = float_of(bits_of(r) + 4);
    return true;
}

// 4 values -> codes as int32: C + rne(fl(x/s)) clamped to [C0 + qmin,
// C0 + qmax] (C0 = 1.5*2^23; fmaxnm/fminnm: NaN -> qmin), minus bits(C0).
static inline int32x4_t fast4(float32x4_t x, float32x4_t rl, float32x4_t rh, float32x4_t c, float32x4_t s,
                              float32x4_t lo, float32x4_t hi) {
    float32x4_t a = vfmaq_f32(c, x, rl);
    const uint32x4_t eq = vceqq_f32(a, vfmaq_f32(c, x, rh));
    if (__builtin_expect(vminvq_u32(eq) == 0, 0))
        a = vbslq_f32(eq, a, vaddq_f32(vrndnq_f32(vdivq_f32(x, s)), c));
    const float32x4_t v = vminnmq_f32(vmaxnmq_f32(a, lo), hi);
    return vsubq_s32(vreinterpretq_s32_f32(v), vdupq_n_s32(0x4b400000));
}

// 16 bytes of two's-complement / unsigned nibbles -> lo (even) and hi (odd) elements.
static inline void split_nibbles(uint8x16_t x, bool is_signed, int8x16_t* lo, int8x16_t* hi) {
    if (is_signed) {
        const int8x16_t s = vreinterpretq_s8_u8(x);
        *lo = vshrq_n_s8(vshlq_n_s8(s, 4), 4);
        *hi = vshrq_n_s8(s, 4);
    } else {
        *lo = vreinterpretq_s8_u8(vandq_u8(x, vdupq_n_u8(0xf)));
        *hi = vreinterpretq_s8_u8(vshrq_n_u8(x, 4));
    }
}

// 4 int32 -> (v - z) * s.
static inline float32x4_t deq4(int32x4_t v, int32x4_t z, float32x4_t s) {
    return vmulq_f32(vcvtq_f32_s32(vsubq_s32(v, z)), s);
}

// 16 int8 -> 16 floats (v - z) * s at o.
static inline void deq16(int8x16_t v, int32x4_t z, float32x4_t s, float* o) {
    const int16x8_t a = vmovl_s8(vget_low_s8(v)), b = vmovl_high_s8(v);
    vst1q_f32(o, deq4(vmovl_s16(vget_low_s16(a)), z, s));
    vst1q_f32(o + 4, deq4(vmovl_high_s16(a), z, s));
    vst1q_f32(o + 8, deq4(vmovl_s16(vget_low_s16(b)), z, s));
    vst1q_f32(o + 12, deq4(vmovl_high_s16(b), z, s));
}

}  // namespace

// src[n] -> dst[n].
void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    if (i < n) {  // < 8 left: via a zero-padded copy so the tail uses the same instruction
        uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        float out[8];
        for (size_t j = 0; i + j < n; ++j) tmp[j] = src[i + j];
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(tmp));
        vst1q_f32(out, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(out + 4, vcvt_high_f32_f16(h));
        for (size_t j = 0; i + j < n; ++j) dst[i + j] = out[j];
    }
}

// src[n] -> dst[n].
void bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t v = vld1q_u16(src + i);
        vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)));
        vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(v, 16)));
    }
    for (; i < n; ++i) {
        const uint32_t u = uint32_t(src[i]) << 16;
        __builtin_memcpy(dst + i, &u, 4);
    }
}

// x[n_groups * G] -> mn[n_groups], mx[n_groups]. FMIN/FMAX/FMINV/FMAXV
// propagate NaN and keep inf, so one finiteness test of the result per group
// detects any non-finite input of the vector part.
size_t minmax(const float* x, size_t n_groups, size_t G, float* mn, float* mx) {
    if (G == 0) return SIZE_MAX;
    for (size_t g = 0; g < n_groups; ++g) {
        const float* p = x + g * G;
        float lo = p[0], hi = p[0];
        bool bad = false;
        size_t i = 0;
        if (G >= 4) {
            float32x4_t mn0 = vld1q_f32(p), mx0 = mn0, mn1 = mn0, mx1 = mn0;
            for (; i + 8 <= G; i += 8) {
                const float32x4_t a = vld1q_f32(p + i), b = vld1q_f32(p + i + 4);
                mn0 = vminq_f32(mn0, a);
                mx0 = vmaxq_f32(mx0, a);
                mn1 = vminq_f32(mn1, b);
                mx1 = vmaxq_f32(mx1, b);
            }
            for (; i + 4 <= G; i += 4) {
                const float32x4_t a = vld1q_f32(p + i);
                mn0 = vminq_f32(mn0, a);
                mx0 = vmaxq_f32(mx0, a);
            }
            lo = vminvq_f32(vminq_f32(mn0, mn1));
            hi = vmaxvq_f32(vmaxq_f32(mx0, mx1));
            bad = non_finite(lo) || non_finite(hi);
        }
        for (; i < G; ++i) {
            const float v = p[i];
            bad |= non_finite(v);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (bad) return g * G + first_non_finite(p, (n_groups - g) * G);
        mn[g] = lo;
        mx[g] = hi;
    }
    return SIZE_MAX;
}

// x[n_groups * G] -> amax[n_groups]; NaN propagates through FMAX/FMAXV.
size_t absmax(const float* x, size_t n_groups, size_t G, float* amax) {
    for (size_t g = 0; g < n_groups; ++g) {
        const float* p = x + g * G;
        float m = 0.0f;
        bool bad = false;
        size_t i = 0;
        if (G >= 8) {
            float32x4_t m0 = vdupq_n_f32(0.0f), m1 = m0;
            for (; i + 8 <= G; i += 8) {
                m0 = vmaxq_f32(m0, vabsq_f32(vld1q_f32(p + i)));
                m1 = vmaxq_f32(m1, vabsq_f32(vld1q_f32(p + i + 4)));
            }
            m = vmaxvq_f32(vmaxq_f32(m0, m1));
            bad = non_finite(m);
        }
        for (; i < G; ++i) {
            const uint32_t u = bits_of(p[i]) & 0x7fffffffu;
            bad |= u >= 0x7f800000u;
            float a;
            __builtin_memcpy(&a, &u, 4);
            m = a > m ? a : m;
        }
        if (bad) return g * G + first_non_finite(p, (n_groups - g) * G);
        amax[g] = m;
    }
    return SIZE_MAX;
}

// x[n_groups * G] -> q[n_groups * G].
void quantize(const float* x, size_t n_groups, size_t G, const float* scale, const int32_t* zp,
              int32_t qmin, int32_t qmax, int8_t* q) {
    const float flo = float(qmin), fhi = float(qmax);
    const float32x4_t lo = vdupq_n_f32(flo), hi = vdupq_n_f32(fhi);
    for (size_t g = 0; g < n_groups; ++g) {
        const float s = scale[g];
        const float z = zp ? float(zp[g]) : 0.0f;
        const float32x4_t vs = vdupq_n_f32(s), vz = vdupq_n_f32(z);
        const float* p = x + g * G;
        int8_t* o = q + g * G;
        size_t i = 0;
        float rl, rh;
        if (fast_params(s, zp ? zp[g] : 0, &rl, &rh)) {
            const float32x4_t vrl = vdupq_n_f32(rl), vrh = vdupq_n_f32(rh), vc = vdupq_n_f32(kMagic + z);
            const float32x4_t mlo = vdupq_n_f32(kMagic + flo), mhi = vdupq_n_f32(kMagic + fhi);
            for (; i + 16 <= G; i += 16) {
                const int16x8_t ab = vcombine_s16(vmovn_s32(fast4(vld1q_f32(p + i), vrl, vrh, vc, vs, mlo, mhi)),
                                                  vmovn_s32(fast4(vld1q_f32(p + i + 4), vrl, vrh, vc, vs, mlo, mhi)));
                const int16x8_t cd = vcombine_s16(vmovn_s32(fast4(vld1q_f32(p + i + 8), vrl, vrh, vc, vs, mlo, mhi)),
                                                  vmovn_s32(fast4(vld1q_f32(p + i + 12), vrl, vrh, vc, vs, mlo, mhi)));
                vst1q_s8(o + i, vcombine_s8(vmovn_s16(ab), vmovn_s16(cd)));
            }
            for (; i + 4 <= G; i += 4) {
                const int16x4_t w = vmovn_s32(fast4(vld1q_f32(p + i), vrl, vrh, vc, vs, mlo, mhi));
                o[i] = int8_t(vget_lane_s16(w, 0));
                o[i + 1] = int8_t(vget_lane_s16(w, 1));
                o[i + 2] = int8_t(vget_lane_s16(w, 2));
                o[i + 3] = int8_t(vget_lane_s16(w, 3));
            }
            for (; i < G; ++i) o[i] = quant1(p[i], s, z, flo, fhi);
            continue;
        }
        for (; i + 16 <= G; i += 16) {
            const int16x8_t ab = vcombine_s16(vqmovn_s32(quant4(vld1q_f32(p + i), vs, vz, lo, hi)),
                                              vqmovn_s32(quant4(vld1q_f32(p + i + 4), vs, vz, lo, hi)));
            const int16x8_t cd = vcombine_s16(vqmovn_s32(quant4(vld1q_f32(p + i + 8), vs, vz, lo, hi)),
                                              vqmovn_s32(quant4(vld1q_f32(p + i + 12), vs, vz, lo, hi)));
            vst1q_s8(o + i, vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd)));
        }
        for (; i + 8 <= G; i += 8) {
            const int16x8_t ab = vcombine_s16(vqmovn_s32(quant4(vld1q_f32(p + i), vs, vz, lo, hi)),
                                              vqmovn_s32(quant4(vld1q_f32(p + i + 4), vs, vz, lo, hi)));
            vst1_s8(o + i, vqmovn_s16(ab));
        }
        for (; i < G; ++i) o[i] = quant1(p[i], s, z, flo, fhi);
    }
}

// q[n_groups * G] -> y[n_groups * G].
void dequantize_i8(const int8_t* q, size_t n_groups, size_t G, const float* scale, const int32_t* zp,
                   float* y) {
    for (size_t g = 0; g < n_groups; ++g) {
        const float s = scale[g];
        const int32_t z = zp ? zp[g] : 0;
        const int32x4_t vz = vdupq_n_s32(z);
        const float32x4_t vs = vdupq_n_f32(s);
        const int8_t* b = q + g * G;
        float* o = y + g * G;
        size_t i = 0;
        for (; i + 16 <= G; i += 16) deq16(vld1q_s8(b + i), vz, vs, o + i);
        for (; i < G; ++i) o[i] = float(int32_t(b[i]) - z) * s;
    }
}

// packed[n_groups * G / 2] -> y[n_groups * G]; G even.
void dequantize_i4(const uint8_t* packed, size_t n_groups, size_t G, const float* scale,
                   const int32_t* zp, bool is_signed, float* y) {
    for (size_t g = 0; g < n_groups; ++g) {
        const float s = scale[g];
        const int32_t z = zp ? zp[g] : 0;
        const int32x4_t vz = vdupq_n_s32(z);
        const float32x4_t vs = vdupq_n_f32(s);
        const uint8_t* b = packed + g * (G / 2);
        float* o = y + g * G;
        size_t i = 0;
        for (; i + 32 <= G; i += 32) {
            int8x16_t lo, hi;
            split_nibbles(vld1q_u8(b + i / 2), is_signed, &lo, &hi);
            deq16(vzip1q_s8(lo, hi), vz, vs, o + i);
            deq16(vzip2q_s8(lo, hi), vz, vs, o + i + 16);
        }
        for (; i < G; ++i) {
            int32_t v = (b[i / 2] >> ((i & 1) * 4)) & 0xf;
            if (is_signed) v = (v ^ 8) - 8;
            o[i] = float(v - z) * s;
        }
    }
}

// q[n] -> packed[ceil(n/2)].
void pack_i4(const int8_t* q, size_t n, uint8_t* packed) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const uint8x16x2_t v = vld2q_u8((const uint8_t*)(q + i));  // even / odd elements
        vst1q_u8(packed + i / 2, vorrq_u8(vandq_u8(v.val[0], vdupq_n_u8(0xf)), vshlq_n_u8(v.val[1], 4)));
    }
    for (; i + 1 < n; i += 2) packed[i / 2] = uint8_t((q[i] & 0xf) | ((q[i + 1] & 0xf) << 4));
    if (i < n) packed[i / 2] = uint8_t(q[i] & 0xf);
}

// packed[ceil(n/2)] -> q[n].
void unpack_i4(const uint8_t* packed, size_t n, bool is_signed, int8_t* q) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        int8x16x2_t v;
        split_nibbles(vld1q_u8(packed + i / 2), is_signed, &v.val[0], &v.val[1]);
        vst2q_s8(q + i, v);
    }
    for (; i < n; ++i) {
        int v = (packed[i / 2] >> ((i & 1) * 4)) & 0xf;
        if (is_signed) v = (v ^ 8) - 8;
        q[i] = int8_t(v);
    }
}

// q[n] -> packed[ceil(n/4)].
void pack_i2(const int8_t* q, size_t n, uint8_t* packed) {
    const uint8x16_t m2 = vdupq_n_u8(3);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const uint8x16x4_t v = vld4q_u8((const uint8_t*)(q + i));  // element 4i+j in v.val[j]
        uint8x16_t r = vandq_u8(v.val[0], m2);
        r = vorrq_u8(r, vshlq_n_u8(vandq_u8(v.val[1], m2), 2));
        r = vorrq_u8(r, vshlq_n_u8(vandq_u8(v.val[2], m2), 4));
        r = vorrq_u8(r, vshlq_n_u8(v.val[3], 6));
        vst1q_u8(packed + i / 4, r);
    }
    for (; i + 4 <= n; i += 4)
        packed[i / 4] = uint8_t((q[i] & 3) | ((q[i + 1] & 3) << 2) | ((q[i + 2] & 3) << 4) | ((q[i + 3] & 3) << 6));
    if (i < n) {
        unsigned v = 0;
        for (size_t j = 0; i + j < n; ++j) v |= unsigned(q[i + j] & 3) << (2 * j);
        packed[i / 4] = uint8_t(v);
    }
}

// packed[ceil(n/4)] -> q[n].
void unpack_i2(const uint8_t* packed, size_t n, int8_t* q) {
    const uint8x16_t m2 = vdupq_n_u8(3);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const uint8x16_t x = vld1q_u8(packed + i / 4);
        uint8x16x4_t v;
        v.val[0] = vandq_u8(x, m2);
        v.val[1] = vandq_u8(vshrq_n_u8(x, 2), m2);
        v.val[2] = vandq_u8(vshrq_n_u8(x, 4), m2);
        v.val[3] = vshrq_n_u8(x, 6);
        vst4q_u8((uint8_t*)(q + i), v);
    }
    for (; i < n; ++i) q[i] = int8_t((packed[i / 4] >> (2 * (i & 3))) & 3);
}

}  // namespace neon
}  // namespace qk

#endif  // __aarch64__
