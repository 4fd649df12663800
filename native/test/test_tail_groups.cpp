// Weights whose group size does not divide K: each row holds ceil(K / G)
// groups, the last one K % G values long (Llama's down_proj in stories260K
// has K = 172: groups of 32 leave 12). Checked per ISA table (ctx.k)
// against a float64 evaluation written from the formulas, not from the
// drivers:
//  - quantize: every group's scale (and zero point) is choose_params of that
//    group's own min/max, the last group included; codes round x / scale;
//    dequantize inverts them;
//  - the f32-activation GEMM driver (gemv path M <= 4 and panel path) and
//    the W4A8 driver equal x . W_deq^T within float rounding, with bias;
//  - G > K: one group of K values per row.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../ops/gemm_ops.h"
#include "../ops/quantize_ops.h"
#include "../ops/w4a8_ops.h"
#include "harness.h"

namespace {

struct Case {
    size_t N, K, G;
};

// (N, K, G): K % G != 0 with G a multiple of 32 (the W4A8 driver splits
// those) and not (the reference takes them), K < G, a K tail past a
// multiple of 128, and last groups of 32 and 64 values, which the W4A8
// driver runs through the SIMD kernels as a view into the middle of each
// row (its row stride is the whole row's; the buffers here are exact, so a
// read past a row's last group of the last row is caught under ASan).
const Case kCases[] = {{5, 172, 32}, {7, 172, 64}, {3, 20, 32}, {9, 100, 48}, {4, 300, 128}, {6, 46, 8}, {65, 270, 256},
                       {5, 160, 128}, {9, 192, 128}, {21, 416, 128}};

double rel_err(const std::vector<float>& y, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < y.size(); ++i) {
        num = std::max(num, std::fabs(double(y[i]) - ref[i]));
        den = std::max(den, std::fabs(ref[i]));
    }
    return num / std::max(den, 1e-30);
}

}  // namespace

QKT_TEST(tail_groups_quantize_gemm) {
    qkt::Rng rng(7, 41);
    for (const Case& c : kCases) {
        for (int bits : {8, 4}) {
            for (bool asym : {false, true}) {
                const size_t N = c.N, K = c.K, G = c.G, ng = (K + G - 1) / G;
                std::vector<float> w(N * K);
                for (auto& v : w) v = rng.uni(-1.0f, 1.0f) * (rng.next() % 7 == 0 ? 4.0f : 1.0f);
                qk::QuantSpec s{bits, asym, qk::Granularity::group, G};
                QKT_CHECK(qk::groups_per_row(s, K) == ng, "K=%zu G=%zu: %zu groups per row", K, G, qk::groups_per_row(s, K));
                const size_t rb = qk::packed_row_bytes(bits, K);
                std::vector<int8_t> codes(N * rb);
                std::vector<float> scales(N * ng);
                std::vector<uint8_t> zps(N * ng);
                QKT_CHECK(qk::quantize(w.data(), qk::SrcType::f32, N, K, s, codes.data(), scales.data(), asym ? zps.data() : nullptr) == SIZE_MAX, "finite");
                std::vector<float> wd(N * K);
                qk::dequantize(codes.data(), N, K, s, scales.data(), asym ? zps.data() : nullptr, wd.data());
                // Every group, the shorter last one included, has its own parameters.
                for (size_t n = 0; n < N; ++n) {
                    for (size_t g = 0; g < ng; ++g) {
                        const size_t k0 = g * G, k1 = std::min(K, k0 + G);
                        float mn = w[n * K + k0], mx = mn;
                        for (size_t k = k0; k < k1; ++k) mn = std::min(mn, w[n * K + k]), mx = std::max(mx, w[n * K + k]);
                        float sc;
                        int32_t zp;
                        qk::choose_params(s, mn, mx, &sc, &zp);
                        QKT_CHECK(scales[n * ng + g] == sc, "bits=%d asym=%d K=%zu G=%zu row %zu group %zu: scale %g, want %g", bits, asym, K, G, n, g,
                                  double(scales[n * ng + g]), double(sc));
                        for (size_t k = k0; k < k1; ++k) {
                            // within half a step (a symmetric int4 group's max may clamp at +7: one step)
                            const double tol = (bits == 4 && !asym ? 1.0 : 0.5) * sc * (1 + 1e-6);
                            QKT_CHECK(std::fabs(double(wd[n * K + k]) - double(w[n * K + k])) <= tol, "K=%zu G=%zu [%zu,%zu]: %g -> %g", K, G, n, k,
                                      double(w[n * K + k]), double(wd[n * K + k]));
                        }
                    }
                }
                // The GEMM driver on both paths, with bias.
                for (size_t M : {size_t(1), size_t(3), size_t(7), size_t(33)}) {
                    std::vector<float> x(M * K), bias(N), y(M * N, -1.0f);
                    for (auto& v : x) v = rng.uni(-1.0f, 1.0f);
                    for (auto& v : bias) v = rng.uni(-1.0f, 1.0f);
                    const qk::GemmArgs a = qkt::quant_gemm_args(x.data(), M, N, K, bits, codes.data(), rb, scales.data(),
                                                                asym ? zps.data() : nullptr, G, bias.data(), y.data());
                    qk::gemm(*ctx.k, a, nullptr);
                    std::vector<double> ref(M * N);
                    for (size_t m = 0; m < M; ++m)
                        for (size_t n = 0; n < N; ++n) {
                            double acc = bias[n];
                            for (size_t k = 0; k < K; ++k) acc += double(x[m * K + k]) * double(wd[n * K + k]);
                            ref[m * N + n] = acc;
                        }
                    const double e = rel_err(y, ref);
                    QKT_CHECK(e < 1e-5, "gemm bits=%d asym=%d M=%zu N=%zu K=%zu G=%zu: rel err %g", bits, asym, M, N, K, G, e);

                    if (bits != 4) continue;
                    // W4A8: activations per block of 32 of the whole row (the spec).
                    std::vector<float> y4(M * N, -1.0f);
                    QKT_CHECK(qk::gemm_w4a8(*ctx.k, a.w, N, K, x.data(), M, bias.data(), y4.data()) == SIZE_MAX, "finite");
                    std::vector<double> ref4(M * N);
                    for (size_t m = 0; m < M; ++m) {
                        std::vector<double> xq(K);
                        for (size_t b = 0; b < K; b += 32) {
                            const size_t e1 = std::min(K, b + 32);
                            float amax = 0;
                            for (size_t k = b; k < e1; ++k) amax = std::max(amax, std::fabs(x[m * K + k]));
                            float sx;
                            int32_t z;
                            qk::QuantSpec s8{8, false, qk::Granularity::group, 32};
                            qk::choose_params(s8, -amax, amax, &sx, &z);
                            for (size_t k = b; k < e1; ++k) xq[k] = double(std::nearbyint(x[m * K + k] / sx)) * double(sx);
                        }
                        for (size_t n = 0; n < N; ++n) {
                            double acc = bias[n];
                            for (size_t k = 0; k < K; ++k) acc += xq[k] * double(wd[n * K + k]);
                            ref4[m * N + n] = acc;
                        }
                    }
                    const double e4 = rel_err(y4, ref4);
                    QKT_CHECK(e4 < 1e-5, "w4a8 asym=%d M=%zu N=%zu K=%zu G=%zu: rel err %g", asym, M, N, K, G, e4);
                }
            }
        }
    }
}
