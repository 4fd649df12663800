// Scalar reference GEMM kernels: the specification the SIMD versions are
// tested against. Y[M, N] = X[M, K] · W[N, K]^T (+ bias[N]).
//
// Everything here is a plain loop: one weight element is decoded at a time
// (w_elem), dot products accumulate in float in increasing k order, and the
// bias is added last. dequant_panel's element formulas ((q - zp) * scale as
// one IEEE multiplication, exact f16/bf16 widening) are the bit-exact
// contract every ISA's dequant_panel must reproduce.
//
// Compiled without ISA flags.
#include <cstring>

#include "../isa.h"

namespace qk {
namespace ref {

namespace {

float bits_to_f32(uint32_t b) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
}

// IEEE binary16 -> binary32, exact for every input. NaNs keep their payload
// and come out quiet, which is what F16C (vcvtph2ps) and AArch64 fcvt do.
float half_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return bits_to_f32(sign);
        // Subnormal half: man * 2^-24, exact in float.
        const float mag = static_cast<float>(man) * 5.9604644775390625e-8f;
        uint32_t b;
        std::memcpy(&b, &mag, sizeof b);
        return bits_to_f32(sign | b);
    }
    if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u));
    return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

// Number of values K in one row, recovered from the row size (i4: G is even
// and divides K, so K is even and exactly 2 * row_bytes).
size_t row_len(const WeightView& w) {
    switch (w.fmt) {
        case WFormat::f32: return w.row_bytes / 4;
        case WFormat::f16:
        case WFormat::bf16: return w.row_bytes / 2;
        case WFormat::i8: return w.row_bytes;
        case WFormat::i4: return w.row_bytes * 2;
    }
    return 0;
}

// W[n, k] as f32. groups_per_row = K / G (only used for i8/i4).
inline float w_elem(const WeightView& w, size_t groups_per_row, size_t n, size_t k) {
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + n * w.row_bytes;
    switch (w.fmt) {
        case WFormat::f32: {
            float v;
            std::memcpy(&v, row + 4 * k, sizeof v);
            return v;
        }
        case WFormat::f16: {
            uint16_t h;
            std::memcpy(&h, row + 2 * k, sizeof h);
            return half_to_f32(h);
        }
        case WFormat::bf16: {
            uint16_t h;
            std::memcpy(&h, row + 2 * k, sizeof h);
            return bits_to_f32(uint32_t(h) << 16);
        }
        case WFormat::i8: {
            const size_t g = n * groups_per_row + k / w.group;
            const int32_t q = static_cast<int8_t>(row[k]);
            const int32_t zp = w.zps ? static_cast<const int8_t*>(w.zps)[g] : 0;
            return static_cast<float>(q - zp) * scale_at(w, g);
        }
        case WFormat::i4: {
            const size_t g = n * groups_per_row + k / w.group;
            const uint8_t byte = row[k / 2];
            int32_t q = (k & 1) ? (byte >> 4) : (byte & 0x0f);
            int32_t zp = 0;
            if (w.zps) {
                zp = static_cast<const uint8_t*>(w.zps)[g];
            } else {
                q = (q ^ 8) - 8;  // two's-complement nibble -> -8..7
            }
            return static_cast<float>(q - zp) * scale_at(w, g);
        }
    }
    return 0.0f;
}

}  // namespace

void gemv(const GemmArgs& a, size_t m0, size_t mc, size_t n0, size_t n1) {
    const size_t K = a.K;
    const size_t gpr = (a.w.group != 0) ? scale_stride(a.w, K) : 0;
    for (size_t m = m0; m < m0 + mc; ++m) {
        const float* x = a.x + m * a.ldx;
        float* y = a.y + m * a.ldy;
        for (size_t n = n0; n < n1; ++n) {
            float acc = 0.0f;
            for (size_t k = 0; k < K; ++k) acc += x[k] * w_elem(a.w, gpr, n, k);
            if (a.bias) acc += a.bias[n];
            y[n] = acc;
        }
    }
}

void gemm_panel_f32(const float* x, size_t ldx, size_t M, const float* p, size_t ldp, size_t nr,
                    size_t kc, float* y, size_t ldy, bool accumulate) {
    for (size_t m = 0; m < M; ++m) {
        for (size_t j = 0; j < nr; ++j) {
            float acc = 0.0f;
            for (size_t k = 0; k < kc; ++k) acc += x[m * ldx + k] * p[j * ldp + k];
            y[m * ldy + j] = accumulate ? y[m * ldy + j] + acc : acc;
        }
    }
}

void dequant_panel(const WeightView& w, size_t n0, size_t nr, size_t k0, size_t kc, float* p,
                   size_t ldp) {
    const size_t K = row_len(w);
    const size_t gpr = (w.group != 0) ? scale_stride(w, K) : 0;
    for (size_t j = 0; j < nr; ++j)
        for (size_t k = 0; k < kc; ++k) p[j * ldp + k] = w_elem(w, gpr, n0 + j, k0 + k);
}

}  // namespace ref
}  // namespace qk
