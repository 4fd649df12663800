// Run-time ISA selection: detect once, fill one pointer. Call sites never use
// #ifdef on an ISA; they call qk::kernels().<op>.
#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace qk {

namespace {

#if defined(__x86_64__) || defined(_M_X64)
uint64_t read_xcr0() {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (uint64_t(edx) << 32) | eax;
}

// AMX tile data is not part of a thread's state until the process asks
// Linux for it (arch_prctl ARCH_REQ_XCOMP_PERM, kernel 5.16+); the grant is
// process-wide, so pool threads and worker threads created before or after
// may all use the tiles. Elsewhere (other kernels, other systems) no AMX.
bool request_amx_state() {
#if defined(__linux__) && defined(SYS_arch_prctl)
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
}

CpuFeatures detect() {
    CpuFeatures f;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = c & (1u << 27);
    const bool fma = c & (1u << 12);
    const bool f16c = c & (1u << 29);
    const bool avx = c & (1u << 28);
    if (!osxsave || !avx) return f;
    const uint64_t xcr0 = read_xcr0();
    const bool os_ymm = (xcr0 & 0x6) == 0x6;          // xmm + ymm state
    const bool os_zmm = (xcr0 & 0xe6) == 0xe6;        // + opmask, zmm_hi256, hi16_zmm
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = b & (1u << 5);
    const bool avx512f = b & (1u << 16);
    const bool avx512bw = b & (1u << 30);
    const bool avx512vl = b & (1u << 31);
    const bool avx512vnni = c & (1u << 11);
    f.avx2 = os_ymm && avx2 && fma && f16c;
    f.avx512 = f.avx2 && os_zmm && avx512f && avx512bw && avx512vl && avx512vnni;
    const bool amx_bf16 = d & (1u << 22);
    const bool amx_tile = d & (1u << 24);
    const bool amx_int8 = d & (1u << 25);
    const bool os_tiles = (xcr0 & 0x60000) == 0x60000;  // XTILECFG + XTILEDATA
    // AVX512_BF16 (leaf 7 subleaf 1) converts to bf16 for the AMX-BF16
    // panels; every AMX processor so far has both bf16 units and AMX-INT8.
    __cpuid_count(7, 1, a, b, c, d);
    const bool avx512bf16 = a & (1u << 5);
    f.amx = f.avx512 && amx_tile && amx_int8 && amx_bf16 && avx512bf16 && os_tiles && request_amx_state();
    return f;
}
#elif defined(__aarch64__)
CpuFeatures detect() {
    CpuFeatures f;
    f.neon = true;  // Advanced SIMD is mandatory on AArch64
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
    f.neon_dot = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
    return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

std::atomic<const Kernels*> g_active{nullptr};

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures f = detect();
    return f;
}

Isa best_isa() {
    const CpuFeatures& f = cpu_features();
    if (f.amx) return Isa::amx;
    if (f.avx512) return Isa::avx512;
    if (f.avx2) return Isa::avx2;
    if (f.neon) return Isa::neon;
    return Isa::scalar;
}

const Kernels* kernels_for(Isa isa) {
    const CpuFeatures& f = cpu_features();
    switch (isa) {
        case Isa::scalar: return &kernels_ref;
#if defined(__x86_64__) || defined(_M_X64)
        case Isa::avx2: return f.avx2 ? &kernels_avx2 : nullptr;
        case Isa::avx512: return f.avx512 ? &kernels_avx512 : nullptr;
        case Isa::amx: return f.amx ? &kernels_amx : nullptr;
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
        case Isa::neon:
        case Isa::neon_dot: return f.neon ? &kernels_neon : nullptr;
#endif
        default: return nullptr;
    }
    (void)f;
}

bool parse_isa(const char* name, Isa* out) {
    struct { const char* n; Isa i; } names[] = {
        {"scalar", Isa::scalar}, {"avx2", Isa::avx2}, {"avx512", Isa::avx512}, {"amx", Isa::amx},
        {"neon", Isa::neon}, {"neon_dot", Isa::neon_dot}};
    for (auto& e : names) {
        if (std::strcmp(name, e.n) == 0) { *out = e.i; return true; }
    }
    return false;
}

const Kernels& select_isa(Isa cap) {
    // The ladder on this architecture, best last; take the best one the CPU
    // has that does not exceed the cap.
#if defined(__x86_64__) || defined(_M_X64)
    const Isa ladder[] = {Isa::scalar, Isa::avx2, Isa::avx512, Isa::amx};
#elif defined(__aarch64__) || defined(_M_ARM64)
    const Isa ladder[] = {Isa::scalar, Isa::neon};
#else
    const Isa ladder[] = {Isa::scalar};
#endif
    const Kernels* chosen = &kernels_ref;
    for (Isa i : ladder) {
        if (static_cast<int>(i) > static_cast<int>(cap) && !(cap == Isa::neon_dot && i == Isa::neon)) continue;
        if (const Kernels* k = kernels_for(i)) chosen = k;
    }
    g_active.store(chosen, std::memory_order_release);
    return *chosen;
}

const Kernels& kernels() {
    const Kernels* k = g_active.load(std::memory_order_acquire);
    if (k) return *k;
    Isa cap = best_isa();
    if (const char* env = std::getenv("QUANTKIT_ISA")) {
        Isa requested;
        if (env[0] && parse_isa(env, &requested)) cap = requested;
    }
    return select_isa(cap);
}

}  // namespace qk
