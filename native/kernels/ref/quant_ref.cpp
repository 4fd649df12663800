// Scalar reference of the quantization element loops, conversions and
// sub-byte packing. This file IS the specification: every SIMD version must
// produce bit-identical results (see kernels.h for the contract).
// Compiled without ISA flags.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../isa.h"

namespace qk {
namespace ref {

namespace {

uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

float float_of(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

bool non_finite(float f) { return (bits_of(f) & 0x7f800000u) == 0x7f800000u; }

size_t first_non_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (non_finite(x[i])) return i;
    return SIZE_MAX;
}

}  // namespace

// src[n] (IEEE binary16 bits) -> dst[n]. NaNs come out quiet with the payload
// kept, as the F16C / FCVTL hardware conversions do.
void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const uint32_t h = src[i];
        const uint32_t sign = (h & 0x8000u) << 16;
        const uint32_t exp = (h >> 10) & 0x1fu;
        const uint32_t mant = h & 0x3ffu;
        uint32_t out;
        if (exp == 0) {
            // Zero or subnormal: mant * 2^-24 is exact in float.
            out = sign | bits_of(float(mant) * 0x1p-24f);
        } else if (exp == 31) {
            out = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0u);
        } else {
            out = sign | ((exp + 112) << 23) | (mant << 13);
        }
        dst[i] = float_of(out);
    }
}

// src[n] (bfloat16 bits) -> dst[n]: the upper half of the float.
void bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
    for (size_t i = 0; i < n; ++i) dst[i] = float_of(uint32_t(src[i]) << 16);
}

// x[n_groups * G] -> mn[n_groups], mx[n_groups]. mn/mx are unspecified when a
// non-finite value is present (the return value then says where).
size_t minmax(const float* x, size_t n_groups, size_t G, float* mn, float* mx) {
    const size_t bad = first_non_finite(x, n_groups * G);
    if (bad != SIZE_MAX || G == 0) return bad;
    for (size_t g = 0; g < n_groups; ++g) {
        const float* p = x + g * G;
        float lo = p[0], hi = p[0];
        for (size_t i = 1; i < G; ++i) {
            if (p[i] < lo) lo = p[i];
            if (p[i] > hi) hi = p[i];
        }
        mn[g] = lo;
        mx[g] = hi;
    }
    return SIZE_MAX;
}

// x[n_groups * G] -> amax[n_groups] (always >= +0).
size_t absmax(const float* x, size_t n_groups, size_t G, float* amax) {
    const size_t bad = first_non_finite(x, n_groups * G);
    if (bad != SIZE_MAX) return bad;
    for (size_t g = 0; g < n_groups; ++g) {
        const float* p = x + g * G;
        float m = 0.0f;
        for (size_t i = 0; i < G; ++i) {
            const float a = std::fabs(p[i]);
            if (a > m) m = a;
        }
        amax[g] = m;
    }
    return SIZE_MAX;
}

// x[n_groups * G] -> q[n_groups * G]. The clamp happens in float so that any
// quotient (even inf) converts without overflow; the comparisons are written
// so a NaN input yields qmin (the same as x86 max/min and AArch64 fmaxnm/fminnm).
void quantize(const float* x, size_t n_groups, size_t G, const float* scale, const int32_t* zp,
              int32_t qmin, int32_t qmax, int8_t* q) {
    const float lo = float(qmin), hi = float(qmax);
    for (size_t g = 0; g < n_groups; ++g) {
        const float s = scale[g];
        const float z = zp ? float(zp[g]) : 0.0f;
        const float* p = x + g * G;
        int8_t* o = q + g * G;
        for (size_t i = 0; i < G; ++i) {
            float v = std::nearbyint(p[i] / s) + z;  // default rounding mode: half to even
            v = v > lo ? v : lo;
            v = v < hi ? v : hi;
            o[i] = int8_t(int32_t(v));
        }
    }
}

// q[n_groups * G] -> y[n_groups * G].
void dequantize_i8(const int8_t* q, size_t n_groups, size_t G, const float* scale, const int32_t* zp,
                   float* y) {
    for (size_t g = 0; g < n_groups; ++g) {
        const float s = scale[g];
        const int32_t z = zp ? zp[g] : 0;
        for (size_t i = 0; i < G; ++i) y[g * G + i] = float(int32_t(q[g * G + i]) - z) * s;
    }
}

// packed[n_groups * G / 2] -> y[n_groups * G]; G even.
void dequantize_i4(const uint8_t* packed, size_t n_groups, size_t G, const float* scale,
                   const int32_t* zp, bool is_signed, float* y) {
    for (size_t g = 0; g < n_groups; ++g) {
        const float s = scale[g];
        const int32_t z = zp ? zp[g] : 0;
        const uint8_t* b = packed + g * (G / 2);
        float* o = y + g * G;
        for (size_t i = 0; i < G; ++i) {
            int32_t v = (b[i / 2] >> ((i & 1) * 4)) & 0xf;
            if (is_signed) v = (v ^ 8) - 8;
            o[i] = float(v - z) * s;
        }
    }
}

// q[n] -> packed[ceil(n/2)]; only the low nibble of each value is used.
void pack_i4(const int8_t* q, size_t n, uint8_t* packed) {
    for (size_t i = 0; i + 1 < n; i += 2)
        packed[i / 2] = uint8_t((q[i] & 0xf) | ((q[i + 1] & 0xf) << 4));
    if (n & 1) packed[n / 2] = uint8_t(q[n - 1] & 0xf);
}

// packed[ceil(n/2)] -> q[n].
void unpack_i4(const uint8_t* packed, size_t n, bool is_signed, int8_t* q) {
    for (size_t i = 0; i < n; ++i) {
        int v = (packed[i / 2] >> ((i & 1) * 4)) & 0xf;
        if (is_signed) v = (v ^ 8) - 8;
        q[i] = int8_t(v);
    }
}

// q[n] -> packed[ceil(n/4)]; only the low two bits of each value are used.
void pack_i2(const int8_t* q, size_t n, uint8_t* packed) {
    for (size_t b = 0; b < (n + 3) / 4; ++b) {
        unsigned v = 0;
        for (size_t j = 0; j < 4 && 4 * b + j < n; ++j) v |= unsigned(q[4 * b + j] & 3) << (2 * j);
        packed[b] = uint8_t(v);
    }
}

// packed[ceil(n/4)] -> q[n], values 0..3.
void unpack_i2(const uint8_t* packed, size_t n, int8_t* q) {
    for (size_t i = 0; i < n; ++i) q[i] = int8_t((packed[i / 4] >> (2 * (i & 3))) & 3);
}

}  // namespace ref
}  // namespace qk
