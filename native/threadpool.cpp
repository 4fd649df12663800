#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace qk {

namespace {

// One pause of a spin-wait loop (portable code: no ISA flags needed).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// How long a worker, after its last task, and a caller, waiting for the
// workers, spin before sleeping on a condition variable. Decode runs a
// hundred or so small products per token with a little JavaScript between
// them; on the development VM a sleep/wake round trip through the condition
// variables cost ~100 us per parallel_for (measured: 2 tiny tasks on 2
// threads), more than a 768 x 768 int4 GEMV takes, so two threads decoded
// slower than one. Spinning this long keeps the workers awake across those
// gaps; an idle pool goes back to sleep after it.
// Settable (set_spin_us, QUANTKIT_SPIN_US): 0 turns spinning off, for hosts
// where every core is already busy or for comparing with a peer that does not spin.
std::atomic<long> g_spin_us{300};

// Spin until pred() or kSpin has passed; returns pred(). Every 64 pauses the
// thread yields its core: when the CPUs are oversubscribed (other processes,
// more threads than cores), a spinning thread otherwise holds a core that the
// thread it waits for needs; on an idle machine the yield returns at once.
template <class Pred>
bool spin_until(const Pred& pred) {
    const long us = g_spin_us.load(std::memory_order_relaxed);
    if (us <= 0) return pred();
    const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (pred()) return true;
            cpu_relax();
        }
        if (std::chrono::steady_clock::now() >= end) return pred();
        std::this_thread::yield();
    }
}

// One parallel_for: its tasks, handed out one by one, and how many are done.
//
// The tasks are cut into one contiguous segment per thread. Thread i takes
// the tasks of segment i in order, then helps with segments i + 1, i + 2,
// ... (mod the count), one task at a time, so the load still balances. Why
// segments: tasks are consecutive blocks of W's rows, and the decode
// kernels prefetch the rows ahead of the block they read (~18 KiB for the
// W4A8 GEMV). Handed out in one shared order, a thread's next task is
// usually the block after the other thread's, so that prefetch warmed the
// wrong core's L2 for 3 of every 4 tiles: the W4A8 GEMVs of a d768 model
// ran slower on two threads than on one (1.68 against 2.47-2.55 ms for 84
// layers, cold; AMD EPYC Zen 5).
struct alignas(64) Segment {
    std::atomic<size_t> next{0};
    size_t end = 0;
};

// Runs live in a few slots that the pool reuses in turn (run g in slot
// g % kSlots), so starting one allocates nothing and a worker finds it
// without a lock. A worker counts itself in `users` while it looks at a
// slot; a caller about to refill a slot waits until nobody does. So a worker
// that wakes after its run is over (descheduled on a busy machine) finds no
// task left and touches only a slot that nobody is refilling; the caller
// waits for the tasks, not for the workers.
struct Job {
    const std::function<void(size_t, size_t)>* fn = nullptr;
    size_t n_tasks = 0;
    size_t n_segs = 0;
    std::unique_ptr<Segment[]> segs;  // one per thread of the pool
    // (each on a line of its own: every thread writes them once per run)
    alignas(64) std::atomic<size_t> done{0};  // tasks finished, added by each thread once it has run out
    alignas(64) std::atomic<size_t> users{0};
    std::atomic<bool> failed{false};
    std::mutex error_m;
    std::exception_ptr error;  // the first exception of a task
};
constexpr size_t kSlots = 4;

class Pool {
public:
    explicit Pool(size_t n) {
        try {
            start(n);
        } catch (...) {
            size_ = 1;  // cannot create threads at all: run on the caller
        }
    }
    ~Pool() { stop(); }

    size_t size() const { return size_; }

    // All or nothing: when the new threads cannot all be created (thread or
    // address-space limits), the pool goes back to its old size and the
    // error (std::system_error) reaches the caller, which reports it to JS.
    void resize(size_t n) {
        std::lock_guard<std::mutex> busy(busy_);
        const size_t old = size_;
        // A new pool size starts sharing afresh (no back-off carried over).
        backoff_ = Backoff{};
        stop();
        try {
            start(n);
        } catch (...) {
            try {
                start(old);
            } catch (...) {
                size_ = 1;  // no worker threads: everything runs on the caller
            }
            throw;
        }
    }

    void run(size_t n_tasks, const std::function<void(size_t, size_t)>& fn) {
        if (n_tasks == 0) return;
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (!busy.owns_lock() || size_ == 1 || n_tasks == 1 || backoff_.solo_left > 0) {
            // Pool taken by another caller, nothing to share, or backing off
            // from stragglers (below): run here.
            if (busy.owns_lock() && backoff_.solo_left > 0) --backoff_.solo_left;
            for (size_t t = 0; t < n_tasks; ++t) fn(t, 0);
            return;
        }
        const auto t0 = Clock::now();
        // Only the holder of busy_ (and stop(), under it too) moves the generation.
        const size_t gen = generation_.load(std::memory_order_relaxed) + 1;
        Job& job = slots_[gen % kSlots];
        // A worker may still be leaving this slot's run of kSlots runs ago.
        while (job.users.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
        job.fn = &fn;
        job.n_tasks = n_tasks;
        job.n_segs = std::min(size_, n_tasks);
        for (size_t i = 0; i < job.n_segs; ++i) {
            job.segs[i].next.store(i * n_tasks / job.n_segs, std::memory_order_relaxed);
            job.segs[i].end = (i + 1) * n_tasks / job.n_segs;
        }
        job.done.store(0, std::memory_order_relaxed);
        job.failed.store(false, std::memory_order_relaxed);
        job.error = nullptr;
        // Publish (spinning workers start here), then wake sleeping ones. A
        // worker going to sleep counts itself in sleepers_ before its last
        // look at the generation, so one of the two sees the other.
        generation_.store(gen, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) {
            std::lock_guard<std::mutex> lk(m_);
            cv_.notify_all();
        }
        const size_t mine = drain(job, 0);
        const auto t1 = Clock::now();
        // Done when every task is: a worker that has not woken up yet is not
        // waited for (the caller may well have run its share).
        const auto all_done = [&] { return job.done.load(std::memory_order_acquire) == n_tasks; };
        if (!spin_until(all_done)) {
            std::unique_lock<std::mutex> lk(m_);
            caller_asleep_.store(true, std::memory_order_seq_cst);
            done_cv_.wait(lk, [&] { return job.done.load(std::memory_order_seq_cst) == n_tasks; });
            caller_asleep_.store(false, std::memory_order_relaxed);
        }
        judge(t0, t1, Clock::now(), mine, n_tasks);
        // A task that threw (out of memory for its scratch, ...) on any
        // thread: the run stopped calling tasks; the caller gets it.
        if (job.error) std::rethrow_exception(job.error);
    }

private:
    // size_ changes only once every worker exists; on failure the threads
    // already started are joined again and the exception propagates.
    void start(size_t n) {
        if (n < 1) n = 1;
        quit_.store(false);
        // Workers start from the current generation so none can miss a run
        // that begins before they first look.
        const size_t gen = generation_.load();
        for (Job& j : slots_) j.segs.reset(new Segment[n]);
        try {
            workers_.reserve(n - 1);
            for (size_t i = 1; i < n; ++i) workers_.emplace_back([this, i, gen] { loop(i, gen); });
        } catch (...) {
            stop();
            throw;
        }
        size_ = n;
    }

    void stop() {
        {
            std::lock_guard<std::mutex> lk(m_);
            quit_.store(true);
            generation_.fetch_add(1, std::memory_order_release);
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    // Runs tasks of `job` until none are left. An exception must not leave a
    // worker thread (that would terminate the process): the first one is kept
    // for run() to rethrow, and the remaining tasks are counted but not run.
    // Returns how many tasks this thread ran.
    size_t drain(Job& job, size_t worker) {
        size_t ran = 0;
        for (size_t k = 0; k < job.n_segs; ++k) {
            Segment& seg = job.segs[(worker + k) % job.n_segs];
            for (;; ++ran) {
                const size_t t = seg.next.fetch_add(1, std::memory_order_relaxed);
                if (t >= seg.end) break;
                run_task(job, t, worker);
            }
        }
        // One count per thread and run, not one per task: the tasks of a
        // decode product take microseconds, and the counter's line would
        // cross between the cores after each of them. (The price: a worker
        // descheduled between two of its tasks, not only during one, now
        // holds up the caller until it runs again; the straggler back-off
        // below covers both.)
        if (ran != 0 && job.done.fetch_add(ran, std::memory_order_seq_cst) + ran == job.n_tasks && worker != 0 &&
            caller_asleep_.load(std::memory_order_seq_cst)) {
            // The caller went to sleep (it spins first): wake it under the lock.
            std::lock_guard<std::mutex> lk(m_);
            done_cv_.notify_one();
        }
        return ran;
    }

    void run_task(Job& job, size_t t, size_t worker) {
        if (job.failed.load(std::memory_order_relaxed)) return;
        try {
            (*job.fn)(t, worker);
        } catch (...) {
            std::lock_guard<std::mutex> lk(job.error_m);
            if (!job.error) job.error = std::current_exception();
            job.failed.store(true, std::memory_order_relaxed);
        }
    }

    // Straggler back-off. On a host whose cores are all busy (other
    // processes, more runnable threads than cores), a worker preempted in
    // the middle of its task makes the caller wait for the scheduler to run
    // it again, milliseconds for microseconds of work: two threads then
    // decoded up to 2-6x slower than one, in bursts (README, threads). The
    // caller times its own share of each run and estimates what the run
    // would have cost on it alone (own time * n_tasks / own tasks: tasks are
    // of about equal cost); the difference from the run's wall time is what
    // sharing gained, or lost. When the net over a window of runs is a loss
    // (or the loss passes kMaxLoss within the window), the pool runs the
    // next `solo_next` products on the caller alone (its workers go to sleep
    // and free their cores), then shares again for one window; each window
    // that loses again doubles the stretch (up to kSoloMax, seconds of
    // decoding), one that gains resets it. On an idle machine sharing never
    // loses, and results do not depend on who runs a task: this changes
    // speed only.
    using Clock = std::chrono::steady_clock;
    static constexpr size_t kWindow = 64, kSoloMin = 256, kSoloMax = 16384;
    static constexpr long long kMaxLossNs = 1'000'000;  // 1 ms
    static constexpr long long kNoiseNs = 100'000;      // a window's net within 0.1 ms of zero is a tie
    struct Backoff {
        long long net_ns = 0;     // gain (> 0) or loss of sharing over this window
        size_t runs = 0;          // shared runs in this window
        size_t solo_left = 0;     // products still to run on the caller alone
        size_t solo_next = kSoloMin;
        bool probing = false;     // this window follows a solo stretch
    } backoff_;  // touched only by the caller that holds busy_
    std::atomic<size_t> stretches_{0};  // solo stretches begun (for tests)

    void judge(Clock::time_point t0, Clock::time_point t1, Clock::time_point t2, size_t mine, size_t n_tasks) {
        Backoff& b = backoff_;
        if (mine == 0) return;  // the caller itself was late: no estimate
        const long long own = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
        const long long wall = std::chrono::duration_cast<std::chrono::nanoseconds>(t2 - t0).count();
        b.net_ns += own * static_cast<long long>(n_tasks) / static_cast<long long>(mine) - wall;
        ++b.runs;
        const bool lost = b.net_ns < -kMaxLossNs || (b.runs >= kWindow && b.net_ns < -kNoiseNs);
        if (lost) {
            if (b.probing) b.solo_next = std::min(b.solo_next * 2, kSoloMax);
            b.solo_left = b.solo_next;
            b.probing = true;
            stretches_.fetch_add(1, std::memory_order_relaxed);
        } else if (b.runs >= kWindow) {
            if (b.probing) b.solo_next = kSoloMin;
            b.probing = false;
        } else {
            return;
        }
        b.net_ns = 0;
        b.runs = 0;
    }

public:
    size_t backoff_stretches() const { return stretches_.load(std::memory_order_relaxed); }

private:
    void loop(size_t worker, size_t seen) {
        for (;;) {
            const auto moved = [&] { return generation_.load(std::memory_order_acquire) != seen; };
            if (!spin_until(moved)) {
                std::unique_lock<std::mutex> lk(m_);
                sleepers_.fetch_add(1, std::memory_order_seq_cst);
                cv_.wait(lk, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
            }
            if (quit_.load(std::memory_order_acquire)) return;
            const size_t gen = generation_.load(std::memory_order_acquire);
            seen = gen;
            Job& job = slots_[gen % kSlots];
            job.users.fetch_add(1, std::memory_order_seq_cst);
            // Still run `gen`: the slot is its (a caller refilling it would
            // have moved the generation first, and waits for users to leave).
            // Moved on: that run is over, nothing to do.
            if (generation_.load(std::memory_order_seq_cst) == gen) drain(job, worker);
            job.users.fetch_sub(1, std::memory_order_release);
        }
    }

    size_t size_ = 1;
    std::vector<std::thread> workers_;
    std::mutex busy_;  // held by the caller that owns the pool for one run
    std::mutex m_;     // guards the condition variables' predicates
    std::condition_variable cv_, done_cv_;
    Job slots_[kSlots];
    alignas(64) std::atomic<size_t> generation_{0};  // the latest run (its slot: % kSlots)
    alignas(64) std::atomic<int> sleepers_{0};         // workers asleep on cv_, or about to be
    std::atomic<bool> caller_asleep_{false};           // the caller asleep on done_cv_, or about to be
    std::atomic<bool> quit_{false};
};

// The CPUs this process may run on (a container's cpuset, taskset), not all
// of the machine's: more threads than that only take turns on the same cores.
size_t default_threads() {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return size_t(n);
    }
#endif
    unsigned n = std::thread::hardware_concurrency();
    return n ? n : 1;
}

Pool& pool() {
    // Leaked on purpose: joining threads during static destruction at
    // process exit can deadlock; the OS reclaims them.
    static Pool* p = new Pool(default_threads());
    return *p;
}

}  // namespace

void parallel_for(size_t n_tasks, const std::function<void(size_t, size_t)>& fn) {
    pool().run(n_tasks, fn);
}

void parallel_for(size_t n_tasks, double flops, const std::function<void(size_t, size_t)>& fn) {
    if (n_tasks > 1 && flops >= kParallelMinFlops) {
        pool().run(n_tasks, fn);
        return;
    }
    for (size_t t = 0; t < n_tasks; ++t) fn(t, 0);
}

size_t threads() { return pool().size(); }

size_t backoff_stretches() { return pool().backoff_stretches(); }

void set_spin_us(long us) { g_spin_us.store(us < 0 ? 0 : us, std::memory_order_relaxed); }
long spin_us() { return g_spin_us.load(std::memory_order_relaxed); }

void set_threads(size_t n) {
    if (n != pool().size()) pool().resize(n);
}

}  // namespace qk
