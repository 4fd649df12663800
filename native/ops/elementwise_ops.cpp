// Element-wise ops (see elementwise_ops.h).
#include "elementwise_ops.h"

#include <cmath>

#include "../threadpool.h"

namespace qk {

void silu_mul(float* g, const float* u, size_t n) {
    // Chunks of 16K values: ~50 us of work each, well above the pool's
    // ~1 us hand-off; small calls (decode: one row) stay on the caller.
    const size_t chunk = size_t(1) << 14;
    auto body = [g, u, n, chunk](size_t t, size_t) {
        const size_t e = (t + 1) * chunk < n ? (t + 1) * chunk : n;
        for (size_t i = t * chunk; i < e; ++i) {
            const double v = g[i];
            g[i] = float(v / (1.0 + std::exp(-v))) * u[i];
        }
    };
    parallel_for((n + chunk - 1) / chunk, body);  // one chunk runs on the caller
}

void rms_norm(const float* x, const float* w, float* out, size_t rows, size_t D, double eps) {
    if (rows == 0 || D == 0) return;
    // Row chunks of ~16K values, as silu_mul: one decode row stays on the caller.
    const size_t per = D >= (size_t(1) << 14) ? 1 : (size_t(1) << 14) / D;
    auto body = [=](size_t t, size_t) {
        const size_t r1 = (t + 1) * per < rows ? (t + 1) * per : rows;
        for (size_t r = t * per; r < r1; ++r) {
            const float* xr = x + r * D;
            float* o = out + r * D;
            double ss = 0.0;
            for (size_t i = 0; i < D; ++i) ss += double(xr[i]) * double(xr[i]);
            const double inv = 1.0 / std::sqrt(ss / double(D) + eps);
            for (size_t i = 0; i < D; ++i) o[i] = float(double(xr[i]) * inv * double(w[i]));
        }
    };
    parallel_for((rows + per - 1) / per, body);
}

}  // namespace qk
