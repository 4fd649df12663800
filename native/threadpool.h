// A small fork-join pool shared by every native op.
//
// Work is split into tasks over output rows/columns only (never along K), so
// every output element is computed by one thread with one summation order:
// results do not depend on the thread count.
#pragma once

#include <cstddef>
#include <functional>

namespace qk {

// Run fn(task, worker) for task in [0, n_tasks). `worker` is in
// [0, threads()) and identifies per-thread scratch. The caller takes part.
// Calls from several threads at once are safe: while the pool is busy,
// another caller runs its tasks on its own thread (same results).
void parallel_for(size_t n_tasks, const std::function<void(size_t task, size_t worker)>& fn);

// The same, but on the calling thread alone when the whole call does fewer
// than kParallelMinFlops floating-point operations (`flops`, the caller's
// estimate): below that, handing tasks to the pool costs more than it saves.
// The tasks and their results are the same either way.
constexpr double kParallelMinFlops = 2.0e5;
void parallel_for(size_t n_tasks, double flops, const std::function<void(size_t task, size_t worker)>& fn);

// Pool size (calling thread included). Default: the number of online CPUs.
size_t threads();

// Resize the pool; n >= 1. Waits for running work to finish.
void set_threads(size_t n);

// How many times the pool has backed off to running products on the caller
// alone because its workers straggled (threadpool.cpp, "Straggler
// back-off"); for tests and diagnostics.
size_t backoff_stretches();

// How long (microseconds) an idle worker, and a caller waiting for workers,
// spin before sleeping; 0: sleep at once. Default 300.
void set_spin_us(long us);
long spin_us();

}  // namespace qk
