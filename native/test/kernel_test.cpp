// Native kernel test program: runs every registered test against every ISA
// table this CPU can run (the scalar reference included), and prints
// "N passed, N failed". Exit code 0 only when nothing failed.
//   qk_kernel_test [filter-substring]
#include <cstdio>
#include <cstring>

#include "../dispatch.h"
#include "harness.h"

namespace qkt {

std::vector<TestCase>& registry() {
    static std::vector<TestCase> r;
    return r;
}

void fail(const char* file, int line, const std::string& msg) {
    std::fprintf(stderr, "    %s:%d: %s\n", file, line, msg.c_str());
    throw Failure{};
}

}  // namespace qkt

int main(int argc, char** argv) {
    const char* filter = argc > 1 ? argv[1] : nullptr;
    const qk::Isa all[] = {qk::Isa::scalar, qk::Isa::avx2, qk::Isa::avx512, qk::Isa::amx, qk::Isa::neon};
    int passed = 0, failed = 0;
    long checks = 0;
    for (qk::Isa isa : all) {
        const qk::Kernels* k = qk::kernels_for(isa);
        if (!k) continue;
        std::printf("ISA %s\n", k->name);
        for (const auto& tc : qkt::registry()) {
            if (filter && !std::strstr(tc.name, filter)) continue;
            qkt::Ctx ctx;
            ctx.k = k;
            ctx.ref = &qk::kernels_ref;
            try {
                tc.fn(ctx);
                ++passed;
                std::printf("  ok   %s (%ld checks)\n", tc.name, ctx.checks);
            } catch (const qkt::Failure&) {
                ++failed;
                std::printf("  FAIL %s\n", tc.name);
            }
            checks += ctx.checks;
        }
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
