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

// Resize a scratch vector only upward. Scratch that alternates between two
// shapes' sizes (K = 768, then 2048, then 768 ...) would otherwise zero-fill
// its regrown part on every call: a 164 KB memset for each K = 2048 product
// of a 128-token prefill. Callers use the first n elements, never size().
template <class V>
inline void grow(V& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

// Rows per task for a pass over M rows of K values (activation
// quantization): tasks of about `target` values, their number rounded up to
// a multiple of the threads, rows spread evenly. The old rule, 2^16 / K + 1
// rows, cut 128 rows of 768 into 86 + 42: one thread did two thirds. Tasks
// of 2^14 values (tens of microseconds) also let the pool rebalance when one
// vCPU runs slower than the other, as this project's VMs sometimes do: the
// 84 W4A8 activation quantizations of a 128-token prefill on two threads
// (AMD EPYC Zen 5, one vCPU 1.75x slower at the time) 3.45 -> 2.85 ms with
// even tasks of 2^16, 2.52 ms with 2^14.
inline size_t even_rows_per_task(size_t M, size_t K, size_t threads, size_t target = size_t(1) << 14) {
    size_t tasks = (M * (K ? K : 1) + target - 1) / target;
    if (tasks > 1 && threads > 1) tasks = (tasks + threads - 1) / threads * threads;
    tasks = tasks < 1 ? 1 : tasks > M ? M : tasks;
    return (M + tasks - 1) / tasks;
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
