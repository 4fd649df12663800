// AVX-512 (F/BW/VL) versions of the quantization element loops, conversions
// and sub-byte packing, 512-bit vectors with masked loads/stores for the
// tails. Bit-exact with qk::ref (quant_ref.cpp, the spec): masked-off lanes
// never reach memory, and every stored lane uses the ref's IEEE operations.
// Compiled with AVX-512 flags: no inline library code here (it could be
// shared with generic code through the linker), only static helpers.
#if defined(__x86_64__) || defined(_M_X64)

#include "gcc_avx512_warnings.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../isa.h"
#include "avx512_mask.h"

namespace qk {
namespace avx512 {

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

// Lane masks for the first r lanes (r <= 32 / 64; mask16: avx512_mask.h).
static inline __mmask32 mask32(size_t r) { return __mmask32((1ull << r) - 1); }
static inline __mmask64 mask64(size_t r) { return r >= 64 ? ~__mmask64(0) : __mmask64((1ull << r) - 1); }

// Float bits -> int32 in float order (NaNs beyond ±inf), see quant_avx2.cpp.
static inline __m512i sortable(__m512i v) {
    return _mm512_xor_si512(v, _mm512_and_si512(_mm512_srai_epi32(v, 31), _mm512_set1_epi32(0x7fffffff)));
}
static inline int32_t sortable(int32_t s) { return s ^ ((s >> 31) & 0x7fffffff); }
constexpr int32_t kSortPosInf = 0x7f800000;
constexpr int32_t kSortNegInf = int32_t(0x807fffffu);

// 16 quotients -> integral floats clamped to [lo, hi] -> int32.
static inline __m512i quant16(__m512 x, __m512 s, __m512 z, __m512 lo, __m512 hi) {
    __m512 v = _mm512_roundscale_ps(_mm512_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, z), lo), hi);
    return _mm512_cvtps_epi32(v);  // exact: v is integral and in int8 range
}

// ---- division-free quantize -------------------------------------------
// The spec rounds the IEEE quotient q' = fl(x / s); a division per element
// is what bounds the speed, so the fast path brackets q' with two fused
// multiply-adds and divides only where the bracket is ambiguous.
//
// With r = fl(1 / s) finite and normal, rl / rh = r moved down / up by 4 ulps
// (bits(r) -/+ 4), u = 2^-24, Q = x / s exactly:
//   |r s - 1| <= u and 4 ulps of r are > 3.99 u r, so rl s < (1+u)(1-3.99u)
//   < 1 - 2.9u and rh s > (1-u)(1+4u) > 1 + 2.9u; q' = Q(1+e), |e| <= u,
//   hence for x != 0, q' lies STRICTLY between the exact products x rl and
//   x rh: |x rl - q'| and |x rh - q'| are 2-7 ulps of the quotient, the
//   safety margin. (Q below the normal range: q', x rl, x rh are all
//   < 2^-125 and everything below rounds to C + 0. Q beyond FLT_MAX: q' = inf
//   and a, b are inf or differ; either way the result clamps to qmax.)
// Let C = 1.5 * 2^23 + z (z = float(zp), |zp| <= 2^16, so C is an integer in
// [2^23, 2^24) where float spacing is 1). a = fma(x, rl, C) and
// b = fma(x, rh, C) round the exact x rl + C and x rh + C once, and rounding
// is monotone, so RN(q' + C) lies between a and b. If a == b:
//   - RN(q' + C) = a, and q' + C is not a tie (q' would be strictly inside the
//     bracket, whose ends round to the two different integers around it), so
//     inside [2^23, 2^24) a = C + rne(q') exactly -- the spec's value + z.
//   - beyond that binade |q'| >= 2^22 - 2^16: a and the spec both clamp to
//     the same bound (a >= 2^24 > C_max, or a <= 2^23 < C_min; monotone).
// If a != b (q' within a few ulps of k + 0.5, NaN) the lane is recomputed
// with a real division: rne(x / s) + C (exact, or monotone beyond 2^24).
// Then clamp to [1.5*2^23 + qmin, 1.5*2^23 + qmax]; a clamped value's low
// mantissa byte is the int8 code (bits(1.5*2^23 + k) = 0x4b400000 + k).
// NaN: max(NaN, lo) = lo, the ref's qmin. When r is not normal or near the
// ends of the normal range (scale subnormal down to FLT_TRUE_MIN: 1/s = inf;
// or huge), or |zp| > 2^16, the whole group takes the division path.
constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23

static inline bool fast_params(float s, int32_t zp, float* rl, float* rh) {
    const float r = 1.0f / s;
    const uint32_t e = (bits_of(r) >> 23) & 0xffu;
    if (e < 2 || e > 253 || zp > 65536 || zp < -65536) return false;
    *rl = float_of(bits_of(r) - 4);
    *rh = float_of(bits_of(r) + 4);
    return true;
}

// 16 values -> C + rne(fl(x / s)) (see above), unclamped: the bracket, and
// a masked division for the (rare) ambiguous lanes.
static inline __m512 rne16(__m512 x, __m512 rl, __m512 rh, __m512 c, __m512 s) {
    const __m512 a = _mm512_fmadd_ps(x, rl, c);
    const __mmask16 m = _mm512_cmp_ps_mask(a, _mm512_fmadd_ps(x, rh, c), _CMP_NEQ_UQ);
    if (__builtin_expect(m != 0, 0)) {
        const __m512 q = _mm512_roundscale_ps(_mm512_maskz_div_ps(m, x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        return _mm512_mask_add_ps(a, m, q, c);
    }
    return a;
}

// Clamp to [lo, hi] (offset by kMagic; NaN -> lo).
static inline __m512i clamp16(__m512 t, __m512 lo, __m512 hi) {
    return _mm512_castps_si512(_mm512_min_ps(_mm512_max_ps(t, lo), hi));
}

// Clamp and store 16 codes.
static inline void store16(int8_t* o, __m512 t, __m512 lo, __m512 hi) {
    _mm_storeu_si128((__m128i*)o, _mm512_cvtepi32_epi8(clamp16(t, lo, hi)));
}

// 16 bytes, each duplicated (b0 b0 b1 b1 ...), -> 16 int32 nibble values.
static inline __m512i nibbles16(__m128i dup, bool is_signed) {
    const __m512i v = _mm512_cvtepu8_epi32(dup);
    if (is_signed) {
        const __m512i shl = _mm512_set_epi32(24, 28, 24, 28, 24, 28, 24, 28, 24, 28, 24, 28, 24, 28, 24, 28);
        return _mm512_srai_epi32(_mm512_sllv_epi32(v, shl), 28);
    }
    const __m512i shr = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    return _mm512_and_si512(_mm512_srlv_epi32(v, shr), _mm512_set1_epi32(0xf));
}

// 64 values (16-bit lanes even | odd << 8) -> 32 packed bytes.
static inline __m256i pack_nibbles(__m512i a) {
    const __m512i f = _mm512_or_si512(_mm512_and_si512(a, _mm512_set1_epi16(0x000f)),
                                      _mm512_and_si512(_mm512_srli_epi16(a, 4), _mm512_set1_epi16(0x00f0)));
    return _mm512_cvtepi16_epi8(f);
}

// 32 packed bytes -> 64 values, even element from the low nibble.
static inline __m512i unpack_nibbles(__m256i x, bool is_signed) {
    const __m512i w = _mm512_cvtepu8_epi16(x);
    const __m512i m4 = _mm512_set1_epi16(0xf);
    __m512i v = _mm512_or_si512(_mm512_and_si512(w, m4), _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(w, 4), m4), 8));
    if (is_signed) {  // (v ^ 8) - 8 per byte sign-extends a nibble
        const __m512i eight = _mm512_set1_epi8(8);
        v = _mm512_sub_epi8(_mm512_xor_si512(v, eight), eight);
    }
    return v;
}

// 64 values 0..3 -> 16 packed bytes.
static inline __m128i pack_crumbs(__m512i v) {
    v = _mm512_and_si512(v, _mm512_set1_epi8(3));
    const __m512i d = _mm512_madd_epi16(_mm512_maddubs_epi16(v, _mm512_set1_epi16(0x0401)), _mm512_set1_epi32(0x00100001));
    return _mm512_cvtepi32_epi8(d);
}

// 16 packed bytes -> 64 values 0..3: each byte copied to 4 positions j, then
// a 16-bit shift by 2j brings bits 2j..2j+1 to position j's low bits.
static inline __m512i unpack_crumbs(__m128i x) {
    const __m512i spread = _mm512_set_epi32(0x0f0f0f0f, 0x0e0e0e0e, 0x0d0d0d0d, 0x0c0c0c0c,
                                            0x0b0b0b0b, 0x0a0a0a0a, 0x09090909, 0x08080808,
                                            0x07070707, 0x06060606, 0x05050505, 0x04040404,
                                            0x03030303, 0x02020202, 0x01010101, 0x00000000);
    // Every 128-bit lane of the broadcast holds all 16 bytes (the shuffle
    // works per lane), so lane L picks its own bytes 4L..4L+3.
    const __m512i v = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(x), spread);
    const __m512i r0 = _mm512_and_si512(v, _mm512_set1_epi32(0x00000003));
    const __m512i r1 = _mm512_and_si512(_mm512_srli_epi16(v, 2), _mm512_set1_epi32(0x00000300));
    const __m512i r2 = _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi32(0x00030000));
    const __m512i r3 = _mm512_and_si512(_mm512_srli_epi16(v, 6), _mm512_set1_epi32(0x03000000));
    return _mm512_or_si512(_mm512_or_si512(r0, r1), _mm512_or_si512(r2, r3));
}

}  // namespace

// src[n] -> dst[n].
void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(src + i))));
    if (i < n) {
        const __mmask16 k = mask16(n - i);
        _mm512_mask_storeu_ps(dst + i, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, src + i)));
    }
}

// src[n] -> dst[n].
void bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(src + i)));
        _mm512_storeu_si512(dst + i, _mm512_slli_epi32(v, 16));
    }
    if (i < n) {
        const __mmask16 k = mask16(n - i);
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, src + i));
        _mm512_mask_storeu_epi32(dst + i, k, _mm512_slli_epi32(v, 16));
    }
}

// x[n_groups * G] -> mn[n_groups], mx[n_groups].
size_t minmax(const float* x, size_t n_groups, size_t G, float* mn, float* mx) {
    if (G == 0) return SIZE_MAX;
    for (size_t g = 0; g < n_groups; ++g) {
        const float* p = x + g * G;
        __m512i vmn0 = _mm512_set1_epi32(INT32_MAX), vmx0 = _mm512_set1_epi32(INT32_MIN);
        __m512i vmn1 = vmn0, vmx1 = vmx0;
        size_t i = 0;
        for (; i + 32 <= G; i += 32) {
            const __m512i a = sortable(_mm512_loadu_si512(p + i));
            const __m512i b = sortable(_mm512_loadu_si512(p + i + 16));
            vmn0 = _mm512_min_epi32(vmn0, a);
            vmx0 = _mm512_max_epi32(vmx0, a);
            vmn1 = _mm512_min_epi32(vmn1, b);
            vmx1 = _mm512_max_epi32(vmx1, b);
        }
        for (; i + 16 <= G; i += 16) {
            const __m512i a = sortable(_mm512_loadu_si512(p + i));
            vmn0 = _mm512_min_epi32(vmn0, a);
            vmx0 = _mm512_max_epi32(vmx0, a);
        }
        if (i < G) {
            const __mmask16 k = mask16(G - i);
            const __m512i a = sortable(_mm512_maskz_loadu_epi32(k, p + i));
            vmn1 = _mm512_mask_min_epi32(vmn1, k, vmn1, a);
            vmx1 = _mm512_mask_max_epi32(vmx1, k, vmx1, a);
        }
        const int32_t smn = _mm512_reduce_min_epi32(_mm512_min_epi32(vmn0, vmn1));
        const int32_t smx = _mm512_reduce_max_epi32(_mm512_max_epi32(vmx0, vmx1));
        if (smx >= kSortPosInf || smn <= kSortNegInf)
            return g * G + first_non_finite(p, (n_groups - g) * G);
        mn[g] = float_of(uint32_t(sortable(smn)));
        mx[g] = float_of(uint32_t(sortable(smx)));
    }
    return SIZE_MAX;
}

// x[n_groups * G] -> amax[n_groups]. |x| bits order like the floats, so the
// max runs on integers; NaN/inf give bits >= 0x7f800000.
size_t absmax(const float* x, size_t n_groups, size_t G, float* amax) {
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    for (size_t g = 0; g < n_groups; ++g) {
        const float* p = x + g * G;
        __m512i m0 = _mm512_setzero_si512(), m1 = m0;
        size_t i = 0;
        for (; i + 32 <= G; i += 32) {
            m0 = _mm512_max_epi32(m0, _mm512_and_si512(_mm512_loadu_si512(p + i), abs_mask));
            m1 = _mm512_max_epi32(m1, _mm512_and_si512(_mm512_loadu_si512(p + i + 16), abs_mask));
        }
        for (; i + 16 <= G; i += 16)
            m0 = _mm512_max_epi32(m0, _mm512_and_si512(_mm512_loadu_si512(p + i), abs_mask));
        if (i < G)  // zeros in the masked-off lanes do not change a max of |x|
            m1 = _mm512_max_epi32(m1, _mm512_and_si512(_mm512_maskz_loadu_epi32(mask16(G - i), p + i), abs_mask));
        const int32_t m = _mm512_reduce_max_epi32(_mm512_max_epi32(m0, m1));
        if (m >= 0x7f800000) return g * G + first_non_finite(p, (n_groups - g) * G);
        amax[g] = float_of(uint32_t(m));
    }
    return SIZE_MAX;
}

// x[n_groups * G] -> q[n_groups * G].
void quantize(const float* x, size_t n_groups, size_t G, const float* scale, const int32_t* zp,
              int32_t qmin, int32_t qmax, int8_t* q) {
    const __m512 lo = _mm512_set1_ps(float(qmin)), hi = _mm512_set1_ps(float(qmax));
    for (size_t g = 0; g < n_groups; ++g) {
        const __m512 vs = _mm512_set1_ps(scale[g]);
        const __m512 vz = _mm512_set1_ps(zp ? float(zp[g]) : 0.0f);
        const float* p = x + g * G;
        int8_t* o = q + g * G;
        float rl, rh;
        if (fast_params(scale[g], zp ? zp[g] : 0, &rl, &rh)) {
            const __m512 vrl = _mm512_set1_ps(rl), vrh = _mm512_set1_ps(rh);
            const __m512 vc = _mm512_set1_ps(kMagic + (zp ? float(zp[g]) : 0.0f));
            const __m512 mlo = _mm512_set1_ps(kMagic + float(qmin)), mhi = _mm512_set1_ps(kMagic + float(qmax));
            size_t i = 0;
            for (; i + 64 <= G; i += 64) {
                store16(o + i, rne16(_mm512_loadu_ps(p + i), vrl, vrh, vc, vs), mlo, mhi);
                store16(o + i + 16, rne16(_mm512_loadu_ps(p + i + 16), vrl, vrh, vc, vs), mlo, mhi);
                store16(o + i + 32, rne16(_mm512_loadu_ps(p + i + 32), vrl, vrh, vc, vs), mlo, mhi);
                store16(o + i + 48, rne16(_mm512_loadu_ps(p + i + 48), vrl, vrh, vc, vs), mlo, mhi);
            }
            for (; i + 16 <= G; i += 16) store16(o + i, rne16(_mm512_loadu_ps(p + i), vrl, vrh, vc, vs), mlo, mhi);
            if (i < G) {
                const __mmask16 k = mask16(G - i);
                const __m512 t = rne16(_mm512_maskz_loadu_ps(k, p + i), vrl, vrh, vc, vs);
                const __m512 v = _mm512_min_ps(_mm512_max_ps(t, mlo), mhi);
                _mm512_mask_cvtepi32_storeu_epi8(o + i, k, _mm512_castps_si512(v));
            }
            continue;
        }
        size_t i = 0;
        for (; i + 32 <= G; i += 32) {
            const __m512i a = quant16(_mm512_loadu_ps(p + i), vs, vz, lo, hi);
            const __m512i b = quant16(_mm512_loadu_ps(p + i + 16), vs, vz, lo, hi);
            _mm_storeu_si128((__m128i*)(o + i), _mm512_cvtsepi32_epi8(a));
            _mm_storeu_si128((__m128i*)(o + i + 16), _mm512_cvtsepi32_epi8(b));
        }
        for (; i + 16 <= G; i += 16)
            _mm_storeu_si128((__m128i*)(o + i), _mm512_cvtsepi32_epi8(quant16(_mm512_loadu_ps(p + i), vs, vz, lo, hi)));
        if (i < G) {
            // Masked-off lanes compute 0 / s: harmless, never stored.
            const __mmask16 k = mask16(G - i);
            const __m512i a = quant16(_mm512_maskz_loadu_ps(k, p + i), vs, vz, lo, hi);
            _mm512_mask_cvtsepi32_storeu_epi8(o + i, k, a);
        }
    }
}

// q[n_groups * G] -> y[n_groups * G].
void dequantize_i8(const int8_t* q, size_t n_groups, size_t G, const float* scale, const int32_t* zp,
                   float* y) {
    for (size_t g = 0; g < n_groups; ++g) {
        const __m512 vs = _mm512_set1_ps(scale[g]);
        const __m512i vz = _mm512_set1_epi32(zp ? zp[g] : 0);
        const int8_t* b = q + g * G;
        float* o = y + g * G;
        size_t i = 0;
        for (; i + 16 <= G; i += 16) {
            const __m512i v = _mm512_sub_epi32(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(b + i))), vz);
            _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_cvtepi32_ps(v), vs));
        }
        if (i < G) {
            const __mmask16 k = mask16(G - i);
            const __m512i v = _mm512_sub_epi32(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, b + i)), vz);
            _mm512_mask_storeu_ps(o + i, k, _mm512_mul_ps(_mm512_cvtepi32_ps(v), vs));
        }
    }
}

// packed[n_groups * G / 2] -> y[n_groups * G]; G even.
void dequantize_i4(const uint8_t* packed, size_t n_groups, size_t G, const float* scale,
                   const int32_t* zp, bool is_signed, float* y) {
    for (size_t g = 0; g < n_groups; ++g) {
        const __m512 vs = _mm512_set1_ps(scale[g]);
        const __m512i vz = _mm512_set1_epi32(zp ? zp[g] : 0);
        const uint8_t* b = packed + g * (G / 2);
        float* o = y + g * G;
        size_t i = 0;
        for (; i + 32 <= G; i += 32) {
            const __m128i x = _mm_loadu_si128((const __m128i*)(b + i / 2));
            const __m512i a = _mm512_sub_epi32(nibbles16(_mm_unpacklo_epi8(x, x), is_signed), vz);
            const __m512i c = _mm512_sub_epi32(nibbles16(_mm_unpackhi_epi8(x, x), is_signed), vz);
            _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_cvtepi32_ps(a), vs));
            _mm512_storeu_ps(o + i + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(c), vs));
        }
        for (; i < G; i += 16) {  // G even: r values come from r / 2 bytes
            const size_t r = G - i < 16 ? G - i : 16;
            const __m128i x = _mm_maskz_loadu_epi8(mask16(r / 2), b + i / 2);
            const __m512i a = _mm512_sub_epi32(nibbles16(_mm_unpacklo_epi8(x, x), is_signed), vz);
            _mm512_mask_storeu_ps(o + i, mask16(r), _mm512_mul_ps(_mm512_cvtepi32_ps(a), vs));
        }
    }
}

// q[n] -> packed[ceil(n/2)].
void pack_i4(const int8_t* q, size_t n, uint8_t* packed) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        _mm256_storeu_si256((__m256i*)(packed + i / 2), pack_nibbles(_mm512_loadu_si512(q + i)));
    if (i < n) {  // zeros in the masked-off lanes leave an odd n's last high nibble 0
        const size_t r = n - i;
        const __m256i v = pack_nibbles(_mm512_maskz_loadu_epi8(mask64(r), q + i));
        _mm256_mask_storeu_epi8(packed + i / 2, mask32((r + 1) / 2), v);
    }
}

// packed[ceil(n/2)] -> q[n].
void unpack_i4(const uint8_t* packed, size_t n, bool is_signed, int8_t* q) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        _mm512_storeu_si512(q + i, unpack_nibbles(_mm256_loadu_si256((const __m256i*)(packed + i / 2)), is_signed));
    if (i < n) {
        const size_t r = n - i;
        const __m256i x = _mm256_maskz_loadu_epi8(mask32((r + 1) / 2), packed + i / 2);
        _mm512_mask_storeu_epi8(q + i, mask64(r), unpack_nibbles(x, is_signed));
    }
}

// q[n] -> packed[ceil(n/4)].
void pack_i2(const int8_t* q, size_t n, uint8_t* packed) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) _mm_storeu_si128((__m128i*)(packed + i / 4), pack_crumbs(_mm512_loadu_si512(q + i)));
    if (i < n) {
        const size_t r = n - i;
        const __m128i v = pack_crumbs(_mm512_maskz_loadu_epi8(mask64(r), q + i));
        _mm_mask_storeu_epi8(packed + i / 4, mask16((r + 3) / 4), v);
    }
}

// packed[ceil(n/4)] -> q[n].
void unpack_i2(const uint8_t* packed, size_t n, int8_t* q) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) _mm512_storeu_si512(q + i, unpack_crumbs(_mm_loadu_si128((const __m128i*)(packed + i / 4))));
    if (i < n) {
        const size_t r = n - i;
        const __m128i x = _mm_maskz_loadu_epi8(mask16((r + 3) / 4), packed + i / 4);
        _mm512_mask_storeu_epi8(q + i, mask64(r), unpack_crumbs(x));
    }
}

}  // namespace avx512
}  // namespace qk

#endif  // x86-64
