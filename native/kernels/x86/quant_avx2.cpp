// AVX2 (+FMA, F16C) versions of the quantization element loops, conversions
// and sub-byte packing. Bit-exact with qk::ref (quant_ref.cpp, the spec):
// the same IEEE operations per element, only several at a time.
// Compiled with -mavx2 -mfma -mf16c: no inline library code here (it could be
// shared with generic code through the linker), only static helpers.
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../isa.h"

namespace qk {
namespace avx2 {

namespace {

static inline uint32_t bits_of(float f) {
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    return u;
}

static inline float float_of(uint32_t u) {
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

static inline size_t first_non_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if ((bits_of(x[i]) & 0x7f800000u) == 0x7f800000u) return i;
    return SIZE_MAX;
}

// Maps float bits to an int32 whose signed order is the float order (NaNs
// land beyond ±inf), so min/max run on the 1-cycle integer units and a
// non-finite value shows up in the result. The map is its own inverse.
static inline int32_t sortable(uint32_t u) {
    const int32_t s = int32_t(u);
    return s ^ ((s >> 31) & 0x7fffffff);
}
static inline __m256i sortable(__m256i v) {
    return _mm256_xor_si256(v, _mm256_and_si256(_mm256_srai_epi32(v, 31), _mm256_set1_epi32(0x7fffffff)));
}
// sortable(+inf) and sortable(-inf): anything at or beyond them is inf/NaN.
constexpr int32_t kSortPosInf = 0x7f800000;
constexpr int32_t kSortNegInf = int32_t(0x807fffffu);

static inline int32_t hmin(__m256i v) {
    __m128i m = _mm_min_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0x4e));
    m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0xb1));
    return _mm_cvtsi128_si32(m);
}
static inline int32_t hmax(__m256i v) {
    __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4e));
    m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xb1));
    return _mm_cvtsi128_si32(m);
}

// The ref formula for one element (scalar tail).
static inline int8_t quant1(float x, float s, float z, float lo, float hi) {
    __m128 v = _mm_set_ss(x / s);
    v = _mm_round_ss(v, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm_add_ss(v, _mm_set_ss(z));
    v = _mm_min_ss(_mm_max_ss(v, _mm_set_ss(lo)), _mm_set_ss(hi));
    return int8_t(_mm_cvtss_si32(v));
}

// 8 quotients -> 8 integral floats already clamped to [lo, hi] -> int32.
static inline __m256i quant8(__m256 x, __m256 s, __m256 z, __m256 lo, __m256 hi) {
    __m256 v = _mm256_round_ps(_mm256_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, z), lo), hi);
    return _mm256_cvtps_epi32(v);  // exact: v is integral and in int8 range
}

// Division-free quantize: the reciprocal bracket of quant_avx512.cpp (see
// the derivation there). With r = fl(1/s) normal, rl/rh = r -/+ 4 ulps and
// C = 1.5*2^23 + z, a = fma(x, rl, C) and b = fma(x, rh, C) bracket
// RN(fl(x/s) + C); when a == b, a = C + rne(fl(x/s)) (or both clamp to the
// same bound), else (a few ulps from k + 0.5, or NaN) the lane is redone
// with a real division. Groups whose r is not normal (subnormal scales:
// 1/s = inf) or whose |zp| > 2^16 take the division path.
constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23

static inline bool fast_params(float s, int32_t zp, float* rl, float* rh) {
    const float r = 1.0f / s;
    const uint32_t e = (bits_of(r) >> 23) & 0xffu;
    if (e < 2 || e > 253 || zp > 65536 || zp < -65536) return false;
    *rl = float_of(bits_of(r) - 4);
    *rh = float_of(bits_of(r) + 4);
    return true;
}

// 8 values -> the codes as int32: C + rne(fl(x/s)), clamped to
// [C0 + qmin, C0 + qmax] (C0 = 1.5*2^23; NaN -> qmin), minus bits(C0).
static inline __m256i fast8(__m256 x, __m256 rl, __m256 rh, __m256 c, __m256 s, __m256 lo, __m256 hi) {
    __m256 a = _mm256_fmadd_ps(x, rl, c);
    const __m256 m = _mm256_cmp_ps(a, _mm256_fmadd_ps(x, rh, c), _CMP_NEQ_UQ);
    if (__builtin_expect(_mm256_movemask_ps(m) != 0, 0)) {
        const __m256 q = _mm256_round_ps(_mm256_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        a = _mm256_blendv_ps(a, _mm256_add_ps(q, c), m);
    }
    const __m256 v = _mm256_min_ps(_mm256_max_ps(a, lo), hi);
    return _mm256_sub_epi32(_mm256_castps_si256(v), _mm256_set1_epi32(0x4b400000));
}

// packs_epi32 + packs_epi16 interleave 128-bit lanes; this restores order.
static inline __m256i fix_pack_order(__m256i v) {
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

}  // namespace

// src[n] -> dst[n].
void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + i))));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + i + 8))));
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + i))));
    for (; i < n; ++i) dst[i] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(src[i])));
}

// src[n] -> dst[n].
void bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(src + i)));
        _mm256_storeu_si256((__m256i*)(dst + i), _mm256_slli_epi32(v, 16));
    }
    for (; i < n; ++i) dst[i] = float_of(uint32_t(src[i]) << 16);
}

// x[n_groups * G] -> mn[n_groups], mx[n_groups].
size_t minmax(const float* x, size_t n_groups, size_t G, float* mn, float* mx) {
    if (G == 0) return SIZE_MAX;
    for (size_t g = 0; g < n_groups; ++g) {
        const float* p = x + g * G;
        int32_t smn = INT32_MAX, smx = INT32_MIN;
        size_t i = 0;
        if (G >= 8) {
            __m256i vmn0 = _mm256_set1_epi32(INT32_MAX), vmx0 = _mm256_set1_epi32(INT32_MIN);
            __m256i vmn1 = vmn0, vmx1 = vmx0;
            for (; i + 16 <= G; i += 16) {
                const __m256i a = sortable(_mm256_loadu_si256((const __m256i*)(p + i)));
                const __m256i b = sortable(_mm256_loadu_si256((const __m256i*)(p + i + 8)));
                vmn0 = _mm256_min_epi32(vmn0, a);
                vmx0 = _mm256_max_epi32(vmx0, a);
                vmn1 = _mm256_min_epi32(vmn1, b);
                vmx1 = _mm256_max_epi32(vmx1, b);
            }
            for (; i + 8 <= G; i += 8) {
                const __m256i a = sortable(_mm256_loadu_si256((const __m256i*)(p + i)));
                vmn0 = _mm256_min_epi32(vmn0, a);
                vmx0 = _mm256_max_epi32(vmx0, a);
            }
            smn = hmin(_mm256_min_epi32(vmn0, vmn1));
            smx = hmax(_mm256_max_epi32(vmx0, vmx1));
        }
        for (; i < G; ++i) {
            const int32_t s = sortable(bits_of(p[i]));
            smn = s < smn ? s : smn;
            smx = s > smx ? s : smx;
        }
        if (smx >= kSortPosInf || smn <= kSortNegInf)
            return g * G + first_non_finite(p, (n_groups - g) * G);
        mn[g] = float_of(uint32_t(sortable(uint32_t(smn))));
        mx[g] = float_of(uint32_t(sortable(uint32_t(smx))));
    }
    return SIZE_MAX;
}

// x[n_groups * G] -> amax[n_groups]. |x| bits order like the floats, so the
// max runs on integers; NaN/inf give bits >= 0x7f800000.
size_t absmax(const float* x, size_t n_groups, size_t G, float* amax) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    for (size_t g = 0; g < n_groups; ++g) {
        const float* p = x + g * G;
        int32_t m = 0;
        size_t i = 0;
        if (G >= 8) {
            __m256i m0 = _mm256_setzero_si256(), m1 = m0;
            for (; i + 16 <= G; i += 16) {
                m0 = _mm256_max_epi32(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(p + i)), abs_mask));
                m1 = _mm256_max_epi32(m1, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(p + i + 8)), abs_mask));
            }
            for (; i + 8 <= G; i += 8)
                m0 = _mm256_max_epi32(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(p + i)), abs_mask));
            m = hmax(_mm256_max_epi32(m0, m1));
        }
        for (; i < G; ++i) {
            const int32_t a = int32_t(bits_of(p[i]) & 0x7fffffffu);
            m = a > m ? a : m;
        }
        if (m >= 0x7f800000) return g * G + first_non_finite(p, (n_groups - g) * G);
        amax[g] = float_of(uint32_t(m));
    }
    return SIZE_MAX;
}

// x[n_groups * G] -> q[n_groups * G].
void quantize(const float* x, size_t n_groups, size_t G, const float* scale, const int32_t* zp,
              int32_t qmin, int32_t qmax, int8_t* q) {
    const float flo = float(qmin), fhi = float(qmax);
    const __m256 lo = _mm256_set1_ps(flo), hi = _mm256_set1_ps(fhi);
    for (size_t g = 0; g < n_groups; ++g) {
        const float s = scale[g];
        const float z = zp ? float(zp[g]) : 0.0f;
        const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(z);
        const float* p = x + g * G;
        int8_t* o = q + g * G;
        size_t i = 0;
        float rl, rh;
        if (fast_params(s, zp ? zp[g] : 0, &rl, &rh)) {
            const __m256 vrl = _mm256_set1_ps(rl), vrh = _mm256_set1_ps(rh), vc = _mm256_set1_ps(kMagic + z);
            const __m256 mlo = _mm256_set1_ps(kMagic + flo), mhi = _mm256_set1_ps(kMagic + fhi);
            for (; i + 32 <= G; i += 32) {
                const __m256i a = fast8(_mm256_loadu_ps(p + i), vrl, vrh, vc, vs, mlo, mhi);
                const __m256i b = fast8(_mm256_loadu_ps(p + i + 8), vrl, vrh, vc, vs, mlo, mhi);
                const __m256i c = fast8(_mm256_loadu_ps(p + i + 16), vrl, vrh, vc, vs, mlo, mhi);
                const __m256i d = fast8(_mm256_loadu_ps(p + i + 24), vrl, vrh, vc, vs, mlo, mhi);
                const __m256i r = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
                _mm256_storeu_si256((__m256i*)(o + i), fix_pack_order(r));
            }
            for (; i + 8 <= G; i += 8) {
                const __m256i a = fast8(_mm256_loadu_ps(p + i), vrl, vrh, vc, vs, mlo, mhi);
                const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
                _mm_storel_epi64((__m128i*)(o + i), _mm_packs_epi16(w, w));
            }
            for (; i < G; ++i) o[i] = quant1(p[i], s, z, flo, fhi);
            continue;
        }
        for (; i + 32 <= G; i += 32) {
            const __m256i a = quant8(_mm256_loadu_ps(p + i), vs, vz, lo, hi);
            const __m256i b = quant8(_mm256_loadu_ps(p + i + 8), vs, vz, lo, hi);
            const __m256i c = quant8(_mm256_loadu_ps(p + i + 16), vs, vz, lo, hi);
            const __m256i d = quant8(_mm256_loadu_ps(p + i + 24), vs, vz, lo, hi);
            const __m256i r = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
            _mm256_storeu_si256((__m256i*)(o + i), fix_pack_order(r));
        }
        for (; i + 8 <= G; i += 8) {
            const __m256i a = quant8(_mm256_loadu_ps(p + i), vs, vz, lo, hi);
            const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
            _mm_storel_epi64((__m128i*)(o + i), _mm_packs_epi16(w, w));
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
        const __m256 vs = _mm256_set1_ps(s);
        const __m256i vz = _mm256_set1_epi32(z);
        const int8_t* b = q + g * G;
        float* o = y + g * G;
        size_t i = 0;
        for (; i + 16 <= G; i += 16) {
            const __m128i v = _mm_loadu_si128((const __m128i*)(b + i));
            const __m256i a = _mm256_sub_epi32(_mm256_cvtepi8_epi32(v), vz);
            const __m256i c = _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)), vz);
            _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_cvtepi32_ps(a), vs));
            _mm256_storeu_ps(o + i + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(c), vs));
        }
        for (; i + 8 <= G; i += 8) {
            const __m256i a = _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(b + i))), vz);
            _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_cvtepi32_ps(a), vs));
        }
        for (; i < G; ++i) o[i] = float(int32_t(b[i]) - z) * s;
    }
}

// packed[n_groups * G / 2] -> y[n_groups * G]; G even.
void dequantize_i4(const uint8_t* packed, size_t n_groups, size_t G, const float* scale,
                   const int32_t* zp, bool is_signed, float* y) {
    // Each byte is duplicated into two int32 lanes; per-lane shifts then pick
    // the low (even element) or high (odd element) nibble.
    const __m256i shl = _mm256_setr_epi32(28, 24, 28, 24, 28, 24, 28, 24);
    const __m256i shr = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);
    const __m256i m4 = _mm256_set1_epi32(0xf);
    for (size_t g = 0; g < n_groups; ++g) {
        const float s = scale[g];
        const int32_t z = zp ? zp[g] : 0;
        const __m256 vs = _mm256_set1_ps(s);
        const __m256i vz = _mm256_set1_epi32(z);
        const uint8_t* b = packed + g * (G / 2);
        float* o = y + g * G;
        size_t i = 0;
        for (; i + 16 <= G; i += 16) {
            const __m128i d = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i*)(b + i / 2)),
                                                _mm_loadl_epi64((const __m128i*)(b + i / 2)));
            __m256i a = _mm256_cvtepu8_epi32(d);
            __m256i c = _mm256_cvtepu8_epi32(_mm_srli_si128(d, 8));
            if (is_signed) {
                a = _mm256_srai_epi32(_mm256_sllv_epi32(a, shl), 28);
                c = _mm256_srai_epi32(_mm256_sllv_epi32(c, shl), 28);
            } else {
                a = _mm256_and_si256(_mm256_srlv_epi32(a, shr), m4);
                c = _mm256_and_si256(_mm256_srlv_epi32(c, shr), m4);
            }
            _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(a, vz)), vs));
            _mm256_storeu_ps(o + i + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(c, vz)), vs));
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
    // In 16-bit lanes (even | odd << 8) both nibbles move into the low byte.
    const __m256i lo4 = _mm256_set1_epi16(0x000f), hi4 = _mm256_set1_epi16(0x00f0);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m256i a = _mm256_loadu_si256((const __m256i*)(q + i));
        const __m256i b = _mm256_loadu_si256((const __m256i*)(q + i + 32));
        const __m256i fa = _mm256_or_si256(_mm256_and_si256(a, lo4), _mm256_and_si256(_mm256_srli_epi16(a, 4), hi4));
        const __m256i fb = _mm256_or_si256(_mm256_and_si256(b, lo4), _mm256_and_si256(_mm256_srli_epi16(b, 4), hi4));
        _mm256_storeu_si256((__m256i*)(packed + i / 2), _mm256_permute4x64_epi64(_mm256_packus_epi16(fa, fb), 0xd8));
    }
    for (; i + 16 <= n; i += 16) {
        const __m128i a = _mm_loadu_si128((const __m128i*)(q + i));
        const __m128i f = _mm_or_si128(_mm_and_si128(a, _mm256_castsi256_si128(lo4)),
                                       _mm_and_si128(_mm_srli_epi16(a, 4), _mm256_castsi256_si128(hi4)));
        _mm_storel_epi64((__m128i*)(packed + i / 2), _mm_packus_epi16(f, f));
    }
    for (; i + 1 < n; i += 2) packed[i / 2] = uint8_t((q[i] & 0xf) | ((q[i + 1] & 0xf) << 4));
    if (i < n) packed[i / 2] = uint8_t(q[i] & 0xf);
}

// packed[ceil(n/2)] -> q[n].
void unpack_i4(const uint8_t* packed, size_t n, bool is_signed, int8_t* q) {
    const __m256i m4 = _mm256_set1_epi8(0xf), eight = _mm256_set1_epi8(8);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m256i x = _mm256_loadu_si256((const __m256i*)(packed + i / 2));
        __m256i lo = _mm256_and_si256(x, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
        if (is_signed) {  // (v ^ 8) - 8 sign-extends a nibble
            lo = _mm256_sub_epi8(_mm256_xor_si256(lo, eight), eight);
            hi = _mm256_sub_epi8(_mm256_xor_si256(hi, eight), eight);
        }
        const __m256i a = _mm256_unpacklo_epi8(lo, hi);  // bytes 0-7 | 16-23
        const __m256i b = _mm256_unpackhi_epi8(lo, hi);  // bytes 8-15 | 24-31
        _mm256_storeu_si256((__m256i*)(q + i), _mm256_permute2x128_si256(a, b, 0x20));
        _mm256_storeu_si256((__m256i*)(q + i + 32), _mm256_permute2x128_si256(a, b, 0x31));
    }
    for (; i + 32 <= n; i += 32) {
        const __m128i x = _mm_loadu_si128((const __m128i*)(packed + i / 2));
        __m128i lo = _mm_and_si128(x, _mm256_castsi256_si128(m4));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), _mm256_castsi256_si128(m4));
        if (is_signed) {
            lo = _mm_sub_epi8(_mm_xor_si128(lo, _mm256_castsi256_si128(eight)), _mm256_castsi256_si128(eight));
            hi = _mm_sub_epi8(_mm_xor_si128(hi, _mm256_castsi256_si128(eight)), _mm256_castsi256_si128(eight));
        }
        _mm_storeu_si128((__m128i*)(q + i), _mm_unpacklo_epi8(lo, hi));
        _mm_storeu_si128((__m128i*)(q + i + 16), _mm_unpackhi_epi8(lo, hi));
    }
    for (; i < n; ++i) {
        int v = (packed[i / 2] >> ((i & 1) * 4)) & 0xf;
        if (is_signed) v = (v ^ 8) - 8;
        q[i] = int8_t(v);
    }
}

// q[n] -> packed[ceil(n/4)].
void pack_i2(const int8_t* q, size_t n, uint8_t* packed) {
    // maddubs: v0 + 4*v1 per 16 bits; madd: (v0 + 4v1) + 16*(v2 + 4v3) per 32 bits.
    const __m256i m2 = _mm256_set1_epi8(3);
    const __m256i w1 = _mm256_set1_epi16(0x0401), w2 = _mm256_set1_epi32(0x00100001);
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m256i d[4];
        for (int k = 0; k < 4; ++k) {
            const __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(q + i + 32 * k)), m2);
            d[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(v, w1), w2);
        }
        const __m256i r = _mm256_packus_epi16(_mm256_packus_epi32(d[0], d[1]), _mm256_packus_epi32(d[2], d[3]));
        _mm256_storeu_si256((__m256i*)(packed + i / 4), fix_pack_order(r));
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
    // Each byte is copied to 4 positions j; a 16-bit shift by 2j then brings
    // bits 2j..2j+1 down to position j's low bits (within its own byte).
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
                                            4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);
    const __m256i k0 = _mm256_set1_epi32(0x00000003), k1 = _mm256_set1_epi32(0x00000300);
    const __m256i k2 = _mm256_set1_epi32(0x00030000), k3 = _mm256_set1_epi32(0x03000000);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m128i x = _mm_loadl_epi64((const __m128i*)(packed + i / 4));
        const __m256i v = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(x), spread);
        const __m256i r = _mm256_or_si256(
            _mm256_or_si256(_mm256_and_si256(v, k0), _mm256_and_si256(_mm256_srli_epi16(v, 2), k1)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), k2), _mm256_and_si256(_mm256_srli_epi16(v, 6), k3)));
        _mm256_storeu_si256((__m256i*)(q + i), r);
    }
    for (; i < n; ++i) q[i] = int8_t((packed[i / 4] >> (2 * (i & 3))) & 3);
}

}  // namespace avx2
}  // namespace qk

#endif  // x86-64
