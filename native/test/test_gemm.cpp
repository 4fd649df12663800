// Tests of the GEMM kernels (gemv, gemm_panel_f32, dequant_panel) and of the
// driver qk::gemm, run once per ISA table (ctx.k) against the scalar
// reference (ctx.ref) and against a float64 evaluation of the dot products of
// the DEQUANTIZED weights (decoded by the reference dequant_panel, which is
// the bit-exact specification of the weight formats).
//
// Tolerance (random data). Each output is a float sum of K products x_k*w_k
// plus the bias, evaluated in some order (serial, per-lane + tree, K blocks,
// with or without FMA). Every one of the at most K + 1 additions and K
// multiplications rounds with relative error <= u = 2^-24, so for ANY order
//   |y - y64| <= gamma_{K+1} * (sum_k |x_k w_k| + |bias|),
//   gamma_n = n u / (1 - n u) < (K + 32) u for K <= 4097,
// plus an absolute 2^-150 per operation when values are subnormal, below
// 1e-41 here, covered by the + 1e-30 term. Data never overflows float.
// This bound is loose for large K, so every format is also run with EXACT
// data (small integers times powers of two, all partial sums exactly
// representable): there any order gives the exact result, and y must equal
// y64 bit for bit - a dropped or doubled term cannot hide in the tolerance.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../kernels/kernels.h"
#include "../ops/gemm_ops.h"
#include "../threadpool.h"
#include "harness.h"

namespace {

using qk::WFormat;

// Test data: the harness generator with this file's salt.
struct Rng : qkt::Rng {
    explicit Rng(uint64_t seed) : qkt::Rng(seed, 1) {}
};

enum class Data { random, exact };

// Which weight layout a case uses.
struct WSpec {
    WFormat fmt;
    bool asym;
    bool per_channel;  // G = K (else G from the group list)
    const char* name;
};

const WSpec kSpecs[] = {
    {WFormat::f32, false, true, "f32"},          {WFormat::f16, false, true, "f16"},
    {WFormat::bf16, false, true, "bf16"},        {WFormat::i8, false, true, "i8-sym-channel"},
    {WFormat::i8, true, true, "i8-asym-channel"}, {WFormat::i8, false, false, "i8-sym-group"},
    {WFormat::i8, true, false, "i8-asym-group"},  {WFormat::i4, false, false, "i4-sym-group"},
    {WFormat::i4, true, false, "i4-asym-group"},  {WFormat::i4, false, true, "i4-sym-channel"},
    {WFormat::i4, true, true, "i4-asym-channel"},
};

bool quantized(WFormat f) { return f == WFormat::i8 || f == WFormat::i4; }

// Group sizes to try for a spec and K (G divides K; even for i4).
std::vector<size_t> groups_for(const WSpec& sp, size_t K) {
    std::vector<size_t> gs;
    if (!quantized(sp.fmt)) return {0};
    if (sp.per_channel) {
        if (sp.fmt == WFormat::i4 && K % 2) return {};
        return {K};
    }
    for (size_t G : {2, 6, 8, 10, 32, 64, 128}) {
        if (G >= K || K % G) continue;
        gs.push_back(G);
    }
    return gs;
}

// f32 -> bf16 / f16 bit patterns only for exactly representable test values.
uint16_t f32_to_bf16_exact(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return static_cast<uint16_t>(b >> 16);
}
uint16_t small_int_to_f16(int v) {  // |v| <= 2048, exact
    if (v == 0) return 0;
    uint16_t sign = v < 0 ? 0x8000 : 0;
    unsigned a = static_cast<unsigned>(v < 0 ? -v : v);
    int e = 0;
    while ((a >> e) > 1) ++e;
    const unsigned man = (a << (10 - e)) & 0x3ff;
    return static_cast<uint16_t>(sign | ((e + 15) << 10) | man);
}

// A weight matrix W[N, K] in one format, owning its storage.
struct TestW {
    WFormat fmt = WFormat::f32;
    size_t N = 0, K = 0, G = 0;
    bool asym = false;
    std::vector<uint8_t> data;
    std::vector<float> scales;
    std::vector<uint8_t> zps;

    size_t row_bytes() const {
        switch (fmt) {
            case WFormat::f32: return 4 * K;
            case WFormat::f16:
            case WFormat::bf16: return 2 * K;
            case WFormat::i8: return K;
            case WFormat::i4: return (K + 1) / 2;
        }
        return 0;
    }
    qk::WeightView view() const {
        qk::WeightView v;
        v.fmt = fmt;
        v.data = data.data();
        v.row_bytes = row_bytes();
        v.scales = quantized(fmt) ? scales.data() : nullptr;
        v.zps = (quantized(fmt) && asym) ? zps.data() : nullptr;
        v.group = G;
        return v;
    }
};

// mag: overall magnitude of random float weights (edge tests).
TestW make_w(const WSpec& sp, size_t N, size_t K, size_t G, Data d, Rng& rng, float mag = 1.0f) {
    TestW w;
    w.fmt = sp.fmt;
    w.N = N;
    w.K = K;
    w.G = quantized(sp.fmt) ? G : 0;
    w.asym = sp.asym;
    w.data.assign(N * w.row_bytes() + 1, 0);  // +1: never a zero-size buffer
    const size_t ng = quantized(sp.fmt) ? N * (K / G) : 0;
    w.scales.resize(ng + 1);
    w.zps.assign(ng + 1, 0);
    for (size_t n = 0; n < N; ++n) {
        uint8_t* row = w.data.data() + n * w.row_bytes();
        for (size_t k = 0; k < K; ++k) {
            switch (sp.fmt) {
                case WFormat::f32: {
                    const float v = d == Data::exact ? static_cast<float>(rng.irange(-8, 8)) : mag * rng.uni(-1, 1);
                    std::memcpy(row + 4 * k, &v, 4);
                    break;
                }
                case WFormat::f16: {
                    uint16_t h;
                    if (d == Data::exact) {
                        h = small_int_to_f16(rng.irange(-8, 8));
                    } else {  // finite halves in about [2^-5, 2^5], both signs, some zeros
                        h = static_cast<uint16_t>((rng.next() & 0x8000) | ((rng.irange(10, 20)) << 10) |
                                                  (rng.next() & 0x3ff));
                        if (rng.irange(0, 15) == 0) h = 0;
                    }
                    std::memcpy(row + 2 * k, &h, 2);
                    break;
                }
                case WFormat::bf16: {
                    uint16_t h;
                    if (d == Data::exact) {
                        h = f32_to_bf16_exact(static_cast<float>(rng.irange(-8, 8)));
                    } else {
                        h = static_cast<uint16_t>((rng.next() & 0x8000) | (rng.irange(122, 132) << 7) |
                                                  (rng.next() & 0x7f));
                    }
                    std::memcpy(row + 2 * k, &h, 2);
                    break;
                }
                case WFormat::i8: row[k] = static_cast<uint8_t>(rng.irange(-128, 127)); break;
                case WFormat::i4: {
                    const uint8_t nib = static_cast<uint8_t>(rng.irange(0, 15));
                    row[k / 2] = static_cast<uint8_t>(row[k / 2] | (k & 1 ? nib << 4 : nib));
                    break;
                }
            }
        }
    }
    const float pow2[] = {0.5f, 1.0f, 2.0f};
    for (size_t g = 0; g < ng; ++g) {
        w.scales[g] = d == Data::exact ? pow2[rng.irange(0, 2)] : mag * rng.uni(0.001f, 0.1f);
        if (sp.asym)
            w.zps[g] = sp.fmt == WFormat::i8 ? static_cast<uint8_t>(static_cast<int8_t>(rng.irange(-128, 127)))
                                             : static_cast<uint8_t>(rng.irange(0, 15));
    }
    if (d == Data::exact && sp.asym && sp.fmt == WFormat::i8)  // keep |q - zp| small enough
        for (size_t g = 0; g < ng; ++g) w.zps[g] = static_cast<uint8_t>(static_cast<int8_t>(rng.irange(-10, 10)));
    return w;
}

// The dequantized weights, by the reference (the bit-exact spec).
std::vector<float> dequant_all(const qkt::Ctx& ctx, const TestW& w) {
    std::vector<float> d(w.N * w.K + 1);
    if (w.K) ctx.ref->dequant_panel(w.view(), 0, w.N, 0, w.K, d.data(), w.K);
    return d;
}

// X[M, K] with row stride ldx (padding filled with NaN: must never be read).
std::vector<float> make_x(size_t M, size_t K, size_t ldx, Data d, Rng& rng) {
    std::vector<float> x(M * ldx + 1, NAN);
    for (size_t m = 0; m < M; ++m)
        for (size_t k = 0; k < K; ++k)
            x[m * ldx + k] = d == Data::exact ? static_cast<float>(rng.irange(-4, 4)) : rng.uni(-1, 1);
    return x;
}

std::vector<float> make_bias(size_t N, Data d, Rng& rng) {
    std::vector<float> b(N + 1);
    for (size_t n = 0; n < N; ++n) b[n] = d == Data::exact ? static_cast<float>(rng.irange(-100, 100)) : rng.uni(-2, 2);
    return b;
}

constexpr float kSentinel = -12345.5f;

// Float64 sums of x and the dequantized weights (s) and of their absolute
// values (sa, for the tolerance), for rows [0, M) and columns [0, N).
struct Ref64 {
    size_t N = 0, K = 0;
    std::vector<double> s, sa;
};
Ref64 ref64(const float* x, size_t ldx, const float* wd, const float* bias, size_t M, size_t N, size_t K) {
    Ref64 r;
    r.N = N;
    r.K = K;
    r.s.resize(M * N);
    r.sa.resize(M * N);
    for (size_t m = 0; m < M; ++m) {
        for (size_t n = 0; n < N; ++n) {
            double s = 0, sa = 0;
            for (size_t k = 0; k < K; ++k) {
                const double t = static_cast<double>(x[m * ldx + k]) * static_cast<double>(wd[n * K + k]);
                s += t;
                sa += std::fabs(t);
            }
            if (bias) {
                s += bias[n];
                sa += std::fabs(bias[n]);
            }
            r.s[m * N + n] = s;
            r.sa[m * N + n] = sa;
        }
    }
    return r;
}

// Checks rows [0, M) x columns [n0, n1) of y (stride ldy) against rows
// [m_off, m_off + M) of r; exact data must match exactly.
// slack: a relative error allowed on top (panel_dq_slack), times sum |x w|.
void check_rows(qkt::Ctx& ctx, const char* what, const float* y, size_t ldy, const Ref64& r, size_t m_off,
                size_t M, size_t n0, size_t n1, Data d, double slack = 0.0) {
    const double u = 1.0 / 16777216.0;
    for (size_t m = 0; m < M; ++m) {
        for (size_t n = n0; n < n1; ++n) {
            const double want = r.s[(m_off + m) * r.N + n];
            const double got = y[m * ldy + n];
            const double tol =
                d == Data::exact ? 0.0
                                 : ((static_cast<double>(r.K) + 32.0) * u + slack) * r.sa[(m_off + m) * r.N + n] + 1e-30;
            QKT_CHECK(std::fabs(got - want) <= tol,
                      "%s [%s] m=%zu n=%zu N=%zu K=%zu: got %.9g want %.9g (tol %.3g)", what, ctx.k->name,
                      m_off + m, n, r.N, r.K, got, want, tol);
        }
    }
}

// Checks y[M, N] (stride ldy) against the float64 sums, and that the padding
// columns [N, ldy) still hold the sentinel.
void check_y(qkt::Ctx& ctx, const char* what, const float* y, size_t ldy, const float* x, size_t ldx,
             const float* wd, const float* bias, size_t M, size_t N, size_t K, Data d, double slack = 0.0) {
    const Ref64 r = ref64(x, ldx, wd, bias, M, N, K);
    check_rows(ctx, what, y, ldy, r, 0, M, 0, N, d, slack);
    for (size_t m = 0; m < M; ++m)
        for (size_t n = N; n < ldy; ++n)
            QKT_CHECK(y[m * ldy + n] == kSentinel, "%s: padding y[%zu, %zu] overwritten", what, m, n);
}

const size_t kKs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 33, 64, 96, 127, 160, 384, 4096, 4097};
const size_t kNs[] = {1, 3, 7, 17, 33, 65};
const size_t kMs[] = {1, 2, 3, 4, 5, 7, 17, 33, 130};

// Keep the work of one case bounded (the reference is slow for big shapes).
bool affordable(size_t M, size_t N, size_t K) { return M * N * K <= 300000; }

// ---- dequant_panel: bit-exact with the reference -------------------------
QKT_TEST(gemm_dequant_panel_exact) {
    Rng rng(1);
    for (const WSpec& sp : kSpecs) {
        for (size_t K : kKs) {
            for (size_t G : groups_for(sp, K)) {
                const size_t N = 5;
                const TestW w = make_w(sp, N, K, G, Data::random, rng);
                const qk::WeightView v = w.view();
                // Blocks: the whole matrix, and an interior block of whole
                // groups (k0, kc multiples of G, even for i4) with ldp > kc.
                const size_t unit = quantized(sp.fmt) ? G : 1;
                const size_t nunits = K / unit;
                struct Blk { size_t n0, nr, k0, kc; };
                std::vector<Blk> blks = {{0, N, 0, K}};
                if (nunits >= 3) blks.push_back({1, 3, unit, (nunits - 2) * unit});
                if (nunits >= 2) blks.push_back({4, 1, (nunits - 1) * unit, unit});
                for (const Blk& b : blks) {
                    const size_t ldp = b.kc + 7;
                    std::vector<float> p(b.nr * ldp, kSentinel), pr(b.nr * ldp, kSentinel);
                    ctx.k->dequant_panel(v, b.n0, b.nr, b.k0, b.kc, p.data(), ldp);
                    ctx.ref->dequant_panel(v, b.n0, b.nr, b.k0, b.kc, pr.data(), ldp);
                    QKT_CHECK(std::memcmp(p.data(), pr.data(), p.size() * sizeof(float)) == 0,
                              "%s K=%zu G=%zu block n0=%zu k0=%zu kc=%zu differs from ref", sp.name, K, G, b.n0, b.k0,
                              b.kc);
                }
            }
        }
    }
}

// f16 / bf16 special values (subnormals, +-0, inf, NaN) convert exactly.
QKT_TEST(gemm_dequant_panel_specials) {
    for (WFormat f : {WFormat::f16, WFormat::bf16}) {
        const size_t K = 37, N = 3;
        TestW w;
        w.fmt = f;
        w.N = N;
        w.K = K;
        w.data.resize(N * 2 * K);
        const uint16_t specials[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x8001, 0x0400, 0x7bff, 0xfbff,
                                     0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x3c00, 0x7f80, 0xff80, 0x7fc0,
                                     0x0080, 0x007f, 0x8040, 0x3555};
        for (size_t i = 0; i < N * K; ++i) {
            const uint16_t h = specials[i % (sizeof specials / sizeof specials[0])];
            std::memcpy(w.data.data() + 2 * i, &h, 2);
        }
        std::vector<float> p(N * K), pr(N * K);
        ctx.k->dequant_panel(w.view(), 0, N, 0, K, p.data(), K);
        ctx.ref->dequant_panel(w.view(), 0, N, 0, K, pr.data(), K);
        for (size_t i = 0; i < N * K; ++i) {
            uint32_t a, b;
            std::memcpy(&a, &p[i], 4);
            std::memcpy(&b, &pr[i], 4);
            const bool both_nan = std::isnan(p[i]) && std::isnan(pr[i]);
            QKT_CHECK(a == b || both_nan, "fmt %d elem %zu: %08x vs ref %08x", static_cast<int>(f), i, a, b);
        }
    }
    // Reference f16 values against known results.
    TestW w;
    w.fmt = WFormat::f16;
    w.N = 1;
    w.K = 4;
    const uint16_t h[4] = {0x0001, 0x3c00, 0xc000, 0x7bff};
    w.data.resize(8);
    std::memcpy(w.data.data(), h, 8);
    float p[4];
    ctx.ref->dequant_panel(w.view(), 0, 1, 0, 4, p, 4);
    QKT_CHECK(p[0] == 5.9604644775390625e-8f && p[1] == 1.0f && p[2] == -2.0f && p[3] == 65504.0f,
              "ref f16 decode %g %g %g %g", p[0], p[1], p[2], p[3]);
}

// GemmArgs over test data (the gemv, row-invariance and driver tests).
qk::GemmArgs args_for(const std::vector<float>& x, size_t ldx, size_t M, size_t N, size_t K, const TestW& w,
                      const float* bias, std::vector<float>& y, size_t ldy) {
    qk::GemmArgs a;
    a.x = x.data();
    a.ldx = ldx;
    a.M = M;
    a.N = N;
    a.K = K;
    a.w = w.view();
    a.bias = bias;
    a.y = y.data();
    a.ldy = ldy;
    return a;
}

// ---- gemv ------------------------------------------------------------------
QKT_TEST(gemm_gemv) {
    Rng rng(2);
    for (Data d : {Data::random, Data::exact}) {
        for (const WSpec& sp : kSpecs) {
            for (size_t K : kKs) {
                for (size_t G : groups_for(sp, K)) {
                    for (size_t N : kNs) {
                        if (!affordable(4, N, K)) continue;
                        const TestW w = make_w(sp, N, K, G, d, rng);
                        const std::vector<float> wd = dequant_all(ctx, w);
                        const size_t Mx = 9, ldx = K + 3, ldy = N + 2;
                        const std::vector<float> x = make_x(Mx, K, ldx, d, rng);
                        const std::vector<float> bias = make_bias(N, d, rng);
                        const Ref64 r_nb = ref64(x.data(), ldx, wd.data(), nullptr, Mx, N, K);
                        const Ref64 r_b = ref64(x.data(), ldx, wd.data(), bias.data(), Mx, N, K);
                        // 8: the wide tile (AVX-512 f32) or the 4 + 4 split; 5 to 7
                        // are in gemm_gemv_row_invariant and gemm_driver_row_invariant
                        for (size_t mc : {1, 2, 3, 4, 8}) {
                            for (bool use_bias : {false, true}) {
                                const Ref64& r = use_bias ? r_b : r_nb;
                                // Rows [1, 1 + mc), all of N.
                                std::vector<float> y(Mx * ldy, kSentinel);
                                qk::GemmArgs a = args_for(x, ldx, Mx, N, K, w, use_bias ? bias.data() : nullptr, y, ldy);
                                ctx.k->gemv(a, 1, mc, 0, N);
                                check_rows(ctx, sp.name, y.data() + ldy, ldy, r, 1, mc, 0, N, d);
                                for (size_t i = 0; i < Mx * ldy; ++i) {
                                    const size_t m = i / ldy, n = i % ldy;
                                    if (m < 1 || m >= 1 + mc || n >= N)
                                        QKT_CHECK(y[i] == kSentinel, "%s: gemv wrote outside its rows/columns", sp.name);
                                }
                                if (mc == 1 || mc == 4) {  // the reference itself
                                    std::vector<float> yr(Mx * ldy, kSentinel);
                                    a.y = yr.data();
                                    ctx.ref->gemv(a, 1, mc, 0, N);
                                    check_rows(ctx, "ref", yr.data() + ldy, ldy, r, 1, mc, 0, N, d);
                                }
                                // A sub-range [1, N - 1) of the columns.
                                if (N >= 3) {
                                    std::vector<float> ys(Mx * ldy, kSentinel);
                                    a.y = ys.data();
                                    ctx.k->gemv(a, 0, mc, 1, N - 1);
                                    check_rows(ctx, sp.name, ys.data(), ldy, r, 0, mc, 1, N - 1, d);
                                    for (size_t m = 0; m < mc; ++m)
                                        QKT_CHECK(ys[m * ldy] == kSentinel && ys[m * ldy + N - 1] == kSentinel,
                                                  "%s: gemv wrote outside [n0, n1)", sp.name);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// Row-invariant mode: a row's bits do not depend on the rows sharing its
// gemv tile (mc = 1..8, any m0), for every format and ISA; the batched
// decoder relies on it (a sequence's logits must not depend on the batch).
QKT_TEST(gemm_gemv_row_invariant) {
    Rng rng(21);
    for (const WSpec& sp : kSpecs) {
        for (size_t K : kKs) {
            for (size_t G : groups_for(sp, K)) {
                const size_t N = 9, Mx = 9, ldx = K + 1, ldy = N;
                if (!affordable(Mx, N, K)) continue;
                const TestW w = make_w(sp, N, K, G, Data::random, rng);
                const std::vector<float> x = make_x(Mx, K, ldx, Data::random, rng);
                // each row alone (mc = 1) is the baseline
                std::vector<float> y1(Mx * ldy, kSentinel);
                qk::GemmArgs a = args_for(x, ldx, Mx, N, K, w, nullptr, y1, ldy);
                a.row_invariant = true;
                for (size_t m = 0; m < Mx; ++m) ctx.k->gemv(a, m, 1, 0, N);
                for (size_t m0 : {size_t(0), size_t(1)}) {
                    for (size_t mc = 2; m0 + mc <= Mx && mc <= 8; ++mc) {
                        std::vector<float> y(Mx * ldy, kSentinel);
                        a.y = y.data();
                        ctx.k->gemv(a, m0, mc, 0, N);
                        QKT_CHECK(std::memcmp(y.data() + m0 * ldy, y1.data() + m0 * ldy, mc * ldy * sizeof(float)) == 0,
                                  "%s K=%zu G=%zu: rows %zu..%zu in one tile differ from each row alone", sp.name, K, G,
                                  m0, m0 + mc - 1);
                    }
                }
                // AVX-512 int8 with one group per row sums in one order in
                // both modes: the ordinary gemv gives the same bits
                const bool x512 = ctx.k->isa == qk::Isa::avx512 || ctx.k->isa == qk::Isa::amx;
                if (x512 && sp.fmt == WFormat::i8 && G == K) {
                    for (size_t mc = 1; mc <= 8; ++mc) {
                        std::vector<float> y(Mx * ldy, kSentinel);
                        qk::GemmArgs b = a;
                        b.row_invariant = false;
                        b.y = y.data();
                        ctx.k->gemv(b, 0, mc, 0, N);
                        QKT_CHECK(std::memcmp(y.data(), y1.data(), mc * ldy * sizeof(float)) == 0,
                                  "%s K=%zu: ordinary gemv of %zu rows differs from row-invariant", sp.name, K, mc);
                    }
                }
            }
        }
    }
}

// The driver in both row-invariant modes: every row of one call of M = 37
// equals the same row computed in calls of 1, 2, 5 and 16 rows, for every
// format (tail groups included) and ISA, through the default blocking.
QKT_TEST(gemm_driver_row_invariant) {
    Rng rng(22);
    for (const WSpec& sp : kSpecs) {
        for (size_t K : {size_t(70), size_t(300), size_t(1100)}) {
            for (size_t G : groups_for(sp, K)) {
                const size_t N = 19, Mx = 37;
                if (!affordable(Mx, N, K)) continue;
                const TestW w = make_w(sp, N, K, G, Data::random, rng);
                const std::vector<float> x = make_x(Mx, K, K, Data::random, rng);
                for (bool panel : {false, true}) {
                    std::vector<float> all(Mx * N);
                    qk::GemmArgs a = args_for(x, K, Mx, N, K, w, nullptr, all, N);
                    a.row_invariant = true;
                    a.invariant_panel = panel;
                    qk::gemm(*ctx.k, a);
                    for (size_t m : {size_t(1), size_t(2), size_t(5), size_t(16)}) {
                        for (size_t m0 = 0; m0 + m <= Mx; m0 += 7) {
                            std::vector<float> part(m * N);
                            qk::GemmArgs b = a;
                            b.x = x.data() + m0 * K;
                            b.M = m;
                            b.y = part.data();
                            qk::gemm(*ctx.k, b);
                            QKT_CHECK(std::memcmp(part.data(), all.data() + m0 * N, part.size() * sizeof(float)) == 0,
                                      "%s K=%zu G=%zu %s: rows %zu..%zu alone differ from the same rows of M = %zu",
                                      sp.name, K, G, panel ? "panel" : "gemv", m0, m0 + m - 1, Mx);
                        }
                    }
                }
            }
        }
    }
}

// ---- gemm_panel_f32 (+ dequant_panel) --------------------------------------
QKT_TEST(gemm_panel) {
    Rng rng(3);
    const size_t kcs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 31, 33, 127, 512, 4097};
    for (Data d : {Data::random, Data::exact}) {
        for (size_t kc : kcs) {
            for (size_t M : kMs) {
                for (size_t nr : kNs) {
                    if (!affordable(M, nr, kc)) continue;
                    const size_t ldx = kc + 5, ldp = kc + 3, ldy = nr + 4;
                    const std::vector<float> x = make_x(M, kc, ldx, d, rng);
                    std::vector<float> p = make_x(nr, kc, ldp, d, rng);
                    std::vector<float> pd(nr * kc);  // dense copy for the checker
                    for (size_t j = 0; j < nr; ++j)
                        for (size_t k = 0; k < kc; ++k) pd[j * kc + k] = p[j * ldp + k];
                    std::vector<float> y(M * ldy, kSentinel), y0(nr + 1);
                    ctx.k->gemm_panel_f32(x.data(), ldx, M, p.data(), ldp, nr, kc, y.data(), ldy, false);
                    check_y(ctx, "panel", y.data(), ldy, x.data(), ldx, pd.data(), nullptr, M, nr, kc, d);
                    // accumulate: y already holds the sum; adding it again
                    // doubles it exactly (the same sum is recomputed
                    // identically), so y must be exactly 2 * y_first.
                    std::vector<float> y2 = y;
                    ctx.k->gemm_panel_f32(x.data(), ldx, M, p.data(), ldp, nr, kc, y2.data(), ldy, true);
                    for (size_t m = 0; m < M; ++m)
                        for (size_t j = 0; j < nr; ++j)
                            QKT_CHECK(y2[m * ldy + j] == 2.0f * y[m * ldy + j], "accumulate m=%zu j=%zu kc=%zu", m, j, kc);
                }
            }
        }
    }
    // The panel of a quantized weight, through dequant_panel, then the kernel.
    for (const WSpec& sp : kSpecs) {
        const size_t K = 384, N = 17, M = 7;
        for (size_t G : groups_for(sp, K)) {
            const TestW w = make_w(sp, N, K, G, Data::random, rng);
            const std::vector<float> wd = dequant_all(ctx, w);
            std::vector<float> p(N * (K + 16));
            ctx.k->dequant_panel(w.view(), 0, N, 0, K, p.data(), K + 16);
            const std::vector<float> x = make_x(M, K, K, Data::random, rng);
            std::vector<float> y(M * N, kSentinel);
            ctx.k->gemm_panel_f32(x.data(), K, M, p.data(), K + 16, N, K, y.data(), N, false);
            check_y(ctx, sp.name, y.data(), N, x.data(), K, wd.data(), nullptr, M, N, K, Data::random);
        }
    }
}

// ---- dq_split_x + gemm_panel_dq (split-bf16 panels, amx) ------------------
// The f32 kernel's checks with the extra error the contract allows
// (kernels.h: kPanelDqRelErr times sum |x p|); small integers are exact in
// bf16, so exact data stays exact. Then what the split must keep: a row's
// bits whatever M and m0, infinities and NaN, and finite values beyond
// bf16's range.
struct SplitBuf {
    std::vector<uint8_t> raw;
    qk::SplitX xs;
    SplitBuf(const qkt::Ctx& ctx, const float* x, size_t ldx, size_t M, size_t K) {
        xs.M = M;
        xs.K = K;
        raw.resize(xs.bytes() + 64);
        xs.data = raw.data() + (64 - reinterpret_cast<uintptr_t>(raw.data()) % 64) % 64;
        ctx.k->dq_split_x(x, ldx, M, K, xs, 0, xs.rows() / 16);
    }
};

// The split of X in block ranges (as the driver's tasks make it), in any
// order, is the split of the whole.
QKT_TEST(dq_split_x_blocks) {
    if (!ctx.k->dq_split_x) return;
    Rng rng(33);
    for (size_t M : {size_t(1), size_t(17), size_t(50)}) {
        for (size_t K : {size_t(31), size_t(100)}) {
            const size_t ldx = K + 2;
            const std::vector<float> x = make_x(M, K, ldx, Data::random, rng);
            const SplitBuf whole(ctx, x.data(), ldx, M, K);
            std::vector<uint8_t> raw(whole.xs.bytes() + 64, 0x5A);
            qk::SplitX xs = whole.xs;
            xs.data = raw.data() + (64 - reinterpret_cast<uintptr_t>(raw.data()) % 64) % 64;
            const size_t blocks = xs.rows() / 16;
            for (size_t b = blocks; b-- > 0;) ctx.k->dq_split_x(x.data(), ldx, M, K, xs, b, b + 1);
            QKT_CHECK(std::memcmp(xs.data, whole.xs.data, xs.bytes()) == 0, "M=%zu K=%zu: split by blocks differs", M, K);
        }
    }
}

QKT_TEST(gemm_panel_dq) {
    if (!ctx.k->gemm_panel_dq) return;  // only the amx table has one
    Rng rng(31);
    const double slack = qk::kPanelDqRelErr;
    const size_t kcs[] = {1, 2, 15, 16, 17, 31, 32, 33, 63, 100, 512, 1030};
    for (Data d : {Data::random, Data::exact}) {
        for (size_t kc : kcs) {
            for (size_t M : kMs) {
                for (size_t nr : kNs) {
                    if (!affordable(M, nr, kc)) continue;
                    // X has 32 more columns; the panel covers [32, 32 + kc) (k0 = 32)
                    const size_t K = kc + 32, ldx = K + 5, ldp = kc + 3, ldy = nr + 4;
                    const std::vector<float> x = make_x(M, K, ldx, d, rng);
                    const std::vector<float> p = make_x(nr, kc, ldp, d, rng);
                    std::vector<float> pd(nr * kc);
                    for (size_t j = 0; j < nr; ++j)
                        for (size_t k = 0; k < kc; ++k) pd[j * kc + k] = p[j * ldp + k];
                    const SplitBuf sb(ctx, x.data(), ldx, M, K);
                    std::vector<float> y(M * ldy, kSentinel);
                    ctx.k->gemm_panel_dq(sb.xs, 0, M, 32, p.data(), ldp, nr, kc, y.data(), ldy, false);
                    check_y(ctx, "panel_dq", y.data(), ldy, x.data() + 32, ldx, pd.data(), nullptr, M, nr, kc, d, slack);
                    std::vector<float> y2 = y;  // accumulate: the same sum added to itself
                    ctx.k->gemm_panel_dq(sb.xs, 0, M, 32, p.data(), ldp, nr, kc, y2.data(), ldy, true);
                    for (size_t m = 0; m < M; ++m)
                        for (size_t j = 0; j < nr; ++j)
                            QKT_CHECK(y2[m * ldy + j] == 2.0f * y[m * ldy + j], "accumulate m=%zu j=%zu kc=%zu", m, j, kc);
                    // Each row gives the same bits alone (its own split), and
                    // rows from any tile row m0 of the split of all M rows.
                    if (M > 1 && d == Data::random) {
                        for (size_t m = 0; m < M; m += 3) {
                            std::vector<float> y1(ldy, kSentinel);
                            const SplitBuf one(ctx, x.data() + m * ldx, ldx, 1, K);
                            ctx.k->gemm_panel_dq(one.xs, 0, 1, 32, p.data(), ldp, nr, kc, y1.data(), ldy, false);
                            QKT_CHECK(std::memcmp(y1.data(), y.data() + m * ldy, nr * sizeof(float)) == 0,
                                      "row %zu alone differs from the same row of M = %zu (kc %zu, nr %zu)", m, M, kc, nr);
                        }
                        for (size_t m = 16; m < M; m += 16) {
                            const size_t mc = M - m < 3 ? M - m : 3;
                            std::vector<float> ym(mc * ldy, kSentinel);
                            ctx.k->gemm_panel_dq(sb.xs, m, mc, 32, p.data(), ldp, nr, kc, ym.data(), ldy, false);
                            // (padding columns included: the sentinel in both)
                            QKT_CHECK(std::memcmp(ym.data(), y.data() + m * ldy, mc * ldy * sizeof(float)) == 0,
                                      "rows from m0 = %zu differ (M = %zu)", m, M);
                        }
                    }
                }
            }
        }
    }
    // Symmetric int8 with one scale per row, from the codes
    // (gemm_panel_dq_i8): weight rows [n0, n0 + nr) of a weight with more
    // rows, values [k0, k0 + kc) of longer rows (k0 = 32 here).
    for (Data d : {Data::random, Data::exact}) {
        for (size_t kc : kcs) {
            for (size_t M : {size_t(1), size_t(17), size_t(33)}) {
                for (size_t nr : kNs) {
                    if (!affordable(M, nr, kc)) continue;
                    const size_t K = kc + 32 + 3, n0 = 2, N = n0 + nr + 1, ldy = nr + 4;
                    std::vector<int8_t> q(N * K);
                    std::vector<float> sc(N);
                    for (auto& v : q) v = static_cast<int8_t>(d == Data::exact ? rng.irange(-8, 8) : rng.irange(-127, 127));
                    for (auto& v : sc) v = d == Data::exact ? 0.5f : rng.uni(0.001f, 0.02f);
                    qk::WeightView w{};
                    w.fmt = WFormat::i8;
                    w.data = q.data();
                    w.row_bytes = K;
                    w.scales = sc.data();
                    w.group = K;
                    std::vector<float> pd(nr * kc);  // the decoded block, for the checker
                    for (size_t j = 0; j < nr; ++j)
                        for (size_t k = 0; k < kc; ++k) pd[j * kc + k] = float(q[(n0 + j) * K + 32 + k]) * sc[n0 + j];
                    const std::vector<float> x = make_x(M, K, K, d, rng);
                    const SplitBuf sb(ctx, x.data(), K, M, K);
                    std::vector<float> y(M * ldy, kSentinel);
                    ctx.k->gemm_panel_dq_i8(sb.xs, 0, M, 32, w, n0, nr, kc, y.data(), ldy, false);
                    check_y(ctx, "panel_dq_i8", y.data(), ldy, x.data() + 32, K, pd.data(), nullptr, M, nr, kc, d, slack);
                    std::vector<float> y2 = y;
                    ctx.k->gemm_panel_dq_i8(sb.xs, 0, M, 32, w, n0, nr, kc, y2.data(), ldy, true);
                    for (size_t i = 0; i < y.size(); ++i)
                        QKT_CHECK(y2[i] == (y[i] == kSentinel ? kSentinel : 2.0f * y[i]), "i8 accumulate i=%zu kc=%zu", i, kc);
                    for (size_t m = 0; m < M; m += 5) {
                        std::vector<float> y1(ldy, kSentinel);
                        const SplitBuf one(ctx, x.data() + m * K, K, 1, K);
                        ctx.k->gemm_panel_dq_i8(one.xs, 0, 1, 32, w, n0, nr, kc, y1.data(), ldy, false);
                        QKT_CHECK(std::memcmp(y1.data(), y.data() + m * ldy, ldy * sizeof(float)) == 0,
                                  "i8: row %zu alone differs from the same row of M = %zu", m, M);
                    }
                }
            }
        }
    }
    // int4 straight into the split tiles (gemm_panel_dq_i4): bit for bit the
    // decoded panel through gemm_panel_dq, for a block of rows [n0, n0 + nr)
    // and of values [k0, k0 + kc) (several groups, a group cut by the block
    // in chunked mode, the K tail of the last line).
    for (const WSpec& sp : kSpecs) {
        if (sp.fmt != WFormat::i4) continue;
        for (size_t K : {size_t(64), size_t(384), size_t(4096), size_t(70)}) {
            for (size_t G : groups_for(sp, K)) {
                if (G % 32) continue;
                const size_t N = 37, n0 = 3, nr = 33, gs = K / G;
                const TestW w = make_w(sp, N, K, G, Data::random, rng);
                for (const auto& blk : {std::pair<size_t, size_t>{0, K}, std::pair<size_t, size_t>{32, K - 32},
                                        std::pair<size_t, size_t>{G >= 64 ? 32 : 0, G >= 64 ? G - 32 : G}}) {
                    const size_t k0 = blk.first, kc = blk.second;
                    if (k0 % G + kc > G && kc % G) continue;  // a block is whole groups, or inside one group
                    for (size_t M : {size_t(1), size_t(17)}) {
                        const std::vector<float> x = make_x(M, K, K, Data::random, rng);
                        const SplitBuf sb(ctx, x.data(), K, M, K);
                        std::vector<float> p(nr * kc), y1(M * nr, kSentinel), y2(M * nr, kSentinel);
                        if (kc % G == 0 && k0 % G == 0) {
                            ctx.k->dequant_panel(w.view(), n0, nr, k0, kc, p.data(), kc);
                        } else {  // inside one group: decode the whole rows, take the block
                            std::vector<float> full(N * K);
                            ctx.k->dequant_panel(w.view(), 0, N, 0, K, full.data(), K);
                            for (size_t j = 0; j < nr; ++j)
                                std::memcpy(p.data() + j * kc, full.data() + (n0 + j) * K + k0, kc * sizeof(float));
                        }
                        ctx.k->gemm_panel_dq(sb.xs, 0, M, k0, p.data(), kc, nr, kc, y1.data(), nr, false);
                        ctx.k->gemm_panel_dq_i4(sb.xs, 0, M, k0, w.view(), gs, n0, nr, kc, y2.data(), nr, false);
                        QKT_CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0,
                                  "%s K=%zu G=%zu k0=%zu kc=%zu M=%zu: int4 tiles differ from the decoded panel's",
                                  sp.name, K, G, k0, kc, M);
                    }
                }
            }
        }
    }
    // Non-finite and out-of-bf16-range values, one row against 3 columns.
    {
        const size_t kc = 40, nr = 3;
        std::vector<float> x(kc, 0.5f), p(nr * kc, 0.25f), y(nr);
        p[1 * kc + 7] = -0.25f;
        const auto run = [&]() {
            const SplitBuf sb(ctx, x.data(), kc, 1, kc);
            ctx.k->gemm_panel_dq(sb.xs, 0, 1, 0, p.data(), kc, nr, kc, y.data(), nr, false);
        };
        x[5] = std::numeric_limits<float>::infinity();
        run();
        QKT_CHECK(std::isinf(y[0]) && y[0] > 0 && std::isinf(y[2]) && y[2] > 0, "x = inf: %g %g", y[0], y[2]);
        x[5] = std::numeric_limits<float>::quiet_NaN();
        run();
        QKT_CHECK(std::isnan(y[0]) && std::isnan(y[1]) && std::isnan(y[2]), "x = NaN: %g %g %g", y[0], y[1], y[2]);
        x[5] = 0.5f;
        p[2 * kc + 9] = -std::numeric_limits<float>::infinity();
        run();
        QKT_CHECK(std::isinf(y[2]) && y[2] < 0 && std::isfinite(y[0]), "p = -inf: %g %g", y[0], y[2]);
        p[2 * kc + 9] = 0.25f;
        // beyond the largest finite bf16 (~3.3895e38), below FLT_MAX
        x.assign(kc, 0.0f);
        x[3] = 3.4e38f;
        run();
        const double want = 3.4e38 * 0.25;
        QKT_CHECK(std::fabs(y[0] - want) <= (slack + 1e-6) * want, "x = 3.4e38: %g want %g", y[0], want);
    }
}

// ---- the driver -------------------------------------------------------------
QKT_TEST(gemm_driver) {
    Rng rng(4);
    qk::GemmBlocking small = qk::default_gemm_blocking(WFormat::f32);
    small.gemv_max_m = 2;
    small.gemv_nb = 5;
    small.nb = 7;
    small.kc = 40;  // several K blocks; chunked groups when G > 40
    small.mb = 3;
    for (Data d : {Data::random, Data::exact}) {
        for (const WSpec& sp : kSpecs) {
            for (size_t K : kKs) {
                for (size_t G : groups_for(sp, K)) {
                    for (size_t M : kMs) {
                        for (size_t N : kNs) {
                            if (!affordable(M, N, K)) continue;
                            if (rng.irange(0, 2) == 0 && K > 9) continue;  // thin out the big grid
                            const TestW w = make_w(sp, N, K, G, d, rng);
                            const std::vector<float> wd = dequant_all(ctx, w);
                            const size_t ldx = K + 1, ldy = N + 3;
                            const std::vector<float> x = make_x(M, K, ldx, d, rng);
                            const std::vector<float> bias = make_bias(N, d, rng);
                            const bool use_bias = rng.irange(0, 1) == 1;
                            const Ref64 r = ref64(x.data(), ldx, wd.data(), use_bias ? bias.data() : nullptr, M, N, K);
                            for (const qk::GemmBlocking* blk : {static_cast<const qk::GemmBlocking*>(nullptr),
                                                                static_cast<const qk::GemmBlocking*>(&small)}) {
                                std::vector<float> y(M * ldy, kSentinel);
                                const qk::GemmArgs a = args_for(x, ldx, M, N, K, w, use_bias ? bias.data() : nullptr, y, ldy);
                                qk::gemm(*ctx.k, a, blk);
                                check_rows(ctx, sp.name, y.data(), ldy, r, 0, M, 0, N, d, qkt::panel_dq_slack(*ctx.k, sp.fmt));
                                for (size_t m = 0; m < M; ++m)
                                    for (size_t n = N; n < ldy; ++n)
                                        QKT_CHECK(y[m * ldy + n] == kSentinel, "%s: padding overwritten", sp.name);
                            }
                        }
                    }
                }
            }
        }
    }
}

// Prefill shapes through the driver's default blocking, which the grid above
// (affordable() caps M * N * K) reaches only at small K: f32 read in place
// with K blocks chosen from M (one block at M <= 16, several at M = 128),
// M = 16 exactly and every tail of the kernels' row and column tiles.
QKT_TEST(gemm_prefill_shapes) {
    Rng rng(7);
    struct Shape { size_t M, N, K; };
    const Shape shapes[] = {{5, 37, 1100}, {16, 37, 2050}, {16, 260, 300}, {29, 23, 700},
                            {64, 13, 1024}, {65, 11, 900}, {128, 19, 2304}, {130, 7, 1500}};
    for (const WSpec& sp : {kSpecs[0], kSpecs[7]}) {  // f32 (in place), i4 per group (decoded panel)
        for (const Shape& s : shapes) {
            const std::vector<size_t> gs = groups_for(sp, s.K);
            if (gs.empty()) continue;
            const TestW w = make_w(sp, s.N, s.K, gs.back(), Data::random, rng);
            const std::vector<float> wd = dequant_all(ctx, w);
            const size_t ldx = s.K + 3, ldy = s.N + 2;
            const std::vector<float> x = make_x(s.M, s.K, ldx, Data::random, rng);
            const std::vector<float> bias = make_bias(s.N, Data::random, rng);
            const Ref64 r = ref64(x.data(), ldx, wd.data(), bias.data(), s.M, s.N, s.K);
            std::vector<float> y(s.M * ldy, kSentinel);
            qk::gemm(*ctx.k, args_for(x, ldx, s.M, s.N, s.K, w, bias.data(), y, ldy));
            check_rows(ctx, sp.name, y.data(), ldy, r, 0, s.M, 0, s.N, Data::random, qkt::panel_dq_slack(*ctx.k, sp.fmt));
            for (size_t m = 0; m < s.M; ++m)
                for (size_t n = s.N; n < ldy; ++n)
                    QKT_CHECK(y[m * ldy + n] == kSentinel, "%s: padding overwritten", sp.name);
        }
    }
}

// Edge values: zeros, huge, tiny, subnormal, all negative; and degenerate
// shapes M = 0, N = 0, K = 0.
QKT_TEST(gemm_edges) {
    Rng rng(5);
    struct Edge { const char* name; float xmag; float wmag; bool negative; bool zero; };
    // Products stay below ~1e34 (no overflow even summed over 4097 terms).
    const Edge edges[] = {
        {"zeros", 1.0f, 1.0f, false, true},    {"huge", 1e29f, 1e3f, false, false},
        {"tiny", 1e-30f, 1e-6f, false, false}, {"subnormal", 1e-40f, 1.0f, false, false},
        {"negative", 1.0f, 1.0f, true, false},
    };
    for (const Edge& e : edges) {
        for (const WSpec& sp : kSpecs) {
            for (size_t K : {size_t(33), size_t(4096)}) {
                for (size_t G : groups_for(sp, K)) {
                    for (size_t M : {size_t(1), size_t(3), size_t(17)}) {
                        const size_t N = 7;
                        TestW w = make_w(sp, N, K, G, Data::random, rng, e.wmag);
                        const std::vector<float> wd = dequant_all(ctx, w);
                        std::vector<float> x = make_x(M, K, K, Data::random, rng);
                        for (float& v : x) {
                            if (e.zero) v = 0.0f;
                            else if (e.negative) v = -std::fabs(v) - 0.01f;
                            else v *= e.xmag;
                        }
                        std::vector<float> bias = make_bias(N, Data::random, rng);
                        std::vector<float> y(M * N, kSentinel);
                        const qk::GemmArgs a = args_for(x, K, M, N, K, w, bias.data(), y, N);
                        qk::gemm(*ctx.k, a);
                        check_y(ctx, e.name, y.data(), N, x.data(), K, wd.data(), bias.data(), M, N, K, Data::random,
                                qkt::panel_dq_slack(*ctx.k, sp.fmt));
                        if (e.zero)
                            for (size_t i = 0; i < M * N; ++i)
                                QKT_CHECK(y[i] == bias[i % N], "zeros: y must be the bias");
                    }
                }
            }
        }
    }
    // Degenerate shapes.
    const WSpec& sp = kSpecs[5];  // i8 per group
    const TestW w = make_w(sp, 3, 8, 2, Data::random, rng);
    std::vector<float> x = make_x(4, 8, 8, Data::random, rng);
    std::vector<float> bias = make_bias(3, Data::random, rng);
    std::vector<float> y(4 * 3, kSentinel);
    qk::GemmArgs a = args_for(x, 8, 0, 3, 8, w, bias.data(), y, 3);
    qk::gemm(*ctx.k, a);
    a.M = 4;
    a.N = 0;
    qk::gemm(*ctx.k, a);
    for (float v : y) QKT_CHECK(v == kSentinel, "M = 0 / N = 0 must not write");
    a.N = 3;
    a.K = 0;
    for (size_t M : {size_t(1), size_t(4)}) {
        a.M = M;
        qk::gemm(*ctx.k, a);
        for (size_t i = 0; i < M * 3; ++i) QKT_CHECK(y[i] == bias[i % 3], "K = 0: y = bias");
        a.bias = nullptr;
        qk::gemm(*ctx.k, a);
        for (size_t i = 0; i < M * 3; ++i) QKT_CHECK(y[i] == 0.0f, "K = 0, no bias: y = 0");
        a.bias = bias.data();
    }
}

// The driver's result does not depend on the thread count.
struct ThreadsGuard {  // restores the pool size even when a check throws
    size_t saved = qk::threads();
    ~ThreadsGuard() { qk::set_threads(saved); }
};

QKT_TEST(gemm_threads) {
    Rng rng(6);
    const size_t saved = qk::threads();
    {
        ThreadsGuard guard;
        struct Shape { size_t M, N, K; };
        // gemv path (M <= 4) and panel path, ragged N blocks, chunked groups.
        const Shape shapes[] = {{1, 257, 512}, {3, 130, 4097}, {33, 200, 640}, {130, 65, 1024}};
        for (const WSpec& sp : kSpecs) {
            for (const Shape& s : shapes) {
                const std::vector<size_t> gs = groups_for(sp, s.K);
                if (gs.empty()) continue;
                const TestW w = make_w(sp, s.N, s.K, gs.back(), Data::random, rng);
                const std::vector<float> x = make_x(s.M, s.K, s.K, Data::random, rng);
                const std::vector<float> bias = make_bias(s.N, Data::random, rng);
                std::vector<float> y1(s.M * s.N), yt(s.M * s.N);
                qk::set_threads(1);
                qk::gemm(*ctx.k, args_for(x, s.K, s.M, s.N, s.K, w, bias.data(), y1, s.N));
                for (size_t t : {size_t(2), size_t(7)}) {
                    qk::set_threads(t);
                    qk::gemm(*ctx.k, args_for(x, s.K, s.M, s.N, s.K, w, bias.data(), yt, s.N));
                    QKT_CHECK(std::memcmp(y1.data(), yt.data(), y1.size() * sizeof(float)) == 0,
                              "%s M=%zu N=%zu K=%zu: %zu threads differ from 1", sp.name, s.M, s.N, s.K, t);
                }
            }
        }
    }
    QKT_CHECK(qk::threads() == saved, "thread count restored");
}

}  // namespace
