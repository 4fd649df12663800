// Tests of the thread pool's failure path: a task that throws (a kernel's
// scratch allocation failing, ...) on any thread reaches the caller of
// parallel_for as that exception, instead of terminating the process, and the
// pool keeps working afterwards. ISA independent (runs once per table).
#include <atomic>
#include <stdexcept>
#include <vector>

#include "../threadpool.h"
#include "../ops/op_util.h"
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

// Every task runs exactly once, for task counts below, at and above the
// thread count, not divisible by it, and when a worker joins late (the
// first tasks slow): the per-thread segments and the helping between them
// (threadpool.cpp, Job) neither skip nor repeat a task.
QKT_TEST(threadpool_each_task_once) {
    const size_t before = qk::threads();
    for (size_t n : {size_t(1), size_t(2), size_t(3), size_t(5)}) {
        qk::set_threads(n);
        for (size_t tasks : {size_t(1), size_t(2), size_t(3), size_t(4), size_t(7), size_t(64), size_t(1001)}) {
            for (int slow = 0; slow < 2; ++slow) {
                std::vector<std::atomic<int>> hits(tasks);
                std::atomic<size_t> max_worker{0};
                qk::parallel_for(tasks, [&](size_t t, size_t worker) {
                    // (no QKT_CHECK on the workers: its counter is the test thread's)
                    size_t m = max_worker.load();
                    while (worker > m && !max_worker.compare_exchange_weak(m, worker)) {
                    }
                    if (slow && t < 2) {
                        volatile double x = 0;
                        for (int i = 0; i < 200000; ++i) x = x + 1;
                    }
                    hits[t].fetch_add(1);
                });
                QKT_CHECK(max_worker.load() < n, "worker %zu of %zu threads", max_worker.load(), n);
                for (size_t t = 0; t < tasks; ++t)
                    QKT_CHECK(hits[t].load() == 1, "threads=%zu tasks=%zu: task %zu ran %d times", n, tasks, t, hits[t].load());
            }
        }
    }
    qk::set_threads(before);
}

// Resizing is all or nothing: with the address space capped so that only a
// few more 8 MiB thread stacks fit, set_threads(1024) throws (system_error),
// the pool keeps its old size and still runs work. In this plain program no
// other thread allocates while the cap is reached, so the outcome does not
// depend on timing (inside Node, V8's own threads may hit the cap too).
// Skipped where an address-space cap cannot work: under ASan/TSan (they
// reserve terabytes of shadow memory) and under qemu user mode (the guest's
// address space is the emulator's).
#if defined(__linux__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#include <sys/resource.h>

#include <cstdio>
#include <system_error>

namespace {
// This process's mapped address space (VmSize), in bytes; 0 if unknown.
size_t vm_size_bytes() {
    FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "VmSize: %zu kB", &kb) == 1) break;
    std::fclose(f);
    return kb * 1024;
}
}  // namespace

QKT_TEST(threadpool_resize_all_or_nothing) {
    const size_t before = qk::threads();
    qk::set_threads(2);
    rlimit old{};
    QKT_CHECK(getrlimit(RLIMIT_AS, &old) == 0, "getrlimit failed");
    const size_t vm = vm_size_bytes();
    QKT_CHECK(vm > 0, "cannot read VmSize");
    rlimit cap = old;
    cap.rlim_cur = vm + (size_t(256) << 20);  // room for ~30 stacks, not 1023
    QKT_CHECK(setrlimit(RLIMIT_AS, &cap) == 0, "setrlimit failed");
    bool threw = false;
    try {
        qk::set_threads(1024);
    } catch (const std::system_error&) {
        threw = true;
    } catch (const std::bad_alloc&) {
        threw = true;
    }
    setrlimit(RLIMIT_AS, &old);
    QKT_CHECK(threw, "set_threads(1024) under a 256 MiB address-space margin did not throw");
    QKT_CHECK(qk::threads() == 2, "after a failed resize the pool has %zu threads, not 2", qk::threads());
    std::atomic<size_t> ran{0};
    qk::parallel_for(64, [&](size_t, size_t) { ran.fetch_add(1); });
    QKT_CHECK(ran.load() == 64, "%zu of 64 tasks ran after a failed resize", ran.load());
    qk::set_threads(before);
}
#endif

// Straggler back-off: a task a worker takes sleeps 2 ms (a worker preempted
// in the middle of its task, as on a host whose cores are all busy); the
// caller's task waits until a worker has taken one (at most 5 ms), so that
// workers do take tasks. Sharing then loses to running alone: the pool must
// start running products on the caller alone (every task on worker 0), and
// every task still runs once.
#include <chrono>
#include <thread>

QKT_TEST(threadpool_straggler_backoff) {
    const size_t before = qk::threads();
    qk::set_threads(1);
    qk::set_threads(2);  // a resize clears any back-off left from an earlier run
    const size_t stretches = qk::backoff_stretches();
    bool backed_off = false;
    for (int run = 0; run < 400 && !backed_off; ++run) {
        std::atomic<size_t> ran{0};
        std::atomic<bool> taken{false};
        qk::parallel_for(2, [&](size_t, size_t worker) {
            if (worker != 0) {
                taken.store(true);
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            } else {
                const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
                while (!taken.load() && std::chrono::steady_clock::now() < until) {
                }
            }
            ran.fetch_add(1);
        });
        QKT_CHECK(ran.load() == 2, "run %d: %zu of 2 tasks ran", run, ran.load());
        backed_off = qk::backoff_stretches() > stretches;
    }
    QKT_CHECK(backed_off, "400 runs with a worker 2 ms late every time it took a task: the pool never backed off");
    // Backed off: the next products run on the caller alone.
    for (int run = 0; run < 50; ++run) {
        std::atomic<size_t> on_workers{0};
        qk::parallel_for(8, [&](size_t, size_t worker) { if (worker != 0) on_workers.fetch_add(1); });
        QKT_CHECK(on_workers.load() == 0, "run %d after the back-off: %zu tasks ran on workers", run, on_workers.load());
    }
    qk::set_threads(before);
}

// ops::even_rows_per_task: every row in some task, no task above the
// target size (about 2^14 values, or one row), and rows spread evenly: 128
// rows of 768 values on two threads are 64 + 64 (the old rule, 2^16 / K + 1
// rows, gave 86 + 42 at its own target size).
QKT_TEST(even_rows_per_task_balanced) {
    for (size_t threads : {size_t(1), size_t(2), size_t(3), size_t(8)})
        for (size_t M : {size_t(1), size_t(2), size_t(7), size_t(128), size_t(1000)})
            for (size_t K : {size_t(1), size_t(31), size_t(768), size_t(2048), size_t(11008)}) {
                const size_t rpt = qk::ops::even_rows_per_task(M, K, threads);
                QKT_CHECK(rpt >= 1 && rpt <= M, "M=%zu K=%zu threads=%zu: %zu rows per task", M, K, threads, rpt);
                const size_t want = (M * K + 16383) / 16384;  // tasks at the target size
                QKT_CHECK(rpt <= (M + want - 1) / want, "M=%zu K=%zu threads=%zu: %zu rows per task, above the target", M, K, threads, rpt);
            }
    QKT_CHECK(qk::ops::even_rows_per_task(128, 768, 2, size_t(1) << 16) == 64, "128 x 768 on two threads, target 2^16: %zu rows",
              qk::ops::even_rows_per_task(128, 768, 2, size_t(1) << 16));
    QKT_CHECK(qk::ops::even_rows_per_task(128, 768, 2) == 22, "128 x 768 on two threads: %zu rows (6 tasks)",
              qk::ops::even_rows_per_task(128, 768, 2));
}
