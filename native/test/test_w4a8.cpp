// Tests of the W4A8 kernel (Kernels::gemm_w4a8) and driver (ops/w4a8_ops.h),
// run once per ISA table (ctx.k) against the scalar reference (ctx.ref).
//
//  - Activation quantization: per block of 32 (the last one shorter), the
//    scale and codes of qk::choose_params / round-half-even, the chunked
//    layout, the lane scales and the per-group sums tg; NaN/Inf reported by
//    flat index.
//  - Kernel: every ISA against the ref on the same operands, and both
//    against a float64 evaluation of the spec's sum, for symmetric and
//    asymmetric weights, group sizes the SIMD kernels take (32, 64, 128,
//    256, per channel) and the ones they leave to the ref (2, 4, 6, 96),
//    odd M and N, column sub-ranges, K tails of 32/64/96 values, edge codes.
//    The ref is exact up to the float rounding of its own sum; a SIMD kernel
//    also sums lanes in another order and removes the +8 / zero-point
//    offset in float, so both are bounded by c * 2^-24 * P with
//    P = sum |terms| (plus the offset terms for the SIMD kernels).
//  - Driver: bit-identical for every thread count; within the activation
//    rounding bound of a float64 x . W_deq^T product.
//  - gemm_w4a8_rows (lanes over weight rows on AVX-512 and AVX2): the same
//    checks, plus its 16-row and 8-row tiles; bits that do not depend on M,
//    on the rows of X computed together or on the column range, and equal
//    to gemm_w4a8's (the driver switches between them by M), also checked
//    directly over tails, group sizes and extreme codes.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../kernels/kernels.h"
#include "../ops/quantize_ops.h"
#include "../ops/w4a8_ops.h"
#include "../threadpool.h"
#include "harness.h"

namespace {

struct Rng : qkt::Rng {
    explicit Rng(uint64_t seed) : qkt::Rng(seed, 11) {}
};

uint32_t fbits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// An int4 weight [N, K] (codes in natural order, packed), group G.
struct Weight {
    size_t N, K, G;
    bool asym;
    std::vector<int8_t> q;      // signed value (sym) or u (asym), [N, K]
    std::vector<uint8_t> packed;
    std::vector<float> scales;  // [N, K/G]
    std::vector<uint8_t> zps;   // [N, K/G] (asym)
    qk::WeightView view() const {
        qk::WeightView w;
        w.fmt = qk::WFormat::i4;
        w.data = packed.data();
        w.row_bytes = K / 2;
        w.scales = scales.data();
        w.zps = asym ? zps.data() : nullptr;
        w.group = G;
        return w;
    }
    double deq(size_t n, size_t k) const {
        const double s = scales[n * (K / G) + k / G];
        return asym ? s * (q[n * K + k] - int(zps[n * (K / G) + k / G])) : s * q[n * K + k];
    }
};

// mode 0 random; 1 all min code; 2 all max code; 3 alternating.
Weight make_weight(size_t N, size_t K, size_t G, bool asym, int mode, Rng& rng) {
    Weight w{N, K, G, asym, {}, {}, {}, {}};
    const int lo = asym ? 0 : -8, hi = asym ? 15 : 7;
    w.q.resize(N * K);
    for (size_t i = 0; i < N * K; ++i) {
        switch (mode) {
            case 1: w.q[i] = int8_t(lo); break;
            case 2: w.q[i] = int8_t(hi); break;
            case 3: w.q[i] = int8_t(i % 2 ? hi : lo); break;
            default: w.q[i] = int8_t(rng.irange(lo, hi)); break;
        }
    }
    w.packed.assign(N * K / 2 + 64, 0);  // 64 bytes of slack: SIMD loads of the last row are masked
    w.packed.resize(N * K / 2);
    for (size_t n = 0; n < N; ++n)
        for (size_t k = 0; k < K; k += 2)
            w.packed[n * K / 2 + k / 2] = uint8_t((w.q[n * K + k] & 0x0F) | ((w.q[n * K + k + 1] & 0x0F) << 4));
    w.scales.resize(N * (K / G));
    for (float& s : w.scales) s = rng.uni(0.001f, 0.05f);
    if (asym) {
        w.zps.resize(N * (K / G));
        for (uint8_t& z : w.zps) z = uint8_t(mode == 0 ? rng.irange(0, 15) : (mode == 1 ? 15 : 0));
    }
    return w;
}

std::vector<float> make_x(size_t M, size_t K, int mode, Rng& rng) {
    std::vector<float> x(M * K);
    for (size_t i = 0; i < M * K; ++i) {
        switch (mode) {
            case 1: x[i] = (i / 32) % 3 == 1 ? 0.0f : rng.uni(-2.0f, 2.0f); break;  // zero blocks
            case 2: x[i] = (i % 7 == 0) ? 1e4f : rng.uni(-1e-3f, 1e-3f); break;      // one large value per block
            default: x[i] = rng.uni(-3.0f, 3.0f); break;
        }
    }
    return x;
}

qk::W4A8Args args_for(const qk::W4A8Acts& acts, const Weight& w, size_t M, const float* bias, float* y) {
    qk::W4A8Args a;
    a.xc = acts.xc.data(); a.ldx = acts.ldx;
    a.sx = acts.sx.data(); a.ldsx = acts.ldsx;
    a.sxl = acts.sxl.data(); a.ldsxl = acts.ldsxl;
    a.tg = acts.tg.data(); a.ldtg = acts.ldtg;
    a.M = M; a.N = w.N; a.K = w.K;
    a.w = w.view();
    a.bias = bias;
    a.y = y; a.ldy = w.N;
    return a;
}

// xq[m, k] back from the chunked layout.
int xq_at(const qk::W4A8Acts& a, size_t m, size_t k) {
    const size_t r = k % 128;
    return a.xc[m * a.ldx + 128 * (k / 128) + (r % 2) * 64 + r / 2];
}

// Which kernel of the table: gemm_w4a8, or gemm_w4a8_rows (lanes over
// weight rows on AVX-512 and AVX2; the same function elsewhere).
enum class Kern { main, rows };

// Whether the SIMD kernels run (K, G) with SIMD code, not the ref.
bool simd_path(size_t K, size_t G) { return K % G == 0 && (G == 32 || G == 64 || G % 128 == 0); }

// Check one kernel of ctx.k and the ref on one problem, over [n0, n1).
void check_kernel(qkt::Ctx& ctx, const Weight& w, size_t M, int xmode, bool with_bias, size_t n0, size_t n1,
                  Rng& rng, Kern kern = Kern::main) {
    const size_t N = w.N, K = w.K, G = w.G;
    const std::vector<float> x = make_x(M, K, xmode, rng);
    qk::W4A8Acts acts;
    QKT_CHECK(qk::w4a8_quantize_rows(*ctx.k, x.data(), M, K, G, acts) == SIZE_MAX, "finite x");
    std::vector<float> bias(N);
    for (float& b : bias) b = rng.uni(-1.0f, 1.0f);
    const float* bp = with_bias ? bias.data() : nullptr;
    std::vector<float> y(M * N, 777.0f), yr(M * N, 777.0f);
    (kern == Kern::rows ? ctx.k->gemm_w4a8_rows : ctx.k->gemm_w4a8)(args_for(acts, w, M, bp, y.data()), n0, n1);
    ctx.ref->gemm_w4a8(args_for(acts, w, M, bp, yr.data()), n0, n1);
    const bool simd = simd_path(K, G);
    for (size_t m = 0; m < M; ++m)
        for (size_t n = 0; n < N; ++n) {
            const float got = y[m * N + n], want = yr[m * N + n];
            if (n < n0 || n >= n1) {
                QKT_CHECK(got == 777.0f && want == 777.0f, "column %zu outside [%zu, %zu) written", n, n0, n1);
                continue;
            }
            // float64 value of the spec's sum, and the scale of its roundings.
            double y64 = with_bias ? bias[n] : 0.0, P = with_bias ? std::fabs(bias[n]) : 0.0, Poff = 0.0;
            for (size_t k = 0; k < K; ++k) {
                const double xv = double(acts.sx[m * acts.ldsx + k / 32]) * xq_at(acts, m, k);
                const double t = w.deq(n, k) * xv;
                y64 += t;
                P += std::fabs(t);
                Poff += double(w.scales[n * (K / G) + k / G]) * 16.0 * std::fabs(xv);
            }
            const double u = 1.0 / 16777216.0;
            const double tol_ref = 4.0 * u * (double(K) / 32.0 + 4.0) * P + 1e-30;
            QKT_CHECK(std::fabs(double(want) - y64) <= tol_ref, "ref m=%zu n=%zu K=%zu G=%zu: %.9g vs f64 %.9g", m, n, K, G,
                      double(want), y64);
            const double tol = simd ? 4.0 * u * (double(K) / 32.0 + 4.0) * (P + Poff) + 1e-30 : 0.0;
            if (!simd) {
                QKT_CHECK(fbits(got) == fbits(want), "%s (ref path) m=%zu n=%zu K=%zu G=%zu: %.9g vs %.9g",
                          ctx.k->name, m, n, K, G, double(got), double(want));
            } else {
                QKT_CHECK(std::fabs(double(got) - y64) <= tol, "%s m=%zu n=%zu K=%zu G=%zu asym=%d: %.9g vs f64 %.9g (tol %.3g)",
                          ctx.k->name, m, n, K, G, int(w.asym), double(got), y64, tol);
            }
        }
}

}  // namespace

QKT_TEST(w4a8_quantize_rows) {
    Rng rng(1);
    const size_t Ks[] = {2, 30, 32, 34, 96, 128, 130, 172, 256, 390};
    for (size_t K : Ks) {
        const size_t G = (K % 32 == 0) ? 32 : 2;
        const size_t M = 3;
        std::vector<float> x = make_x(M, K, 1, rng);
        x[1] = -5.5f;  // a block with a clear absmax
        qk::W4A8Acts a;
        QKT_CHECK(qk::w4a8_quantize_rows(*ctx.k, x.data(), M, K, G, a) == SIZE_MAX, "K=%zu finite", K);
        QKT_CHECK(a.ldx == 128 * ((K + 127) / 128) && a.ldsx == (K + 31) / 32 && a.ldtg == K / G, "K=%zu strides", K);
        for (size_t m = 0; m < M; ++m) {
            for (size_t b = 0; b < a.ldsx; ++b) {
                double amax = 0.0;
                for (size_t k = 32 * b; k < std::min(K, 32 * b + 32); ++k) amax = std::max(amax, std::fabs(double(x[m * K + k])));
                const float want = amax == 0.0 ? 1.0f : float(amax / 127.0);
                QKT_CHECK(a.sx[m * a.ldsx + b] == want, "K=%zu m=%zu block %zu scale %.9g vs %.9g", K, m, b,
                          double(a.sx[m * a.ldsx + b]), double(want));
            }
            for (size_t k = 0; k < a.ldx; ++k) {
                const int got = xq_at(a, m, k);
                if (k >= K) {
                    QKT_CHECK(got == 0, "K=%zu padding at %zu", K, k);
                    continue;
                }
                const float s = a.sx[m * a.ldsx + k / 32];
                const float want = std::fmin(127.0f, std::fmax(-127.0f, std::nearbyint(x[m * K + k] / s)));
                QKT_CHECK(got == int(want), "K=%zu m=%zu k=%zu code %d vs %d", K, m, k, got, int(want));
            }
            for (size_t l = 0; l < a.ldsxl; ++l) {
                const float want = 8 * l < K ? a.sx[m * a.ldsx + l / 4] : 0.0f;
                QKT_CHECK(a.sxl[m * a.ldsxl + l] == want, "K=%zu lane scale %zu", K, l);
            }
            for (size_t g = 0; g < K / G; ++g) {
                double t = 0.0, P = 0.0;
                for (size_t k = g * G; k < (g + 1) * G; ++k) {
                    const double v = double(a.sx[m * a.ldsx + k / 32]) * xq_at(a, m, k);
                    t += v;
                    P += std::fabs(v);
                }
                QKT_CHECK(std::fabs(a.tg[m * a.ldtg + g] - t) <= 1e-6 * P + 1e-30, "K=%zu tg[%zu]", K, g);
            }
        }
    }
    // NaN / Inf: the flat index of the first one.
    std::vector<float> x(2 * 64, 0.5f);
    x[64 + 40] = NAN;
    x[64 + 50] = INFINITY;
    qk::W4A8Acts a;
    QKT_CHECK(qk::w4a8_quantize_rows(*ctx.k, x.data(), 2, 64, 32, a) == 104, "NaN index");
    x[104] = 0.0f;
    QKT_CHECK(qk::w4a8_quantize_rows(*ctx.k, x.data(), 2, 64, 32, a) == 114, "Inf index");
}

QKT_TEST(w4a8_kernel_shapes) {
    Rng rng(2);
    struct Shape { size_t K, G; };
    const Shape shapes[] = {{32, 32},  {64, 32},  {96, 32},   {128, 32},  {160, 32},  {224, 32}, {480, 32},
                            {64, 64},  {192, 64}, {320, 64},  {128, 128}, {384, 128}, {512, 256}, {256, 256},
                            {96, 96},  {2, 2},    {6, 2},     {172, 4},   {36, 6},    {4096, 32}, {4224, 128},
                            {160, 160}};
    const size_t Ms[] = {1, 2, 3, 4, 5, 9};
    const size_t Ns[] = {1, 3, 4, 5, 9};
    for (const Shape& sh : shapes)
        for (int asym = 0; asym < 2; ++asym)
            for (size_t M : Ms)
                for (size_t N : Ns) {
                    if (sh.K >= 4096 && (M > 2 || N > 5)) continue;
                    Weight w = make_weight(N, sh.K, sh.G, asym != 0, 0, rng);
                    check_kernel(ctx, w, M, 0, (M + N) % 2 == 0, 0, N, rng);
                    check_kernel(ctx, w, M, 0, (M + N) % 2 != 0, 0, N, rng, Kern::rows);
                }
    // The tiles: 16 weight rows (and fewer at the end; quads of 4 in the
    // row-layout kernel), 4 rows of X per pass (and 1-3 at the end).
    for (size_t N : {15, 16, 17, 33, 47})
        for (size_t M : {6, 8, 11, 16, 17}) {
            Weight w = make_weight(N, 384, N % 2 ? 64 : 128, N % 3 == 0, 0, rng);
            check_kernel(ctx, w, M, 0, M % 2 == 0, 0, N, rng, Kern::rows);
            check_kernel(ctx, w, M, 0, M % 2 != 0, 0, N, rng, Kern::main);
        }
    // Column sub-ranges.
    Weight w = make_weight(13, 256, 32, false, 0, rng);
    for (Kern kern : {Kern::main, Kern::rows}) {
        check_kernel(ctx, w, 3, 0, true, 2, 11, rng, kern);
        check_kernel(ctx, w, 5, 0, false, 5, 6, rng, kern);
    }
    Weight w2 = make_weight(70, 128, 32, true, 0, rng);
    check_kernel(ctx, w2, 9, 0, true, 3, 69, rng, Kern::rows);
}

QKT_TEST(w4a8_kernel_edges) {
    Rng rng(3);
    const size_t Ks[] = {96, 128, 4096};
    for (size_t K : Ks)
        for (int asym = 0; asym < 2; ++asym)
            for (int wmode = 1; wmode <= 3; ++wmode)
                for (int xmode = 0; xmode <= 2; ++xmode) {
                    Weight w = make_weight(5, K, K == 96 ? 32 : 64, asym != 0, wmode, rng);
                    check_kernel(ctx, w, 2, xmode, true, 0, 5, rng);
                    check_kernel(ctx, w, 6, xmode, false, 0, 5, rng, Kern::rows);
                }
}

QKT_TEST(w4a8_driver) {
    Rng rng(4);
    const size_t before = qk::threads();
    struct Case { size_t M, N, K, G; bool asym; };
    const Case cases[] = {{1, 67, 256, 32, false}, {3, 33, 384, 128, true}, {7, 130, 192, 64, false},
                          {2, 9, 172, 4, true},    {17, 40, 512, 512, false}};
    for (const Case& c : cases) {
        Weight w = make_weight(c.N, c.K, c.G, c.asym, 0, rng);
        const std::vector<float> x = make_x(c.M, c.K, 0, rng);
        std::vector<float> bias(c.N);
        for (float& b : bias) b = rng.uni(-1.0f, 1.0f);
        std::vector<float> y1;
        for (size_t t : {size_t(1), size_t(2), size_t(3)}) {
            qk::set_threads(t);
            std::vector<float> y(c.M * c.N, 0.0f);
            QKT_CHECK(qk::gemm_w4a8(*ctx.k, w.view(), c.N, c.K, x.data(), c.M, bias.data(), y.data()) == SIZE_MAX, "finite");
            if (t == 1) {
                y1 = y;
                // Against x . W_deq^T in float64: the activation rounding is at
                // most half a step (sx / 2) per value.
                for (size_t m = 0; m < c.M; ++m)
                    for (size_t n = 0; n < c.N; ++n) {
                        double ye = bias[n], bound = 1e-5;
                        for (size_t k = 0; k < c.K; ++k) {
                            const double wd = w.deq(n, k);
                            ye += wd * double(x[m * c.K + k]);
                            double amax = 0.0;
                            const size_t b0 = k / 32 * 32;
                            for (size_t j = b0; j < std::min(c.K, b0 + 32); ++j) amax = std::max(amax, std::fabs(double(x[m * c.K + j])));
                            bound += std::fabs(wd) * (amax / 127.0) * 0.5 * 1.0001;
                        }
                        QKT_CHECK(std::fabs(double(y[m * c.N + n]) - ye) <= bound, "M=%zu N=%zu K=%zu m=%zu n=%zu: %.7g vs %.7g (bound %.3g)",
                                  c.M, c.N, c.K, m, n, double(y[m * c.N + n]), ye, bound);
                    }
            } else {
                for (size_t i = 0; i < y.size(); ++i)
                    QKT_CHECK(fbits(y[i]) == fbits(y1[i]), "threads=%zu changed y[%zu]", t, i);
            }
        }
    }
    qk::set_threads(before);
    // K = 0: bias only. NaN: reported.
    {
        Weight w = make_weight(3, 64, 32, false, 0, rng);
        std::vector<float> x(2 * 64, 1.0f), y(6);
        x[70] = NAN;
        QKT_CHECK(qk::gemm_w4a8(*ctx.k, w.view(), 3, 64, x.data(), 2, nullptr, y.data()) == 70, "NaN index");
    }
}

// gemm_w4a8_rows: the bits of row m do not depend on M, on which rows of X
// share its pass, or on the column range [n0, n1) of the call; gemm_w4a8
// gives the same bits (it follows the same per-output sequence), and so does
// the driver, which picks one of the two by M, at every thread count.
QKT_TEST(w4a8_rows_invariant) {
    Rng rng(5);
    struct Case { size_t N, K, G; bool asym; };
    const Case cases[] = {{37, 256, 32, false}, {50, 384, 128, true}, {16, 192, 64, false}, {21, 4096, 32, true},
                          {19, 288, 96, false}};
    const size_t before = qk::threads();
    for (const Case& c : cases) {
        const size_t Mall = 19;
        Weight w = make_weight(c.N, c.K, c.G, c.asym, 0, rng);
        const std::vector<float> x = make_x(Mall, c.K, 0, rng);
        std::vector<float> bias(c.N);
        for (float& b : bias) b = rng.uni(-1.0f, 1.0f);
        qk::W4A8Acts acts;
        QKT_CHECK(qk::w4a8_quantize_rows(*ctx.k, x.data(), Mall, c.K, c.G, acts) == SIZE_MAX, "finite");
        std::vector<float> yall(Mall * c.N);
        ctx.k->gemm_w4a8_rows(args_for(acts, w, Mall, bias.data(), yall.data()), 0, c.N);
        for (size_t M : {1, 2, 3, 4, 5, 8, 9, 16}) {
            for (size_t m0 : {size_t(0), size_t(3)}) {
                // rows [m0, m0 + M) alone, the columns in two calls split at an odd n
                qk::W4A8Acts sub;
                QKT_CHECK(qk::w4a8_quantize_rows(*ctx.k, x.data() + m0 * c.K, M, c.K, c.G, sub) == SIZE_MAX, "finite");
                std::vector<float> y(M * c.N, 0.0f);
                const size_t split = c.N / 2 | 1;
                ctx.k->gemm_w4a8_rows(args_for(sub, w, M, bias.data(), y.data()), 0, split);
                ctx.k->gemm_w4a8_rows(args_for(sub, w, M, bias.data(), y.data()), split, c.N);
                for (size_t i = 0; i < M * c.N; ++i)
                    QKT_CHECK(fbits(y[i]) == fbits(yall[m0 * c.N + i]), "%s N=%zu K=%zu G=%zu M=%zu m0=%zu: y[%zu] %.9g vs %.9g",
                              ctx.k->name, c.N, c.K, c.G, M, m0, i, double(y[i]), double(yall[m0 * c.N + i]));
                // gemm_w4a8 on the same rows, and the driver (which picks
                // either by M), 1 and 2 threads
                std::vector<float> ym(M * c.N, 0.0f);
                ctx.k->gemm_w4a8(args_for(sub, w, M, bias.data(), ym.data()), 0, c.N);
                for (size_t i = 0; i < M * c.N; ++i)
                    QKT_CHECK(fbits(ym[i]) == fbits(yall[m0 * c.N + i]), "%s gemm_w4a8 N=%zu K=%zu G=%zu M=%zu m0=%zu: y[%zu] %.9g vs %.9g",
                              ctx.k->name, c.N, c.K, c.G, M, m0, i, double(ym[i]), double(yall[m0 * c.N + i]));
                for (size_t t : {size_t(1), size_t(2)}) {
                    qk::set_threads(t);
                    std::vector<float> yd(M * c.N, 0.0f);
                    QKT_CHECK(qk::gemm_w4a8(*ctx.k, w.view(), c.N, c.K, x.data() + m0 * c.K, M, bias.data(), yd.data()) ==
                                  SIZE_MAX, "finite");
                    for (size_t i = 0; i < M * c.N; ++i)
                        QKT_CHECK(fbits(yd[i]) == fbits(yall[m0 * c.N + i]), "%s driver threads=%zu M=%zu m0=%zu: y[%zu]",
                                  ctx.k->name, t, M, m0, i);
                }
            }
        }
    }
    qk::set_threads(before);
}

// gemm_w4a8_rows against gemm_w4a8 directly, bit for bit, over the cases
// that exercise the rows kernels' edges (AVX2: 8-row panels, chains one at a
// time, 1-4 rows of X per pass; AVX-512: 16-row panels): N % 8 and N % 16
// tails, column ranges starting mid-panel, K tails of 1-3 blocks, every
// group size the SIMD kernels take (32, 64, multiples of 128, one group per
// row; K past the AVX2 kernel's 1024-value panel slices, with a group
// across a slice boundary; 250-330 rows of X), symmetric and asymmetric,
// with and without bias, and the extreme codes against activations of +-127
// everywhere (the largest int16 block sums of the AVX2 kernels: 8 x 3810
// per lane).
QKT_TEST(w4a8_rows_equal_main) {
    Rng rng(6);
    struct Shape { size_t K, G; };
    const Shape shapes[] = {{32, 32},   {64, 32},   {96, 32},   {160, 32},  {224, 32},  {4128, 32}, {64, 64},
                            {192, 64},  {320, 64},  {128, 128}, {384, 128}, {768, 128}, {256, 256}, {512, 256},
                            {384, 384}, {768, 384}, {640, 640}, {1280, 256}, {2304, 384}};
    const size_t Ms[] = {1, 3, 4, 5, 8, 13, 17, 40};  // 17, 40: the AMX kernel, partial blocks of 16 rows
    const size_t Ns[] = {1, 7, 8, 9, 23};
    auto compare = [&](const Weight& w, const std::vector<float>& x, size_t M, bool with_bias, size_t n0, size_t n1) {
        qk::W4A8Acts acts;
        QKT_CHECK(qk::w4a8_quantize_rows(*ctx.k, x.data(), M, w.K, w.G, acts) == SIZE_MAX, "finite x");
        std::vector<float> bias(w.N);
        for (float& b : bias) b = rng.uni(-1.0f, 1.0f);
        const float* bp = with_bias ? bias.data() : nullptr;
        std::vector<float> yr(M * w.N, 777.0f), ym(M * w.N, 777.0f);
        ctx.k->gemm_w4a8_rows(args_for(acts, w, M, bp, yr.data()), n0, n1);
        ctx.k->gemm_w4a8(args_for(acts, w, M, bp, ym.data()), n0, n1);
        for (size_t i = 0; i < M * w.N; ++i)
            QKT_CHECK(fbits(yr[i]) == fbits(ym[i]), "%s rows vs main M=%zu N=%zu K=%zu G=%zu asym=%d bias=%d [%zu, %zu): y[%zu] %.9g vs %.9g",
                      ctx.k->name, M, w.N, w.K, w.G, int(w.asym), int(with_bias), n0, n1, i, double(yr[i]), double(ym[i]));
    };
    int iter = 0;
    for (const Shape& sh : shapes)
        for (int asym = 0; asym < 2; ++asym)
            for (size_t N : Ns)
                for (size_t M : Ms) {
                    if (sh.K > 1024 && (N > 9 || M > 5)) continue;
                    ++iter;
                    Weight w = make_weight(N, sh.K, sh.G, asym != 0, 0, rng);
                    const std::vector<float> x = make_x(M, sh.K, iter % 3, rng);
                    compare(w, x, M, iter % 2 == 0, 0, N);
                    if (N > 2) compare(w, x, M, iter % 2 != 0, 1, N - 1);  // a range starting mid-panel
                }
    // Many rows of X, on both sides of the AVX2 kernel's switch of loop
    // order (slices of K outside the 8-row panels from M K = 1.25 MiB),
    // with N % 8 tails, a range starting mid-panel and groups across slices.
    {
        Weight w = make_weight(19, 4128, 32, false, 0, rng);
        const std::vector<float> x = make_x(330, 4128, 0, rng);
        compare(w, x, 330, true, 0, 19);
        compare(w, x, 250, false, 5, 19);
        compare(w, x, 320, false, 5, 19);
        Weight w2 = make_weight(11, 4224, 384, true, 0, rng);
        const std::vector<float> x2 = make_x(320, 4224, 1, rng);
        compare(w2, x2, 320, true, 0, 11);
    }
    // Extreme codes x activations of +-127 everywhere.
    for (size_t K : {96, 256})
        for (int asym = 0; asym < 2; ++asym)
            for (int wmode = 1; wmode <= 3; ++wmode)
                for (float xv : {1.0f, -1.0f}) {
                    Weight w = make_weight(9, K, 32, asym != 0, wmode, rng);
                    const std::vector<float> x(6 * K, xv);
                    compare(w, x, 6, true, 0, 9);
                    compare(w, x, 2, false, 0, 9);
                }
}

// The chunked activation layout and block sums (Kernels::w4a8_chunk_x):
// each table's equals the ref's, which is checked against the layout's
// definition; codes over the whole int8 range, -128 included.
QKT_TEST(w4a8_chunk_x) {
    Rng rng(11);
    for (size_t chunks : {size_t(0), size_t(1), size_t(2), size_t(5)})
        for (int mode = 0; mode < 3; ++mode) {
            std::vector<int8_t> q(128 * chunks + 1);
            for (auto& v : q) v = mode == 0 ? int8_t(rng.next()) : mode == 1 ? int8_t(-128) : int8_t(127);
            std::vector<int8_t> x1(128 * chunks + 1, 0x55), x2(128 * chunks + 1, 0x66);
            std::vector<int32_t> s1(4 * chunks + 1, 7), s2(4 * chunks + 1, 9);
            ctx.ref->w4a8_chunk_x(q.data(), chunks, x1.data(), s1.data());
            ctx.k->w4a8_chunk_x(q.data(), chunks, x2.data(), s2.data());
            QKT_CHECK(x1.back() == 0x55 && x2.back() == 0x66 && s1.back() == 7 && s2.back() == 9, "chunks=%zu wrote past the end", chunks);
            x1.pop_back(); x2.pop_back(); s1.pop_back(); s2.pop_back();
            QKT_CHECK(x1 == x2 && s1 == s2, "%s chunks=%zu mode=%d vs ref", ctx.k->name, chunks, mode);
            for (size_t c = 0; c < chunks; ++c) {
                for (size_t j = 0; j < 64; ++j)
                    QKT_CHECK(x1[128 * c + j] == q[128 * c + 2 * j] && x1[128 * c + 64 + j] == q[128 * c + 2 * j + 1],
                              "layout chunk %zu j %zu", c, j);
                for (size_t b = 0; b < 4; ++b) {
                    int32_t d = 0;
                    for (size_t i = 0; i < 32; ++i) d += q[128 * c + 32 * b + i];
                    QKT_CHECK(s1[4 * c + b] == d, "block sum %zu: %d vs %d", 4 * c + b, s1[4 * c + b], d);
                }
            }
        }
}

// absmax_scale is choose_params' symmetric scale of (-amax, amax).
QKT_TEST(absmax_scale_matches_choose_params) {
    Rng rng(12);
    qk::QuantSpec spec;
    spec.bits = 8;
    spec.asymmetric = false;
    spec.gran = qk::Granularity::group;
    spec.group = 32;
    std::vector<float> vals = {0.0f, 1e-45f, 1e-40f, 1e-38f, 1.0f, 127.0f, 3.4e38f};
    for (int i = 0; i < 2000; ++i) vals.push_back(std::ldexp(rng.uni(1.0f, 2.0f), rng.irange(-149, 127)));
    for (float a : vals) {
        float s = 0.0f;
        int32_t zp = 1;
        qk::choose_params(spec, -a, a, &s, &zp);
        const float t = qk::absmax_scale(a, 127);
        QKT_CHECK(s == t && zp == 0, "amax %.9g: %.9g vs %.9g", double(a), double(s), double(t));
    }
}

// gemm_w4a8_multi: each product bit for bit what gemm_w4a8 gives it alone,
// for products that share x's quantization (same group size: q/k/v widths,
// asymmetric, bias on some, an empty one) and for those it runs one by one
// (group sizes that differ; a shorter last group with G % 32 == 0), rows for
// both kernels, 1 and 2 threads; a NaN reported at its index of x.
QKT_TEST(w4a8_multi_equals_single) {
    Rng rng(9);
    struct Case { size_t K; size_t G[3]; size_t N[3]; size_t P; bool asym; };
    const Case cases[] = {{256, {32, 32, 32}, {48, 16, 16}, 3, false}, {384, {128, 128, 128}, {37, 64, 5}, 2, true},
                          {256, {32, 64, 32}, {16, 16, 9}, 3, false}, {160, {64, 64, 64}, {24, 17, 8}, 2, false},
                          {96, {32, 32, 32}, {0, 21, 8}, 3, true}};
    const size_t before = qk::threads();
    for (const Case& c : cases) {
        // Weights of ceil(K / G) whole groups, cut to K columns: when G does
        // not divide K the last group is shorter (its scale is the stored one).
        std::vector<Weight> ws;
        std::vector<std::vector<uint8_t>> cut(c.P);
        std::vector<std::vector<float>> biases(c.P);
        std::vector<qk::WeightView> views(c.P);
        for (size_t p = 0; p < c.P; ++p) {
            const size_t Kw = (c.K + c.G[p] - 1) / c.G[p] * c.G[p];
            ws.push_back(make_weight(c.N[p], Kw, c.G[p], c.asym, 0, rng));
            for (size_t n = 0; n < c.N[p]; ++n)
                cut[p].insert(cut[p].end(), ws[p].packed.begin() + n * (Kw / 2), ws[p].packed.begin() + n * (Kw / 2) + c.K / 2);
            biases[p].resize(c.N[p]);
            for (float& b : biases[p]) b = rng.uni(-1.0f, 1.0f);
            views[p] = ws[p].view();
            views[p].data = cut[p].data();
            views[p].row_bytes = c.K / 2;
        }
        for (size_t M : {size_t(1), size_t(3), size_t(17)}) {
            std::vector<float> x = make_x(M, c.K, 0, rng);
            for (size_t t : {size_t(1), size_t(2)}) {
                qk::set_threads(t);
                std::vector<qk::W4A8Product> ps(c.P);
                std::vector<std::vector<float>> ys(c.P), want(c.P);
                for (size_t p = 0; p < c.P; ++p) {
                    const float* b = p % 2 == 0 ? biases[p].data() : nullptr;
                    want[p].assign(M * c.N[p], 0.0f);
                    ys[p].assign(M * c.N[p], 777.0f);
                    QKT_CHECK(qk::gemm_w4a8(*ctx.k, views[p], c.N[p], c.K, x.data(), M, b, want[p].data()) == SIZE_MAX, "finite");
                    ps[p] = {views[p], c.N[p], b, ys[p].data()};
                }
                QKT_CHECK(qk::gemm_w4a8_multi(*ctx.k, ps.data(), c.P, c.K, x.data(), M) == SIZE_MAX, "finite");
                for (size_t p = 0; p < c.P; ++p)
                    for (size_t i = 0; i < M * c.N[p]; ++i)
                        QKT_CHECK(fbits(ys[p][i]) == fbits(want[p][i]), "%s K=%zu G=%zu M=%zu threads=%zu product %zu: y[%zu] %.9g vs %.9g",
                                  ctx.k->name, c.K, c.G[p], M, t, p, i, double(ys[p][i]), double(want[p][i]));
                x[M * c.K - 3] = NAN;
                QKT_CHECK(qk::gemm_w4a8_multi(*ctx.k, ps.data(), c.P, c.K, x.data(), M) == M * c.K - 3, "NaN index");
                x[M * c.K - 3] = 0.5f;
            }
        }
    }
    qk::set_threads(before);
}
