// A minimal test harness for the plain native kernel test program (no Node,
// so it also runs cross-compiled under qemu-aarch64). Each test is a function
// run once per ISA table available on this CPU, compared against the scalar
// reference table qk::kernels_ref.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../kernels/kernels.h"

namespace qkt {

// GemmArgs of a product Y[M, N] = X[M, K] (row stride K) times a quantized
// weight (int8 or int4 codes with rb bytes per row, f32 scales, zero points
// or nullptr, group G), plus bias, into Y with row stride N.
inline qk::GemmArgs quant_gemm_args(const float* x, size_t M, size_t N, size_t K, int bits, const void* codes, size_t rb,
                                    const float* scales, const void* zps, size_t G, const float* bias, float* y) {
    qk::GemmArgs a{};
    a.x = x;
    a.ldx = K;
    a.M = M;
    a.N = N;
    a.K = K;
    a.w.fmt = bits == 8 ? qk::WFormat::i8 : qk::WFormat::i4;
    a.w.data = codes;
    a.w.row_bytes = rb;
    a.w.scales = scales;
    a.w.zps = zps;
    a.w.group = G;
    a.bias = bias;
    a.y = y;
    a.ldy = N;
    return a;
}

// The relative error a product with int8 / int4 weights may carry on top
// of an f32 summation's on table k: its gemm_panel_dq's (kernels.h), 0 where
// it has none. Times sum |x w|.
inline double panel_dq_slack(const qk::Kernels& k, qk::WFormat fmt) {
    const bool quant = fmt == qk::WFormat::i8 || fmt == qk::WFormat::i4;
    return quant && k.gemm_panel_dq ? qk::kPanelDqRelErr : 0.0;
}

struct Failure {};

// Counts checks and failures; a failing CHECK prints and aborts the current
// test case (throws Failure), the program goes on with the next one.
struct Ctx {
    const qk::Kernels* k = nullptr;    // ISA under test
    const qk::Kernels* ref = nullptr;  // the scalar reference
    long checks = 0;
};

using TestFn = void (*)(Ctx&);
struct TestCase { const char* name; TestFn fn; };
std::vector<TestCase>& registry();

struct Register {
    Register(const char* name, TestFn fn) { registry().push_back({name, fn}); }
};

[[noreturn]] void fail(const char* file, int line, const std::string& msg);

// Deterministic xorshift generator for test data; `salt` keeps each test
// file's streams distinct.
struct Rng {
    uint64_t s;
    Rng(uint64_t seed, uint64_t salt) : s(seed * 0x9E3779B97F4A7C15ull + salt) {}
    uint32_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return static_cast<uint32_t>(s >> 11);
    }
    int irange(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<uint32_t>(hi - lo + 1)); }
    float uni(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(next() & 0xffffff) / 16777216.0f; }
};

}  // namespace qkt

#define QKT_TEST(name)                                            \
    static void name(qkt::Ctx& ctx);                              \
    static qkt::Register name##_reg(#name, name);                 \
    static void name(qkt::Ctx& ctx)

#define QKT_CHECK(cond, ...)                                                      \
    do {                                                                          \
        ++ctx.checks;                                                             \
        if (!(cond)) {                                                            \
            char qkt_buf_[512];                                                   \
            std::snprintf(qkt_buf_, sizeof qkt_buf_, __VA_ARGS__);                \
            qkt::fail(__FILE__, __LINE__, std::string(#cond) + ": " + qkt_buf_); \
        }                                                                         \
    } while (0)
