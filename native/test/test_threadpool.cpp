// Tests of the thread pool's failure path: a task that throws (a kernel's
// scratch allocation failing, ...) on any thread reaches the caller of
// parallel_for as that exception, instead of terminating the process, and the
// pool keeps working afterwards. ISA independent (runs once per table).
#include <atomic>
#include <stdexcept>

#include "../threadpool.h"
#include "harness.h"

QKT_TEST(threadpool_task_exception) {
    const size_t before = qk::threads();
    for (size_t n : {size_t(1), size_t(2), size_t(4)}) {
        qk::set_threads(n);
        for (size_t bad : {size_t(0), size_t(7), size_t(63)}) {
            bool caught = false;
            try {
                qk::parallel_for(64, [&](size_t t, size_t) {
                    if (t == bad) throw std::runtime_error("task failed");
                });
            } catch (const std::runtime_error&) {
                caught = true;
            }
            QKT_CHECK(caught, "threads=%zu: the exception of task %zu did not reach the caller", n, bad);
            std::atomic<size_t> ran{0};
            qk::parallel_for(64, [&](size_t, size_t) { ran.fetch_add(1); });
            QKT_CHECK(ran.load() == 64, "threads=%zu: %zu of 64 tasks ran after a failure", n, ran.load());
        }
    }
    qk::set_threads(before);
}
