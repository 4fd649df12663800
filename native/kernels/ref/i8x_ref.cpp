// Scalar reference of the exact-digit int8 GEMM (see DigitX and
// Kernels::gemm_i8x in kernels.h). Written for clarity: one value, one
// digit, one sum at a time.
#include "i8x_ref.h"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace qk {
namespace ref {

namespace {

// Byte of DigitX holding digit i (0-3) of row m at k.
size_t digit_at(const DigitX& dx, size_t m, size_t k, int i) {
    const size_t tile = m / 4, s = k / 64, q = (k % 64) / 4, t = k % 4;
    const size_t c = 4 * (m % 4) + size_t(i);
    return (tile * dx.steps() + s) * 1024 + 64 * q + 4 * c + t;
}

}  // namespace

void i8x_split(const float* x, size_t ldx, size_t M, size_t K, const DigitX& dx) {
    std::memset(dx.data, 0, dx.bytes());
    int8_t* d = static_cast<int8_t*>(dx.data);
    for (size_t m = 0; m < M; ++m) {
        const float* row = x + m * ldx;
        float amax = 0;
        bool bad = false;
        for (size_t k = 0; k < K; ++k) {
            if (!std::isfinite(row[k])) bad = true;
            else amax = std::fmax(amax, std::fabs(row[k]));
        }
        dx.bad[m] = bad;
        dx.exps[m] = 0;
        if (bad || amax == 0) continue;
        const int e = std::ilogb(amax) - 5;
        dx.exps[m] = e;
        for (size_t k = 0; k < K; ++k) {
            float u = std::ldexp(row[k], -e);  // exact unless it underflows (far below the last digit)
            for (int i = 0; i < 4; ++i) {
                const float r = std::nearbyint(u);  // half to even (the default rounding mode)
                d[digit_at(dx, m, k, i)] = int8_t(r);
                u = (u - r) * 128.0f;
            }
        }
    }
}

void gemm_i8x(const DigitX& dx, const WeightView& w, size_t n0, size_t n1, const float* bias, float* y,
              size_t ldy) {
    const int8_t* d = static_cast<const int8_t*>(dx.data);
    for (size_t m = 0; m < dx.M; ++m) {
        if (dx.bad[m]) continue;
        for (size_t n = n0; n < n1; ++n) {
            const int8_t* q = static_cast<const int8_t*>(w.data) + n * w.row_bytes;
            double sum = 0;  // C_1 + 2^-7 C_2 + 2^-14 C_3 + 2^-21 C_4, exact
            for (int i = 0; i < 4; ++i) {
                int64_t c = 0;
                for (size_t k = 0; k < dx.K; ++k) c += int64_t(q[k]) * d[digit_at(dx, m, k, i)];
                sum += double(c) * std::ldexp(1.0, -7 * i);
            }
            const double s = std::ldexp(double(scale_at(w, n)), dx.exps[m]);
            float v = float(sum * s);
            if (bias) v += bias[n];
            y[m * ldy + n] = v;
        }
    }
}

}  // namespace ref
}  // namespace qk
