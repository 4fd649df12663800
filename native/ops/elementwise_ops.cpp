// Element-wise ops (see elementwise_ops.h).
#include "elementwise_ops.h"

#include <cmath>

#include "../dispatch.h"
#include "../threadpool.h"

namespace qk {

namespace {

// Values per pool task: ~16K (tens of microseconds of work, well above the
// pool's ~1 us hand-off); a decode row stays on the caller.
constexpr size_t kChunk = size_t(1) << 14;

// The fixed-order double sum of f(i) for i < n (elementwise_ops.h).
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

void silu_mul(float* g, const float* u, size_t n) {
    const Kernels& k = kernels();
    parallel_for((n + kChunk - 1) / kChunk, [&k, g, u, n](size_t t, size_t) {
        const size_t e = (t + 1) * kChunk < n ? (t + 1) * kChunk : n;
        k.silu_mul(g + t * kChunk, u + t * kChunk, e - t * kChunk);
    });
}

void gelu_tanh(float* x, size_t n) {
    const Kernels& k = kernels();
    parallel_for((n + kChunk - 1) / kChunk, [&k, x, n](size_t t, size_t) {
        const size_t e = (t + 1) * kChunk < n ? (t + 1) * kChunk : n;
        k.gelu_tanh(x + t * kChunk, e - t * kChunk);
    });
}

void norm_rows(const NormArgs& a) {
    if (a.rows == 0 || a.D == 0) return;
    const size_t per = a.D >= kChunk ? 1 : kChunk / a.D;  // rows per task
    parallel_for((a.rows + per - 1) / per, [&a, per](size_t t, size_t) {
        const size_t r1 = (t + 1) * per < a.rows ? (t + 1) * per : a.rows;
        for (size_t r = t * per; r < r1; ++r) norm_row(a, r);
    });
}

void rope(const RopeArgs& a) {
    const size_t per_row = a.n_heads * a.half;  // pairs per position
    const size_t rows = per_row >= kChunk ? 1 : kChunk / (per_row ? per_row : 1);
    parallel_for((a.T + rows - 1) / rows, [&a, rows](size_t task, size_t) {
        const size_t t1 = (task + 1) * rows < a.T ? (task + 1) * rows : a.T;
        for (size_t t = task * rows; t < t1; ++t) {
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
    });
}

void add_inplace(float* x, const float* y, size_t n) {
    parallel_for((n + kChunk - 1) / kChunk, [x, y, n](size_t t, size_t) {
        const size_t e = (t + 1) * kChunk < n ? (t + 1) * kChunk : n;
        for (size_t i = t * kChunk; i < e; ++i) x[i] = x[i] + y[i];
    });
}

}  // namespace qk
