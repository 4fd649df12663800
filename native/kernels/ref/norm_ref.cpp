// Scalar reference (the spec) of the row norms and rotary embeddings:
// NormArgs and RopeArgs in kernels.h, one value at a time.
#include <cmath>
#include <cstdint>

#include "../isa.h"

namespace qk {
namespace ref {

namespace {

// The fixed-order double sum of f(i) for i < n (NormArgs).
template <class F>
inline double sum8(size_t n, F f) {
    double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; ++k) p[k] += f(i + k);
    for (size_t k = 0; i + k < n; ++k) p[k] += f(i + k);
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

void norm_row(const NormArgs& a, size_t r) {
    const size_t D = a.D;
    float* x = a.x + r * D;
    if (a.residual) {
        const float* res = a.residual + r * D;
        for (size_t i = 0; i < D; ++i) x[i] = x[i] + res[i];
    }
    float* o = a.out + r * D;
    if (a.kind == NormKind::rms) {
        const double ss = sum8(D, [x](size_t i) { return double(x[i]) * double(x[i]); });
        const double inv = 1.0 / std::sqrt(ss / double(D) + a.eps);
        for (size_t i = 0; i < D; ++i) o[i] = float(double(x[i]) * inv * double(a.w[i]));
        return;
    }
    const double mean = sum8(D, [x](size_t i) { return double(x[i]); }) / double(D);
    const double v = sum8(D, [x, mean](size_t i) {
        const double d = double(x[i]) - mean;
        return d * d;
    });
    const double inv = 1.0 / std::sqrt(v / double(D) + a.eps);
    for (size_t i = 0; i < D; ++i) {
        double y = (double(x[i]) - mean) * inv;
        if (a.w) y = y * double(a.w[i]);
        if (a.b) y = y + double(a.b[i]);
        o[i] = float(y);
    }
}

}  // namespace

void norm_rows(const NormArgs& a, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) norm_row(a, r);
}

void rope_rows(const RopeArgs& a, size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
        const double* c = a.cos + (a.pos0 + t) * a.half;
        const double* s = a.sin + (a.pos0 + t) * a.half;
        for (size_t h = 0; h < a.n_heads; ++h) {
            float* v = a.x + (t * a.n_heads + h) * a.stride;
            for (size_t i = 0; i < a.half; ++i) {
                const size_t ia = a.interleaved ? 2 * i : i, ib = a.interleaved ? 2 * i + 1 : i + a.half;
                const double x0 = v[ia], x1 = v[ib];
                v[ia] = float(x0 * c[i] - x1 * s[i]);
                v[ib] = float(x0 * s[i] + x1 * c[i]);
            }
        }
    }
}

}  // namespace ref
}  // namespace qk
