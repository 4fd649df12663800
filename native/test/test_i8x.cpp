// Kernels::i8x_split and gemm_i8x (int8 weights x f32 activations in exact
// int8 digits): the scalar reference against float64 within its stated
// bound, the ISA's kernels (amx only) against the reference bit for bit,
// row invariance, and the driver's handling of rows with inf or NaN.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../kernels/ref/i8x_ref.h"
#include "../ops/gemm_ops.h"
#include "harness.h"

namespace {

constexpr float kSentinel = -12345.0f;

// 64-byte aligned DigitX storage for M rows of K values.
struct Digits {
    std::vector<uint8_t> raw;
    std::vector<int32_t> exps;
    std::vector<uint8_t> bad;
    qk::DigitX dx;
    Digits(size_t M, size_t K) : exps(M, -999), bad(M, 7) {
        dx.M = M;
        dx.K = K;
        raw.assign(dx.bytes() + 64, 0xAB);
        dx.data = raw.data() + (64 - reinterpret_cast<uintptr_t>(raw.data()) % 64) % 64;
        dx.exps = exps.data();
        dx.bad = bad.data();
    }
};

// Row kinds of X, each with its own scale, to reach every branch of the split.
enum class Row { uniform, zeros, outlier, subnormal, nan, inf, wide, pow2, negative, huge };
const Row kRows[] = {Row::uniform, Row::zeros,   Row::outlier,  Row::subnormal, Row::nan,
                     Row::inf,     Row::wide,    Row::pow2,     Row::negative,  Row::huge};

std::vector<float> make_rows(size_t M, size_t K, size_t ldx, qkt::Rng& rng, bool plain) {
    std::vector<float> x(M * ldx, 777.0f);
    for (size_t m = 0; m < M; ++m) {
        const Row kind = plain ? Row::uniform : kRows[m % (sizeof kRows / sizeof kRows[0])];
        float* r = x.data() + m * ldx;
        for (size_t k = 0; k < K; ++k) {
            const float u = rng.uni(-1.0f, 1.0f);
            switch (kind) {
                case Row::uniform: r[k] = u * 3.0f; break;
                case Row::zeros: r[k] = 0.0f; break;
                case Row::outlier: r[k] = k == K / 2 ? 1.0e6f : u * 1.0e-3f; break;
                case Row::subnormal: r[k] = u * 1.0e-39f; break;
                case Row::nan: r[k] = k == K - 1 ? NAN : u; break;
                case Row::inf: r[k] = k == 0 ? -INFINITY : u; break;
                case Row::wide: r[k] = std::ldexp(u, int(rng.next() % 60) - 30); break;
                case Row::pow2: r[k] = k == 0 ? 64.0f : std::round(u * 64.0f); break;
                case Row::negative: r[k] = -std::fabs(u) - 0.5f; break;
                case Row::huge: r[k] = u * 3.0e38f; break;
            }
        }
    }
    return x;
}

// Symmetric int8 codes (the extremes included) with one positive scale per
// row, as f32 or as f16 bits.
struct I8W {
    std::vector<int8_t> q;
    std::vector<float> s;
    std::vector<uint16_t> s16;
    qk::WeightView v{};
    I8W(size_t N, size_t K, bool f16, qkt::Rng& rng) : q(N * K), s(N), s16(N) {
        for (size_t i = 0; i < N * K; ++i) q[i] = int8_t(rng.irange(-127, 127));
        if (N * K > 2) {
            q[0] = 127;
            q[1] = -127;
        }
        v.fmt = qk::WFormat::i8;
        v.data = q.data();
        v.row_bytes = K;
        v.group = K;
        for (size_t n = 0; n < N; ++n) {
            s16[n] = uint16_t((rng.irange(1, 20) << 10) | rng.irange(0, 1023));  // a normal positive f16
            s[n] = rng.uni(0.001f, 0.05f);
        }
        if (f16) v.scales16 = s16.data();
        else v.scales = s.data();
        if (f16)
            for (size_t n = 0; n < N; ++n) s[n] = qk::scale_at(v, n);
    }
};

const size_t kMs[] = {1, 2, 3, 4, 5, 7, 9, 12, 17};
const size_t kNs[] = {1, 5, 16, 17, 33, 40, 300};
const size_t kKs[] = {1, 3, 17, 63, 64, 65, 130, 200, 640};

// |y - sum s q x| <= 2^-23 (|sum| + |bias|) + kI8xAbsErr max|x| sum |w|,
// for every finite row of the reference; flagged rows keep the sentinel.
void check_ref_bound(qkt::Ctx& ctx, const std::vector<float>& x, size_t ldx, const I8W& w, const float* bias,
                     const float* y, size_t ldy, const Digits& d, size_t M, size_t N, size_t K) {
    for (size_t m = 0; m < M; ++m) {
        const float* r = x.data() + m * ldx;
        double amax = 0;
        bool finite = true;
        for (size_t k = 0; k < K; ++k) {
            finite = finite && std::isfinite(r[k]);
            if (std::isfinite(r[k])) amax = std::fmax(amax, std::fabs(double(r[k])));
        }
        QKT_CHECK(d.bad[m] == !finite, "bad[%zu] = %d, finite %d", m, d.bad[m], finite);
        for (size_t n = 0; n < N; ++n) {
            const float got = y[m * ldy + n];
            if (!finite) {
                QKT_CHECK(got == kSentinel, "row %zu with inf/NaN written", m);
                continue;
            }
            double sum = 0, wabs = 0;
            for (size_t k = 0; k < K; ++k) {
                const double wk = double(w.s[n]) * w.q[n * K + k];
                sum += wk * r[k];
                wabs += std::fabs(wk);
            }
            const double b = bias ? bias[n] : 0.0;
            const double tol = std::ldexp(std::fabs(sum) + std::fabs(b), -23) + qk::kI8xAbsErr * amax * wabs + 1e-44;
            QKT_CHECK(std::fabs(double(got) - (sum + b)) <= tol || (std::isinf(got) && std::fabs(sum + b) > 3.0e38),
                      "ref m=%zu n=%zu N=%zu K=%zu: got %.9g want %.9g (tol %.3g)", m, n, N, K, double(got), sum + b,
                      tol);
        }
    }
}

}  // namespace

QKT_TEST(i8x_reference_vs_float64) {
    if (ctx.k != ctx.ref) return;  // the reference alone, once
    qkt::Rng rng(91, 3);
    for (size_t K : kKs)
        for (size_t M : kMs)
            for (size_t N : {size_t(1), size_t(5), size_t(17)}) {
                const size_t ldx = K + 3, ldy = N + 2;
                const std::vector<float> x = make_rows(M, K, ldx, rng, false);
                const I8W w(N, K, M % 2 == 1, rng);
                std::vector<float> bias(N);
                for (float& b : bias) b = rng.uni(-1.0f, 1.0f);
                Digits d(M, K);
                qk::ref::i8x_split(x.data(), ldx, M, K, d.dx);
                std::vector<float> y(M * ldy, kSentinel);
                const float* b = K % 2 ? bias.data() : nullptr;
                qk::ref::gemm_i8x(d.dx, w.v, 0, N, b, y.data(), ldy);
                check_ref_bound(ctx, x, ldx, w, b, y.data(), ldy, d, M, N, K);
            }
}

QKT_TEST(i8x_kernels_equal_reference) {
    if (!ctx.k->gemm_i8x) return;  // only the amx table has them
    qkt::Rng rng(92, 5);
    for (size_t K : kKs)
        for (size_t M : kMs)
            for (size_t N : kNs) {
                if (M * N * K > 2000000) continue;
                for (int f16 = 0; f16 < 2; ++f16) {
                    const size_t ldx = K + 5, ldy = N + 3;
                    const std::vector<float> x = make_rows(M, K, ldx, rng, false);
                    const I8W w(N, K, f16 != 0, rng);
                    std::vector<float> bias(N);
                    for (float& b : bias) b = rng.uni(-2.0f, 2.0f);
                    const float* b = (M + N) % 2 ? bias.data() : nullptr;
                    Digits dr(M, K), dk(M, K);
                    qk::ref::i8x_split(x.data(), ldx, M, K, dr.dx);
                    ctx.k->i8x_split(x.data(), ldx, M, K, dk.dx);
                    QKT_CHECK(std::memcmp(dr.dx.data, dk.dx.data, dr.dx.bytes()) == 0, "split M=%zu K=%zu: digits differ", M, K);
                    QKT_CHECK(dr.exps == dk.exps && dr.bad == dk.bad, "split M=%zu K=%zu: exponents or flags differ", M, K);
                    std::vector<float> yr(M * ldy, kSentinel), yk(M * ldy, kSentinel);
                    qk::ref::gemm_i8x(dr.dx, w.v, 0, N, b, yr.data(), ldy);
                    // the kernel in two column ranges (a task split at an odd row)
                    const size_t cut = N / 3;
                    ctx.k->gemm_i8x(dk.dx, w.v, 0, cut, b, yk.data(), ldy);
                    ctx.k->gemm_i8x(dk.dx, w.v, cut, N, b, yk.data(), ldy);
                    QKT_CHECK(std::memcmp(yr.data(), yk.data(), yr.size() * sizeof(float)) == 0,
                              "gemm M=%zu N=%zu K=%zu f16=%d: differs from the reference", M, N, K, f16);
                    // each row alone gives its bits in the M-row call
                    for (size_t m = 0; m < M; m += 2) {
                        Digits d1(1, K);
                        ctx.k->i8x_split(x.data() + m * ldx, ldx, 1, K, d1.dx);
                        std::vector<float> y1(ldy, kSentinel);
                        ctx.k->gemm_i8x(d1.dx, w.v, 0, N, b, y1.data(), ldy);
                        QKT_CHECK(std::memcmp(y1.data(), yk.data() + m * ldy, ldy * sizeof(float)) == 0,
                                  "row %zu alone differs from M = %zu (N %zu K %zu)", m, M, N, K);
                    }
                }
            }
}

// Through the driver: int8 per channel takes the digits on a table that has
// them; a row with inf or NaN gets gemv's result for that row alone, and
// every row's bits do not depend on M in row-invariant mode.
QKT_TEST(i8x_driver_rows) {
    qkt::Rng rng(93, 7);
    // M = 70: the driver splits X in chunks of 32 rows
    for (size_t K : {size_t(65), size_t(300)})
        for (size_t N : {size_t(17), size_t(70)})
            for (size_t M : {size_t(11), size_t(70)}) {
                const std::vector<float> x = make_rows(M, K, K, rng, false);
                const I8W w(N, K, false, rng);
                std::vector<float> y(M * N, kSentinel);
                qk::GemmArgs a = qkt::quant_gemm_args(x.data(), M, N, K, 8, w.q.data(), K, w.s.data(), nullptr, K, nullptr,
                                                      y.data());
                a.row_invariant = true;
                qk::gemm(*ctx.k, a, nullptr);
                for (size_t m = 0; m < M; ++m) {
                    std::vector<float> y1(N, kSentinel);
                    qk::GemmArgs a1 = a;
                    a1.x = x.data() + m * K;
                    a1.M = 1;
                    a1.y = y1.data();
                    qk::gemm(*ctx.k, a1, nullptr);
                    QKT_CHECK(std::memcmp(y1.data(), y.data() + m * N, N * sizeof(float)) == 0,
                              "driver row %zu alone differs from M = %zu (N %zu K %zu)", m, M, N, K);
                    bool finite = true;
                    for (size_t k = 0; k < K; ++k) finite = finite && std::isfinite(x[m * K + k]);
                    if (finite) continue;
                    bool nonfinite_out = false;
                    for (size_t n = 0; n < N; ++n) nonfinite_out = nonfinite_out || !std::isfinite(y[m * N + n]);
                    QKT_CHECK(nonfinite_out, "row %zu with inf/NaN gave only finite outputs", m);
                }
            }
}
