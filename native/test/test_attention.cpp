// Tests of causal attention (ops/attention_ops.h over Kernels::attn_rows),
// run once per ISA table.
//
//  - Bit-identical to the scalar reference table (the kernels evaluate the
//    reference's operations lane by lane).
//  - Against a float64 evaluation of softmax(q k^T scale) v on odd head
//    counts and sizes (GQA groups of 1..8; positions across several 64-key
//    blocks), with a bound derived from the f32 arithmetic: each score has
//    an error of at most hd * u * sum_i |q_i k_ji| (u = 2^-24, slack x2),
//    which moves every softmax weight by a relative factor within
//    exp(+-2 scale err); the f32 exponential (~4u), the running sums over
//    lim positions and the rescales add at most (2 lim + 16) u max|v|.
//  - Large scores (|q·k| ~ 1e3): the max subtraction keeps it finite.
//  - A row's result does not depend on the call: positions run as one
//    prompt, as single decode steps, and in uneven chunks give the same bits.
//  - Bit-identical at 1 and 3 threads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <vector>

#include "../ops/attention_ops.h"
#include "../threadpool.h"
#include "harness.h"

namespace {

struct Rng : qkt::Rng {
    explicit Rng(uint64_t seed) : qkt::Rng(seed, 11) {}
};

struct Case {
    size_t T, pos0, nh, nkv, hd;
    float scale;
    bool causal = true;
    std::vector<float> q, keys, values;  // keys row-major [n, kvDim] (the float64 model reads these)
    std::vector<float> kblk;             // the same keys in the cache's blocked layout
    qk::AttnArgs args(float* out) const {
        return {q.data(), T, pos0, kblk.data(), values.data(), nh, nkv, hd, scale, out, causal};
    }
    void block_keys() {
        const size_t kv = nkv * hd, n = keys.size() / kv;
        kblk.assign(qk::attn_key_floats(n, kv), NAN);  // unwritten slots must not matter
        for (size_t j = 0; j < n; ++j)
            for (size_t c = 0; c < kv; ++c) kblk[((j / qk::kAttnBlock) * kv + c) * qk::kAttnBlock + j % qk::kAttnBlock] = keys[j * kv + c];
    }
};

Case make_case(size_t T, size_t pos0, size_t nh, size_t nkv, size_t hd, float mag, Rng& rng) {
    Case c{T, pos0, nh, nkv, hd, 1.0f / std::sqrt(float(hd)), true, {}, {}, {}, {}};
    c.q.resize(T * nh * hd);
    const size_t n = pos0 + T + 3;  // a cache longer than needed (unread rows)
    c.keys.resize(n * nkv * hd);
    c.values.resize(n * nkv * hd);
    for (auto& v : c.q) v = rng.uni(-mag, mag);
    for (auto& v : c.keys) v = rng.uni(-mag, mag);
    for (auto& v : c.values) v = rng.uni(-2.0f, 2.0f);
    c.block_keys();
    return c;
}

void check_case(qkt::Ctx& ctx, const Case& c) {
    std::vector<float> out(c.T * c.nh * c.hd, NAN), want(out.size(), NAN);
    qk::attention(*ctx.k, c.args(out.data()));
    qk::attention(*ctx.ref, c.args(want.data()));
    QKT_CHECK(std::memcmp(out.data(), want.data(), out.size() * sizeof(float)) == 0,
              "T=%zu pos0=%zu heads %zu/%zu hd=%zu: not the reference's bits", c.T, c.pos0, c.nh, c.nkv, c.hd);
    const size_t group = c.nh / c.nkv, kv = c.nkv * c.hd, qd = c.nh * c.hd;
    const double u = std::ldexp(1.0, -24);
    for (size_t t = 0; t < c.T; ++t)
        for (size_t h = 0; h < c.nh; ++h) {
            const size_t g = h / group, lim = c.causal ? c.pos0 + t + 1 : c.pos0 + c.T;
            const float* qh = c.q.data() + t * qd + h * c.hd;
            std::vector<double> d(lim);
            double mx = -INFINITY, err = 0.0, vmax = 0.0;
            for (size_t j = 0; j < lim; ++j) {
                const float* kj = c.keys.data() + j * kv + g * c.hd;
                double s = 0.0, sa = 0.0;
                for (size_t i = 0; i < c.hd; ++i) {
                    s += double(qh[i]) * kj[i];
                    sa += std::fabs(double(qh[i]) * kj[i]);
                }
                d[j] = s * c.scale;
                mx = std::fmax(mx, d[j]);
                err = std::fmax(err, 2.0 * double(c.hd) * u * sa * c.scale);
            }
            double sum = 0.0;
            for (size_t j = 0; j < lim; ++j) sum += std::exp(d[j] - mx);
            for (size_t i = 0; i < c.hd; ++i) {
                double o = 0.0;
                for (size_t j = 0; j < lim; ++j) {
                    const double v = c.values[j * kv + g * c.hd + i];
                    vmax = std::fmax(vmax, std::fabs(v));
                    o += std::exp(d[j] - mx) / sum * v;
                }
                const double got = out[t * qd + h * c.hd + i];
                const double bound = (std::exp(2.0 * err) - 1.0) * vmax + (2.0 * double(lim) + 16.0) * u * vmax + 2.0 * u * std::fabs(o) + 1e-12;
                QKT_CHECK(std::fabs(got - o) <= bound, "T=%zu pos0=%zu heads %zu/%zu hd=%zu t=%zu h=%zu i=%zu got %.9g want %.9g bound %.3g",
                          c.T, c.pos0, c.nh, c.nkv, c.hd, t, h, i, got, o, bound);
            }
        }
}

}  // namespace

QKT_TEST(attention_vs_float64) {
    Rng rng(1);
    const size_t heads[][2] = {{1, 1}, {4, 4}, {6, 2}, {12, 4}, {8, 1}, {5, 5}, {10, 2}};
    for (const auto& hh : heads)
        for (size_t hd : {size_t(1), size_t(7), size_t(16), size_t(64), size_t(65)})
            for (size_t T : {size_t(1), size_t(3), size_t(70)})
                for (size_t pos0 : {size_t(0), size_t(1), size_t(37), size_t(300)}) {
                    if (pos0 == 300 && hd > 16 && hh[0] > 6) continue;  // keeps the float64 model fast under qemu
                    if (T == 70 && (pos0 == 300 || hd == 65 || hh[0] > 6)) continue;
                    check_case(ctx, make_case(T, pos0, hh[0], hh[1], hd, 1.0f, rng));
                }
}

QKT_TEST(attention_bidirectional) {
    // causal = false (an encoder): every query sees all pos0 + T positions
    Rng rng(7);
    for (size_t T : {size_t(1), size_t(5), size_t(70)})
        for (size_t hd : {size_t(8), size_t(64), size_t(33)}) {
            Case c = make_case(T, 0, 4, 4, hd, 1.0f, rng);
            c.causal = false;
            check_case(ctx, c);
        }
}

QKT_TEST(attention_large_scores) {
    Rng rng(2);
    for (float mag : {8.0f, 30.0f}) {  // |q·k| * scale up to ~1e3..7e3
        Case c = make_case(2, 50, 4, 2, 64, mag, rng);
        check_case(ctx, c);
        std::vector<float> out(c.T * c.nh * c.hd);
        qk::attention(*ctx.k, c.args(out.data()));
        for (float v : out) QKT_CHECK(std::isfinite(v), "non-finite output %g", v);
    }
}

QKT_TEST(attention_threads) {
    Rng rng(3);
    Case c = make_case(3, 200, 12, 4, 64, 1.0f, rng);
    const size_t before = qk::threads();
    std::vector<float> o1(c.T * c.nh * c.hd), o3(o1.size());
    qk::set_threads(1);
    qk::attention(*ctx.k, c.args(o1.data()));
    qk::set_threads(3);
    qk::attention(*ctx.k, c.args(o3.data()));
    qk::set_threads(before);
    QKT_CHECK(std::memcmp(o1.data(), o3.data(), o1.size() * sizeof(float)) == 0, "thread count changed the result");
}

QKT_TEST(attention_row_invariance) {
    // 150 positions (3 blocks) of 6 heads over 2 kv heads: as one prompt,
    // as 150 decode steps, and as chunks of 1, 7, 64, 13, ... positions.
    Rng rng(4);
    Case c = make_case(150, 0, 6, 2, 24, 1.0f, rng);
    const size_t qd = c.nh * c.hd;
    std::vector<float> whole(c.T * qd), steps(whole.size(), NAN), chunks(whole.size(), NAN);
    qk::attention(*ctx.k, c.args(whole.data()));
    for (size_t t = 0; t < c.T; ++t) {
        qk::AttnArgs a = c.args(steps.data() + t * qd);
        a.q = c.q.data() + t * qd;
        a.T = 1;
        a.pos0 = t;
        qk::attention(*ctx.k, a);
    }
    const size_t sizes[] = {1, 7, 64, 13, 2, 63};
    for (size_t t = 0, i = 0; t < c.T; t += sizes[i % 6], ++i) {
        qk::AttnArgs a = c.args(chunks.data() + t * qd);
        a.q = c.q.data() + t * qd;
        a.T = std::min(sizes[i % 6], c.T - t);
        a.pos0 = t;
        qk::attention(*ctx.k, a);
    }
    QKT_CHECK(std::memcmp(whole.data(), steps.data(), whole.size() * sizeof(float)) == 0, "decode steps differ from the prompt");
    QKT_CHECK(std::memcmp(whole.data(), chunks.data(), whole.size() * sizeof(float)) == 0, "chunks differ from the prompt");
}

// silu_mul: the reference's bits on every ISA (odd lengths, so every tail),
// within 4e-7 relative of float64 (the exponential, a division and two
// roundings), and the edges: NaN stays NaN, large |g| saturate exactly
// (exp overflows to +inf past ~88.4, so silu(-200) is -0).
QKT_TEST(silu_mul_vs_ref_and_float64) {
    Rng rng(5);
    for (size_t n : {size_t(1), size_t(3), size_t(7), size_t(16), size_t(33), size_t(64), size_t(130), size_t(1001)}) {
        std::vector<float> g(n), u(n);
        for (size_t i = 0; i < n; ++i) g[i] = rng.uni(-12.0f, 12.0f), u[i] = rng.uni(-2.0f, 2.0f);
        std::vector<float> got = g, want = g;
        ctx.k->silu_mul(got.data(), u.data(), n);
        ctx.ref->silu_mul(want.data(), u.data(), n);
        QKT_CHECK(std::memcmp(got.data(), want.data(), n * sizeof(float)) == 0, "n=%zu: not the reference's bits", n);
        for (size_t i = 0; i < n; ++i) {
            const double x = g[i], e = x / (1.0 + std::exp(-x)) * u[i];
            QKT_CHECK(std::fabs(got[i] - e) <= 4e-7 * std::fabs(e) + 1e-30, "n=%zu i=%zu g=%g: %.9g vs %.9g", n, i, g[i], got[i], e);
        }
    }
    // the edges in a short call (the masked tail) and in a long one (the
    // unrolled body of the SIMD kernels)
    for (size_t len : {size_t(7), size_t(64)}) {
        std::vector<float> g(len, 1.0f), u(len, 1.0f);
        const float edges[] = {NAN, -200.0f, 200.0f, -0.0f, 88.5f, -88.5f, 1e-30f};
        std::copy(std::begin(edges), std::end(edges), g.begin());
        ctx.k->silu_mul(g.data(), u.data(), g.size());
        QKT_CHECK(std::isnan(g[0]), "len=%zu: NaN gave %g", len, g[0]);
        QKT_CHECK(g[1] == 0.0f && std::signbit(g[1]), "len=%zu: silu(-200) = %g", len, g[1]);
        QKT_CHECK(g[2] == 200.0f, "len=%zu: silu(200) = %g", len, g[2]);
        QKT_CHECK(g[3] == 0.0f, "len=%zu: silu(-0) = %g", len, g[3]);
        QKT_CHECK(g[4] == 88.5f && g[5] == 0.0f && std::signbit(g[5]), "len=%zu: saturation: %g %g", len, g[4], g[5]);
        QKT_CHECK(g[6] == 0.5e-30f, "len=%zu: silu(1e-30) = %g", len, g[6]);
    }
}

// gelu_tanh: the reference's bits on every ISA (odd lengths: every tail),
// within 4e-7 + |arg| 2^-22 relative (plus 1e-37 absolute) of float64
// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3),
// and the edges.
QKT_TEST(gelu_tanh_vs_ref_and_float64) {
    Rng rng(6);
    for (size_t n : {size_t(1), size_t(5), size_t(9), size_t(16), size_t(31), size_t(64), size_t(129), size_t(1003)}) {
        std::vector<float> x(n);
        for (auto& v : x) v = rng.uni(-9.0f, 9.0f);
        std::vector<float> got = x, want = x;
        ctx.k->gelu_tanh(got.data(), n);
        ctx.ref->gelu_tanh(want.data(), n);
        QKT_CHECK(std::memcmp(got.data(), want.data(), n * sizeof(float)) == 0, "n=%zu: not the reference's bits", n);
        for (size_t i = 0; i < n; ++i) {
            // (float64 in the sigmoid form: 0.5 x (1 + tanh) cancels to 0 for x < ~-6)
            // (the f32 argument of exp carries two f32 roundings: up to |arg| 2^-22 more in the result)
            const double v = x[i], arg = 2.0 * std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v), e = v / (1.0 + std::exp(-arg));
            const double tol = 4e-7 + std::fabs(arg) * std::ldexp(1.0, -22);
            QKT_CHECK(std::fabs(got[i] - e) <= tol * std::fabs(e) + 1e-37, "x=%.9g: %.9g vs %.9g", x[i], got[i], e);
        }
    }
    for (size_t len : {size_t(5), size_t(64)}) {  // the masked tail, the unrolled body
        std::vector<float> e(len, 1.0f);
        const float edges[] = {NAN, -100.0f, 100.0f, 0.0f, -0.0f};
        std::copy(std::begin(edges), std::end(edges), e.begin());
        ctx.k->gelu_tanh(e.data(), e.size());
        QKT_CHECK(std::isnan(e[0]), "len=%zu: NaN gave %g", len, e[0]);
        QKT_CHECK(e[1] == 0.0f && std::signbit(e[1]), "len=%zu: gelu(-100) = %g", len, e[1]);
        QKT_CHECK(e[2] == 100.0f, "len=%zu: gelu(100) = %g", len, e[2]);
        QKT_CHECK(e[3] == 0.0f && e[4] == 0.0f, "len=%zu: gelu(+-0) = %g %g", len, e[3], e[4]);
    }
}
