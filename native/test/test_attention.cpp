// Tests of causal decode attention (ops/attention_ops.h), run once per ISA
// table (its q·k products go through that table's gemv).
//
//  - Against a float64 evaluation of the same formula on odd head counts
//    and sizes (GQA groups of 1..8, so also more than the gemv's 4 rows),
//    with a bound derived from the f32 dot products: each score s_j has an
//    error of at most hd * u * sum_i |q_i k_ji| (u = 2^-24, slack x2), which
//    moves every softmax weight by a relative factor within exp(+-2 scale
//    err), so |out - out64| <= (exp(2 scale err) - 1) * max|v| + u |out64|.
//  - Large scores (|q·k| ~ 1e3): the max subtraction keeps it finite.
//  - Bit-identical at 1 and 3 threads.
#include <cmath>
#include <cstring>
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
    std::vector<float> q, keys, values;
    qk::AttnArgs args(float* out) const {
        return {q.data(), T, pos0, keys.data(), values.data(), nh, nkv, hd, scale, out};
    }
};

Case make_case(size_t T, size_t pos0, size_t nh, size_t nkv, size_t hd, float mag, Rng& rng) {
    Case c{T, pos0, nh, nkv, hd, 1.0f / std::sqrt(float(hd)), {}, {}, {}};
    c.q.resize(T * nh * hd);
    const size_t n = pos0 + T + 3;  // a cache longer than needed (unread rows)
    c.keys.resize(n * nkv * hd);
    c.values.resize(n * nkv * hd);
    for (auto& v : c.q) v = rng.uni(-mag, mag);
    for (auto& v : c.keys) v = rng.uni(-mag, mag);
    for (auto& v : c.values) v = rng.uni(-2.0f, 2.0f);
    return c;
}

void check_case(qkt::Ctx& ctx, const Case& c) {
    std::vector<float> out(c.T * c.nh * c.hd, NAN);
    qk::attention(*ctx.k, c.args(out.data()));
    const size_t group = c.nh / c.nkv, kv = c.nkv * c.hd, qd = c.nh * c.hd;
    const double u = std::ldexp(1.0, -24);
    for (size_t t = 0; t < c.T; ++t)
        for (size_t h = 0; h < c.nh; ++h) {
            const size_t g = h / group, lim = c.pos0 + t + 1;
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
                const double bound = (std::exp(2.0 * err) - 1.0) * vmax + 2.0 * u * std::fabs(o) + 1e-12;
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
            for (size_t T : {size_t(1), size_t(3)})
                for (size_t pos0 : {size_t(0), size_t(1), size_t(37), size_t(300)}) {
                    if (pos0 == 300 && hd > 16 && hh[0] > 6) continue;  // keeps the float64 model fast under qemu
                    check_case(ctx, make_case(T, pos0, hh[0], hh[1], hd, 1.0f, rng));
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
