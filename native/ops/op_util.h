// Small helpers shared by the op drivers (no ISA code).
#pragma once

#include <atomic>
#include <cstddef>

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
// the pool's threads idle or unevenly loaded (fewer than per_thread blocks per
// thread): M is cut into blocks of a multiple of 16 rows so there are about
// per_thread tasks per thread (3 unless a caller's tasks repeat work per
// part, see gemm_ops.cpp). M itself (no split) with one thread, or when there
// are blocks enough. Each output is still computed whole by one task, so
// results do not change.
inline size_t m_split_rows(size_t M, size_t n_tasks, size_t threads, size_t per_thread = 3) {
    const size_t want = per_thread * threads;
    if (threads <= 1 || n_tasks >= want || M < 32) return M;
    const size_t parts = (want + n_tasks - 1) / n_tasks;
    const size_t rows = ((M + parts - 1) / parts + 15) / 16 * 16;
    return rows < M ? rows : M;
}

}  // namespace ops
}  // namespace qk
