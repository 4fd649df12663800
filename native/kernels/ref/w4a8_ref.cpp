// Scalar reference of the W4A8 GEMM (Kernels::gemm_w4a8). This file IS the
// specification (see W4A8Args in kernels.h): exact int32 dot products over
// each segment (weight group x activation block), each rescaled by
// s[n, g] * sx[m, b] and summed in float in k order. The SIMD kernels use
// it for the group sizes they do not handle. Compiled without ISA flags.
#include "../isa.h"

namespace qk {
namespace ref {

namespace {

// Signed weight code q[n, k]: two's-complement nibble, or u - z.
inline int32_t code(const uint8_t* row, size_t k, const uint8_t* zrow, size_t G) {
    const uint8_t byte = row[k / 2];
    const int32_t u = (k % 2) ? (byte >> 4) : (byte & 0x0F);
    if (zrow) return u - int32_t(zrow[k / G]);
    return u >= 8 ? u - 16 : u;
}

// xq[m, k] from the chunked activation layout.
inline int32_t act(const int8_t* xrow, size_t k) {
    const size_t c = k / 128, r = k % 128;
    return xrow[128 * c + (r % 2) * 64 + r / 2];
}

}  // namespace

void gemm_w4a8(const W4A8Args& a, size_t n0, size_t n1) {
    const size_t G = a.w.group;
    for (size_t m = 0; m < a.M; ++m) {
        const int8_t* xrow = a.xc + m * a.ldx;
        const float* sx = a.sx + m * a.ldsx;
        for (size_t n = n0; n < n1; ++n) {
            const uint8_t* wrow = static_cast<const uint8_t*>(a.w.data) + n * a.w.row_bytes;
            const size_t s0 = n * scale_stride(a.w, a.K);
            const uint8_t* zrow = a.w.zps ? static_cast<const uint8_t*>(a.w.zps) + n * scale_stride(a.w, a.K) : nullptr;
            float acc = 0.0f;
            int32_t d = 0;
            for (size_t k = 0; k < a.K; ++k) {
                d += code(wrow, k, zrow, G) * act(xrow, k);
                // A segment ends where a group or a block ends.
                if ((k + 1) % G == 0 || (k + 1) % 32 == 0 || k + 1 == a.K) {
                    acc = acc + (scale_at(a.w, s0 + k / G) * sx[k / 32]) * float(d);
                    d = 0;
                }
            }
            if (a.bias) acc = acc + a.bias[n];
            a.y[m * a.ldy + n] = acc;
        }
    }
}

void w4a8_chunk_x(const int8_t* q, size_t chunks, int8_t* xc, int32_t* bsum) {
    for (size_t c = 0; c < chunks; ++c) {
        const int8_t* src = q + 128 * c;
        int8_t* dst = xc + 128 * c;
        for (size_t j = 0; j < 64; ++j) {
            dst[j] = src[2 * j];
            dst[64 + j] = src[2 * j + 1];
        }
        for (size_t b = 0; b < 4; ++b) {
            int32_t d = 0;
            for (size_t i = 0; i < 32; ++i) d += src[32 * b + i];
            bsum[4 * c + b] = d;
        }
    }
}

}  // namespace ref
}  // namespace qk
