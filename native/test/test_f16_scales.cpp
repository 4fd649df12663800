// f16 scales (WeightView::scales16): the drivers widen a task's scales to
// f32 and run the f32-scale kernels on a view rebased to the task's first
// row, so a product with f16 scales must equal, bit for bit, the same
// product with f32 scales holding the widened values. Checked per ISA table
// for the f32-activation GEMM (gemv and panel paths, both row-invariant
// modes, tasks past the first block of rows, bias) and the W4A8 driver, for
// int8 and int4, symmetric and asymmetric, per group (a shorter last group
// included) and per channel.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../ops/gemm_ops.h"
#include "../ops/quantize_ops.h"
#include "../ops/w4a8_ops.h"
#include "harness.h"

namespace {

// Nearest f16 (ties to even) of a positive normal float in f16's normal range.
uint16_t to_f16(float f) {
    int e;
    const double m = std::frexp(double(f), &e);  // f = m * 2^e, m in [0.5, 1)
    double mant = std::nearbyint((m * 2.0 - 1.0) * 1024.0);  // 10 fraction bits (current rounding: to even)
    int ex = e - 1 + 15;
    if (mant == 1024.0) {
        mant = 0;
        ++ex;
    }
    return uint16_t((ex << 10) | int(mant));
}

float from_f16(uint16_t h) { return float(std::ldexp(1.0 + double(h & 0x3ff) / 1024.0, int(h >> 10) - 15)); }

struct Case {
    size_t N, K, G;  // G == K: per channel
};

// 70 rows: two gemv tasks of 64; 300 rows: two panel tasks of 256. K = 172
// with G = 32 and K = 300 with G = 128 have a shorter last group. 70 and 130
// groups a row: the AVX-512 gemv tiles widen f16 scales 64 groups at a time
// (a chunk and a part, two chunks and a part).
const Case kCases[] = {{70, 64, 32}, {300, 172, 32}, {70, 300, 128}, {9, 256, 64}, {70, 96, 96}, {20, 2240, 32}, {6, 4160, 32}};

}  // namespace

QKT_TEST(f16_scales_equal_widened_f32) {
    qkt::Rng rng(11, 5);
    for (const Case& c : kCases) {
        for (int bits : {8, 4}) {
            for (bool asym : {false, true}) {
                const size_t N = c.N, K = c.K, G = c.G, ng = (K + G - 1) / G;
                std::vector<float> w(N * K);
                for (auto& v : w) v = rng.uni(-1.0f, 1.0f);
                const qk::QuantSpec s{bits, asym, G == K ? qk::Granularity::channel : qk::Granularity::group, G == K ? 0 : G};
                const size_t rb = qk::packed_row_bytes(bits, K);
                std::vector<int8_t> codes(N * rb);
                std::vector<float> scales(N * ng);
                std::vector<uint8_t> zps(N * ng);
                QKT_CHECK(qk::quantize(w.data(), qk::SrcType::f32, N, K, s, codes.data(), scales.data(), asym ? zps.data() : nullptr) == SIZE_MAX, "finite");
                std::vector<uint16_t> s16(N * ng);
                std::vector<float> widened(N * ng);
                for (size_t i = 0; i < s16.size(); ++i) {
                    s16[i] = to_f16(scales[i]);
                    widened[i] = from_f16(s16[i]);
                }
                for (size_t M : {size_t(1), size_t(3), size_t(5), size_t(16), size_t(37)}) {
                    std::vector<float> x(M * K), bias(N);
                    for (auto& v : x) v = rng.uni(-1.0f, 1.0f);
                    for (auto& v : bias) v = rng.uni(-1.0f, 1.0f);
                    for (int mode = 0; mode < 3; ++mode) {
                        std::vector<float> y32(M * N, -7.0f), y16(M * N, -9.0f);
                        qk::GemmArgs a = qkt::quant_gemm_args(x.data(), M, N, K, bits, codes.data(), rb, widened.data(),
                                                              asym ? zps.data() : nullptr, G, bias.data(), y32.data());
                        a.row_invariant = mode != 0;
                        a.invariant_panel = mode == 2;
                        qk::gemm(*ctx.k, a, nullptr);
                        a.w.scales = nullptr;
                        a.w.scales16 = s16.data();
                        a.y = y16.data();
                        qk::gemm(*ctx.k, a, nullptr);
                        QKT_CHECK(std::memcmp(y16.data(), y32.data(), y32.size() * sizeof(float)) == 0,
                                  "gemm bits=%d asym=%d M=%zu N=%zu K=%zu G=%zu mode=%d: f16 scales differ from their f32 widening", bits, asym, M, N, K,
                                  G, mode);
                    }
                    if (bits != 4 || G % 2 != 0) continue;
                    qk::WeightView v{};
                    v.fmt = qk::WFormat::i4;
                    v.data = codes.data();
                    v.row_bytes = rb;
                    v.scales = widened.data();
                    v.zps = asym ? zps.data() : nullptr;
                    v.group = G;
                    std::vector<float> y32(M * N, -7.0f), y16(M * N, -9.0f);
                    QKT_CHECK(qk::gemm_w4a8(*ctx.k, v, N, K, x.data(), M, bias.data(), y32.data()) == SIZE_MAX, "finite");
                    v.scales = nullptr;
                    v.scales16 = s16.data();
                    QKT_CHECK(qk::gemm_w4a8(*ctx.k, v, N, K, x.data(), M, bias.data(), y16.data()) == SIZE_MAX, "finite");
                    QKT_CHECK(std::memcmp(y16.data(), y32.data(), y32.size() * sizeof(float)) == 0,
                              "w4a8 asym=%d M=%zu N=%zu K=%zu G=%zu: f16 scales differ from their f32 widening", asym, M, N, K, G);
                }
            }
        }
    }
}
