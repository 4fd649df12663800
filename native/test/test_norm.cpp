// Row norms and rotary embeddings (Kernels::norm_rows, Kernels::rope_rows):
// every ISA gives the reference's bits (odd widths for every tail, 1 to 9
// rows so the four-row blocks and the rows after them both run, edge
// values), the reference is within rounding of a long-double evaluation,
// and a row's result does not depend on the rows called with it. The
// cache's key transposition is checked against keyIndex's layout.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../ops/attention_ops.h"
#include "harness.h"

namespace {

struct Rng : qkt::Rng {
    explicit Rng(uint64_t seed) : qkt::Rng(seed, 23) {}
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// x [rows, D] with a few large, tiny and zero rows among ordinary ones.
std::vector<float> norm_input(Rng& rng, size_t rows, size_t D) {
    std::vector<float> x(rows * D);
    for (size_t r = 0; r < rows; ++r) {
        const int kind = int(r % 5);
        for (size_t i = 0; i < D; ++i) {
            float v = rng.uni(-2.0f, 2.0f);
            if (kind == 1) v *= 3e18f;      // squares near float's range, fine in double
            if (kind == 2) v *= 1e-40f;     // subnormal floats
            if (kind == 3 && i % 7 == 0) v = 0.0f;
            x[r * D + i] = v;
        }
    }
    return x;
}

}  // namespace

QKT_TEST(norm_rows_equal_reference) {
    Rng rng(1);
    for (size_t D : {size_t(1), size_t(3), size_t(7), size_t(8), size_t(9), size_t(17), size_t(65), size_t(768), size_t(1001)})
        for (size_t rows : {size_t(1), size_t(4), size_t(6), size_t(9)})
            for (int kind = 0; kind < 2; ++kind)
                for (int variant = 0; variant < 4; ++variant) {  // bit 0: residual; bit 1: no w / b (layer)
                    const bool with_res = variant & 1, bare = variant & 2;
                    if (kind == 0 && bare) continue;  // rms needs w
                    const std::vector<float> x0 = norm_input(rng, rows, D);
                    std::vector<float> res(rows * D), w(D), b(D);
                    for (float& v : res) v = rng.uni(-1.0f, 1.0f);
                    for (float& v : w) v = rng.uni(0.5f, 1.5f);
                    for (float& v : b) v = rng.uni(-0.5f, 0.5f);
                    auto run = [&](const qk::Kernels& k, std::vector<float>& x, std::vector<float>& out, size_t r0, size_t r1) {
                        qk::NormArgs a{};
                        a.kind = kind == 0 ? qk::NormKind::rms : qk::NormKind::layer;
                        a.x = x.data();
                        a.residual = with_res ? res.data() : nullptr;
                        a.w = bare ? nullptr : w.data();
                        a.b = kind == 1 && !bare ? b.data() : nullptr;
                        a.out = out.data();
                        a.rows = rows;
                        a.D = D;
                        a.eps = 1e-5;
                        k.norm_rows(a, r0, r1);
                    };
                    std::vector<float> xg = x0, xw = x0, og(rows * D), ow(rows * D);
                    run(*ctx.k, xg, og, 0, rows);
                    run(*ctx.ref, xw, ow, 0, rows);
                    QKT_CHECK(same_bits(og, ow) && same_bits(xg, xw), "kind %d variant %d D=%zu rows=%zu: not the reference's bits", kind,
                              variant, D, rows);
                    // one row at a time: the same bits (rows are independent of their neighbours)
                    std::vector<float> x1 = x0, o1(rows * D);
                    for (size_t r = 0; r < rows; ++r) run(*ctx.k, x1, o1, r, r + 1);
                    QKT_CHECK(same_bits(o1, og), "kind %d variant %d D=%zu rows=%zu: row by row differs", kind, variant, D, rows);
                    // in place (out = x)
                    std::vector<float> xi = x0;
                    run(*ctx.k, xi, xi, 0, rows);
                    QKT_CHECK(same_bits(xi, og), "kind %d variant %d D=%zu: in place differs", kind, variant, D);
                    // the reference against long double (rms / layer of x + residual)
                    if (ctx.k->isa != qk::Isa::scalar) continue;
                    for (size_t r = 0; r < rows; ++r) {
                        long double s = 0, s2 = 0;
                        std::vector<long double> v(D);
                        for (size_t i = 0; i < D; ++i) {
                            v[i] = with_res ? (long double)(float(x0[r * D + i] + res[r * D + i])) : (long double)x0[r * D + i];
                            s += v[i];
                        }
                        const long double mean = kind == 0 ? 0.0L : s / D;
                        for (size_t i = 0; i < D; ++i) s2 += (v[i] - mean) * (v[i] - mean);
                        const long double inv = 1.0L / std::sqrt(s2 / D + 1e-5L);
                        for (size_t i = 0; i < D; ++i) {
                            long double y = (v[i] - mean) * inv;
                            if (!bare) y *= w[i];
                            if (kind == 1 && !bare) y += b[i];
                            const double got = ow[r * D + i];
                            // f32 rounding of the result, plus double-level error times the terms' size
                            const double tol = 6e-8 * std::fabs(double(y)) + 1e-13 * (std::fabs(double((v[i] - mean) * inv)) + 1.0) + 1e-44;
                            QKT_CHECK(std::fabs(got - double(y)) <= tol, "kind %d D=%zu r=%zu i=%zu: %.9g vs %.12Lg", kind, D, r, i, got, y);
                        }
                    }
                }
    // edges: NaN and inf poison their row only; a zero row with eps 0 is 0 * inf = NaN (the definition)
    const size_t D = 11;
    std::vector<float> x(5 * D, 1.0f), w(D, 1.0f), og(5 * D), ow(5 * D);
    x[0 * D + 3] = NAN;
    x[1 * D + 4] = INFINITY;
    for (size_t i = 0; i < D; ++i) x[2 * D + i] = 0.0f;
    x[3 * D + 10] = std::numeric_limits<float>::max();
    for (int kind = 0; kind < 2; ++kind) {
        qk::NormArgs a{};
        a.kind = kind == 0 ? qk::NormKind::rms : qk::NormKind::layer;
        a.w = w.data();
        a.rows = 5;
        a.D = D;
        a.eps = 0.0;
        std::vector<float> xg = x, xw = x;
        a.x = xg.data(), a.out = og.data();
        ctx.k->norm_rows(a, 0, 5);
        a.x = xw.data(), a.out = ow.data();
        ctx.ref->norm_rows(a, 0, 5);
        QKT_CHECK(same_bits(og, ow), "kind %d: edge rows differ from the reference", kind);
        // (rms of the inf row: inv = 0, so its finite values give 0 and the inf NaN)
        QKT_CHECK(std::isnan(og[0]) && std::isnan(og[D + 4]) && std::isnan(og[2 * D]), "kind %d: NaN, inf and 0/0 rows", kind);
        // a row of ones: rms 1; layer 0 * (1 / sqrt(0)) = NaN with eps 0
        QKT_CHECK(std::isfinite(og[3 * D + 10]) && (kind == 0 ? og[4 * D] == 1.0f : std::isnan(og[4 * D])), "kind %d: rows 3, 4: %g %g",
                  kind, og[3 * D + 10], og[4 * D]);
    }
}

QKT_TEST(rope_rows_equal_reference) {
    Rng rng(2);
    for (size_t half : {size_t(1), size_t(3), size_t(4), size_t(7), size_t(8), size_t(9), size_t(32)})
        for (int interleaved = 0; interleaved < 2; ++interleaved) {
            const size_t T = 6, n_heads = 3, stride = 2 * half + 3, pos0 = 5, positions = pos0 + T;
            std::vector<double> cs(positions * half), sn(positions * half);
            for (size_t i = 0; i < cs.size(); ++i) {
                const double ang = double(i % half + 1) * double(i / half) * 0.37;
                cs[i] = std::cos(ang), sn[i] = std::sin(ang);
            }
            std::vector<float> x0(T * n_heads * stride);
            for (size_t i = 0; i < x0.size(); ++i) x0[i] = i % 29 == 0 ? 3e30f : rng.uni(-4.0f, 4.0f);
            auto run = [&](const qk::Kernels& k, std::vector<float>& x, size_t t0, size_t t1) {
                qk::RopeArgs a{};
                a.x = x.data();
                a.T = T, a.n_heads = n_heads, a.stride = stride, a.half = half, a.pos0 = pos0;
                a.cos = cs.data(), a.sin = sn.data();
                a.interleaved = interleaved != 0;
                k.rope_rows(a, t0, t1);
            };
            std::vector<float> got = x0, want = x0, parts = x0;
            run(*ctx.k, got, 0, T);
            run(*ctx.ref, want, 0, T);
            QKT_CHECK(same_bits(got, want), "half=%zu interleaved=%d: not the reference's bits", half, interleaved);
            run(*ctx.k, parts, 0, 2);
            run(*ctx.k, parts, 2, T);
            QKT_CHECK(same_bits(parts, got), "half=%zu interleaved=%d: split positions differ", half, interleaved);
            // the reference within f32 rounding of the exact rotation; the
            // stride's padding is untouched
            for (size_t t = 0; t < T; ++t)
                for (size_t h = 0; h < n_heads; ++h) {
                    const size_t base = (t * n_heads + h) * stride;
                    for (size_t i = 0; i < half; ++i) {
                        const size_t ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
                        const long double c = cs[(pos0 + t) * half + i], s = sn[(pos0 + t) * half + i];
                        const long double x0a = x0[base + ia], x1 = x0[base + ib];
                        const long double ea = x0a * c - x1 * s, eb = x0a * s + x1 * c;
                        const long double mag = std::fabs(x0a) + std::fabs(x1);
                        QKT_CHECK(std::fabs(want[base + ia] - ea) <= 6e-8L * std::fabs(ea) + 1e-15L * mag &&
                                      std::fabs(want[base + ib] - eb) <= 6e-8L * std::fabs(eb) + 1e-15L * mag,
                                  "half=%zu t=%zu h=%zu i=%zu: off the exact rotation", half, t, h, i);
                    }
                    for (size_t i = 2 * half; i < stride; ++i)
                        QKT_CHECK(std::memcmp(&want[base + i], &x0[base + i], sizeof(float)) == 0 &&
                                      std::memcmp(&got[base + i], &x0[base + i], sizeof(float)) == 0,
                                  "half=%zu: padding written", half);
                }
        }
}

// The key cache's transposed blocks: every position written where keyIndex
// says ((p / 64) * kv_dim + c) * 64 + p % 64, from any start and length
// (runs that cross block edges), nothing else touched; values as rows.
QKT_TEST(attn_cache_write_layout) {
    if (ctx.k->isa != qk::Isa::scalar) return;  // ISA-independent (plain C++): once
    for (size_t kv_dim : {size_t(1), size_t(17), size_t(40)})
        for (size_t pos0 : {size_t(0), size_t(5), size_t(63), size_t(64)})
            for (size_t T : {size_t(1), size_t(2), size_t(70), size_t(130)}) {
                const size_t P = pos0 + T, blocks = (P + 63) / 64;
                std::vector<float> keys(blocks * 64 * kv_dim, -1.0f), vals(P * kv_dim, -1.0f), k(T * kv_dim), v(T * kv_dim);
                for (size_t i = 0; i < k.size(); ++i) k[i] = float(i), v[i] = float(i) + 0.5f;
                qk::attn_cache_write(keys.data(), vals.data(), k.data(), v.data(), pos0, T, kv_dim);
                size_t written = 0;
                for (size_t p = 0; p < blocks * 64; ++p)
                    for (size_t c = 0; c < kv_dim; ++c) {
                        const float got = keys[((p / 64) * kv_dim + c) * 64 + p % 64];
                        const float want = p >= pos0 && p < P ? float((p - pos0) * kv_dim + c) : -1.0f;
                        written += got != -1.0f;
                        QKT_CHECK(got == want, "kv_dim=%zu pos0=%zu T=%zu: key p=%zu c=%zu is %g, want %g", kv_dim, pos0, T, p, c, got, want);
                    }
                QKT_CHECK(written == T * kv_dim, "written %zu", written);
                for (size_t p = 0; p < P; ++p)
                    for (size_t c = 0; c < kv_dim; ++c)
                        QKT_CHECK(vals[p * kv_dim + c] == (p >= pos0 ? float((p - pos0) * kv_dim + c) + 0.5f : -1.0f), "value p=%zu c=%zu", p, c);
            }
}
