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

}  // namespace qk
