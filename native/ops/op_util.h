// Small helpers shared by the op drivers (no ISA code).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <vector>

#include "../kernels/kernels.h"

namespace qk {
namespace ops {

inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

// Keep the smallest flat index of a NaN/Inf seen by any task, so a parallel
// scan reports the same (first) index as a serial one.
inline void record_bad(std::atomic<size_t>& bad, size_t idx) {
    size_t cur = bad.load();
    while (idx < cur && !bad.compare_exchange_weak(cur, idx)) {}
}

// Rows of X per task when a product over n_tasks blocks of W would leave
// the pool's threads idle or unevenly loaded (fewer than 3 blocks per
// thread): M is cut into blocks of a multiple of 16 rows so there are about
// 3 tasks per thread. M itself (no split) with one thread, or when there
// are blocks enough. Each output is still computed whole by one task, so
// results do not change.
inline size_t m_split_rows(size_t M, size_t n_tasks, size_t threads) {
    const size_t want = 3 * threads;
    if (threads <= 1 || n_tasks >= want || M < 32) return M;
    const size_t parts = (want + n_tasks - 1) / n_tasks;
    const size_t rows = ((M + parts - 1) / parts + 15) / 16 * 16;
    return rows < M ? rows : M;
}

// Rows [n0, n0 + nr) of a weight view with f16 scales (w.scales16), as the
// kernels of one task see them: rebased to row 0, their scales widened to
// f32 into `widened` ([nr, gs] floats, gs the row stride of w's scales and
// zero points). A view over K columns reads ceil(K / w.group) groups per row (all
// gs of them, or fewer for the parts of a weight with a shorter last
// group): only those are read and widened, one run per row then.
inline WeightView widen_rows(const Kernels& k, const WeightView& w, size_t K, size_t n0, size_t nr, size_t gs,
                             std::vector<float>& widened) {
    const size_t used = std::min(gs, (K + w.group - 1) / w.group);
    widened.resize(nr * gs);
    if (used == gs) {
        k.f16_to_f32(w.scales16 + n0 * gs, widened.data(), nr * gs);
    } else {
        for (size_t j = 0; j < nr; ++j) k.f16_to_f32(w.scales16 + (n0 + j) * gs, widened.data() + j * gs, used);
    }
    return rebase_rows(w, n0, gs, widened.data());
}

}  // namespace ops
}  // namespace qk
