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

}  // namespace ops
}  // namespace qk
