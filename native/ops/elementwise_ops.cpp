// Element-wise ops (see elementwise_ops.h).
#include "elementwise_ops.h"

#include "../dispatch.h"
#include "../threadpool.h"

namespace qk {

namespace {

// Values per pool task: ~16K (tens of microseconds of work, well above the
// pool's ~1 us hand-off); a decode row stays on the caller.
constexpr size_t kChunk = size_t(1) << 14;

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
    const Kernels& k = kernels();
    const size_t per = a.D >= kChunk ? 1 : kChunk / a.D;  // rows per task
    parallel_for((a.rows + per - 1) / per, [&k, &a, per](size_t t, size_t) {
        const size_t r1 = (t + 1) * per < a.rows ? (t + 1) * per : a.rows;
        k.norm_rows(a, t * per, r1);
    });
}

void rope(const RopeArgs& a) {
    const Kernels& k = kernels();
    const size_t per_row = a.n_heads * a.half;  // pairs per position
    const size_t rows = per_row >= kChunk ? 1 : kChunk / (per_row ? per_row : 1);
    parallel_for((a.T + rows - 1) / rows, [&k, &a, rows](size_t task, size_t) {
        const size_t t1 = (task + 1) * rows < a.T ? (task + 1) * rows : a.T;
        k.rope_rows(a, task * rows, t1);
    });
}

void add_inplace(float* x, const float* y, size_t n) {
    parallel_for((n + kChunk - 1) / kChunk, [x, y, n](size_t t, size_t) {
        const size_t e = (t + 1) * kChunk < n ? (t + 1) * kChunk : n;
        for (size_t i = t * kChunk; i < e; ++i) x[i] = x[i] + y[i];
    });
}

}  // namespace qk
