// Tests of the W8A8 int8 GEMM kernel (Kernels::gemm_w8a8) and of the
// dynamic-W8A8 / LLM.int8() drivers (ops/w8a8_ops.h), run once per ISA table
// (ctx.k) against the scalar reference (ctx.ref).
//
//  - Raw int32 sums: bit-identical to the ref and to an int64 model on odd
//    shapes, strides, column sub-ranges and edge codes (all -127 / 127 /
//    mixed / zeros, and the largest K whose sums fit int32).
//  - Fused rescale: bit-identical floats (the rescale is a fixed sequence of
//    IEEE operations, see W8A8Args).
//  - Driver: bit-identical to the ref driver, thread-count independent, and
//    within the stated bound of a float64 product of the dequantized
//    operands (qx * sx) . (Wq * sw): acc is exact, so only the three
//    roundings of ((float)acc * sx) * sw and the bias addition remain:
//      |y - y64| <= 4 u (|acc sx sw| + |bias|) + 4 u |y|,  u = 2^-24
//    (stated with a little slack, 8 u (|P| + |bias|)).
//  - LLM.int8: with injected outlier columns its error against
//    x . W_deq^T (float64) is >= 10x smaller than plain W8A8's; it equals
//    W8A8 bit for bit without outliers and with threshold 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../kernels/kernels.h"
#include "../ops/quantize_ops.h"
#include "../ops/w8a8_ops.h"
#include "../threadpool.h"
#include "harness.h"

namespace {

// Test data: the harness generator with this file's salt.
struct Rng : qkt::Rng {
    explicit Rng(uint64_t seed) : qkt::Rng(seed, 7) {}
};

uint32_t fbits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// 1024: with the unpadded stride (mode 5) the packed kernel takes its
// narrower tiles for weight rows that alias in L1 (gemm_w8a8_packed)
const size_t kKs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 33, 63, 64, 65, 127, 1024, 4097};
const size_t kMs[] = {1, 2, 3, 4, 5, 7, 15, 16, 17, 32, 33, 48, 130};
const size_t kNs[] = {1, 3, 7, 17, 33, 65};

// Operands with padded strides (lda = K + pad, ...), raw int32 mode.
struct Problem {
    size_t M, N, K, lda, ldb, ldc;
    std::vector<uint8_t> a;  // biased
    std::vector<int8_t> b;
    std::vector<int32_t> rowsum;
    std::vector<uint8_t> ap;  // a packed (W8A8Args::ap)
};

Problem make_problem(size_t M, size_t N, size_t K, int mode, Rng& rng) {
    Problem p;
    p.M = M; p.N = N; p.K = K;
    p.lda = K + (mode == 0 ? 3 : 0);
    p.ldb = K + (mode == 0 ? 5 : 0);
    p.ldc = N + (mode == 0 ? 2 : 0);
    p.a.assign(M * p.lda + 64, 0x5a);  // padding bytes are never read into sums
    p.b.assign(N * p.ldb + 64, 0x33);
    for (size_t m = 0; m < M; ++m)
        for (size_t k = 0; k < K; ++k) {
            int q;
            switch (mode) {
                case 1: q = -127; break;
                case 2: q = 127; break;
                case 3: q = (k % 2) ? 127 : -127; break;
                case 4: q = 0; break;
                default: q = rng.irange(-127, 127); break;
            }
            p.a[m * p.lda + k] = uint8_t(q + 128);
        }
    for (size_t n = 0; n < N; ++n)
        for (size_t k = 0; k < K; ++k) {
            int q;
            switch (mode) {
                case 1: q = -127; break;
                case 2: q = 127; break;
                case 3: q = ((k + n) % 3 == 0) ? -127 : 127; break;
                case 4: q = 0; break;
                default: q = rng.irange(-127, 127); break;
            }
            p.b[n * p.ldb + k] = int8_t(q);
        }
    p.rowsum.assign(N, 0);
    for (size_t n = 0; n < N; ++n) {
        int32_t s = 0;
        for (size_t k = 0; k < K; ++k) s += p.b[n * p.ldb + k];
        p.rowsum[n] = s;
    }
    p.ap.assign(qk::w8a8_packed_bytes(M, K), 0xee);
    qk::w8a8_pack_a(p.a.data(), p.lda, M, K, p.ap.data());
    return p;
}

// packed: also pass the packed activations (kernels with a packed path,
// AVX-512 from M = 7, then read those instead of a).
qk::W8A8Args raw_args(const Problem& p, int32_t* c, bool packed = false) {
    qk::W8A8Args a;
    a.a = p.a.data(); a.lda = p.lda; a.sa = nullptr;
    a.ap = packed ? p.ap.data() : nullptr;
    a.M = p.M; a.N = p.N; a.K = p.K;
    a.b = p.b.data(); a.ldb = p.ldb; a.sb = nullptr;
    a.b_rowsum = p.rowsum.data(); a.bias = nullptr; a.accumulate = false;
    a.y = nullptr; a.ldy = 0;
    a.c = c; a.ldc = p.ldc;
    return a;
}

// Runs the kernel over [0, N) in pieces (split = 0: one call; else random cuts).
void run_split(const qk::Kernels& k, const qk::W8A8Args& a, int split, Rng& rng) {
    if (!split) { k.gemm_w8a8(a, 0, a.N); return; }
    size_t n = 0;
    while (n < a.N) {
        const size_t e = n + 1 + rng.next() % 11;
        k.gemm_w8a8(a, n, e < a.N ? e : a.N);
        n = e;
    }
}

void check_raw(qkt::Ctx& ctx, const Problem& p, int split, Rng& rng, const char* what) {
    const int32_t sentinel = 0x7eadbeef;
    std::vector<int32_t> c1(p.M * p.ldc, sentinel), c2(p.M * p.ldc, sentinel), c3(p.M * p.ldc, sentinel);
    run_split(*ctx.ref, raw_args(p, c1.data()), 0, rng);
    run_split(*ctx.k, raw_args(p, c2.data()), split, rng);
    run_split(*ctx.k, raw_args(p, c3.data(), true), split, rng);
    for (size_t i = 0; i < c1.size(); ++i)
        QKT_CHECK(c3[i] == c1[i], "%s packed M=%zu N=%zu K=%zu i=%zu got %d want %d", what, p.M, p.N, p.K, i, c3[i], c1[i]);
    for (size_t m = 0; m < p.M; ++m)
        for (size_t n = 0; n < p.ldc; ++n) {
            const size_t i = m * p.ldc + n;
            QKT_CHECK(c1[i] == c2[i], "%s M=%zu N=%zu K=%zu m=%zu n=%zu got %d want %d", what, p.M, p.N, p.K, m, n, c2[i],
                      c1[i]);
            if (n >= p.N) continue;
            int64_t s = 0;
            for (size_t k = 0; k < p.K; ++k) s += int64_t(int(p.a[m * p.lda + k]) - 128) * p.b[n * p.ldb + k];
            QKT_CHECK(int64_t(c1[i]) == s, "ref vs int64 model %s m=%zu n=%zu %d %lld", what, m, n, c1[i], (long long)s);
        }
}

// A quantized weight built with the library quantizer (8 bits, symmetric, per channel).
struct QWeight {
    std::vector<float> wf;
    std::vector<int8_t> q;
    std::vector<float> scale;
    std::vector<int32_t> rowsum;
    qk::W8A8Weight view() const { return {q.data(), scale.data(), rowsum.data(), scale.size(), q.size() / scale.size()}; }
};

QWeight make_weight(size_t N, size_t K, Rng& rng) {
    QWeight w;
    w.wf.resize(N * K);
    for (auto& v : w.wf) v = rng.uni(-0.5f, 0.5f);
    w.q.resize(N * K);
    w.scale.resize(N);
    w.rowsum.resize(N);
    qk::QuantSpec s{8, false, qk::Granularity::channel, 0};
    qk::quantize(w.wf.data(), qk::SrcType::f32, N, K, s, w.q.data(), w.scale.data(), nullptr);
    qk::w8a8_rowsums(w.q.data(), N, K, w.rowsum.data());
    return w;
}

}  // namespace

// The packing of activations for the outer-product kernels: each ISA's
// w8a8_pack_a equals the ref's byte for byte (rows <= 16 and odd K, padding
// included), and the ops-level packer assembles the blocks.
QKT_TEST(w8a8_pack_a) {
    Rng rng(10);
    for (size_t K : {size_t(1), size_t(3), size_t(4), size_t(5), size_t(63), size_t(64), size_t(65), size_t(130), size_t(4097)})
        for (size_t rows = 0; rows <= 16; ++rows) {
            const size_t lda = K + 3;
            std::vector<uint8_t> a(16 * lda + 64);
            for (auto& v : a) v = uint8_t(rng.next());
            const size_t bytes = qk::w8a8_packed_bytes(16, K);
            std::vector<uint8_t> p1(bytes, 0xee), p2(bytes, 0xdd);
            ctx.ref->w8a8_pack_a(a.data(), lda, rows, K, p1.data());
            ctx.k->w8a8_pack_a(a.data(), lda, rows, K, p2.data());
            QKT_CHECK(p1 == p2, "K=%zu rows=%zu", K, rows);
            for (size_t q = 0; q < (K + 3) / 4; ++q)
                for (size_t i = 0; i < 16; ++i)
                    for (size_t j = 0; j < 4; ++j) {
                        const size_t k = 4 * q + j;
                        const uint8_t want = (i < rows && k < K) ? a[i * lda + k] : 0;
                        QKT_CHECK(p1[q * 64 + 4 * i + j] == want, "layout K=%zu rows=%zu q=%zu i=%zu j=%zu", K, rows, q, i, j);
                    }
        }
    // Several blocks through the driver's packer.
    const size_t M = 37, K = 70;
    std::vector<uint8_t> a(M * K);
    for (auto& v : a) v = uint8_t(rng.next());
    std::vector<uint8_t> p1(qk::w8a8_packed_bytes(M, K)), p2(p1.size());
    qk::w8a8_pack_a(*ctx.ref, a.data(), K, M, K, p1.data());
    qk::w8a8_pack_a(*ctx.k, a.data(), K, M, K, p2.data());
    QKT_CHECK(p1 == p2, "driver packer M=%zu K=%zu", M, K);
    QKT_CHECK(p1[((K + 3) / 4) * 64 * 2 + 64 * 3 + 4 * 4] == a[(32 + 4) * K + 12], "block 2, group 3, row 4");
    QKT_CHECK(p1[((K + 3) / 4) * 64 * 2 + 64 * 3 + 4 * 5] == 0, "row 37 is padding");
}

// Raw int32 sums on every odd shape, strides and column splits.
QKT_TEST(w8a8_i32_shapes) {
    Rng rng(11);
    for (size_t K : kKs)
        for (size_t M : kMs)
            for (size_t N : kNs) {
                if (K == 4097 && (M > 17 || N > 33)) continue;  // keeps the scalar model fast under qemu
                const int mode = (M + N + K) % 2 ? 0 : 5;       // padded or packed strides
                Problem p = make_problem(M, N, K, mode, rng);
                check_raw(ctx, p, int(N % 2), rng, "random");
            }
}

// Wide enough for every grouping of whole 16-row weight tiles (the AMX
// kernel: 1 to 4 tiles against one block of X, 2 x 2 against two, an odd
// last block), with and without a K % 64 tail, split at 16-column bounds
// and at odd ones.
QKT_TEST(w8a8_i32_wide_tiles) {
    Rng rng(17);
    for (size_t K : {size_t(64), size_t(100), size_t(256), size_t(1088)})
        for (size_t M : {size_t(8), size_t(9), size_t(16), size_t(17), size_t(32), size_t(47)})
            for (size_t N : {size_t(48), size_t(63), size_t(100), size_t(130)}) {
                Problem p = make_problem(M, N, K, int(N % 2) ? 0 : 5, rng);
                check_raw(ctx, p, 0, rng, "wide");
                const int32_t sentinel = 0x7eadbeef;
                std::vector<int32_t> c1(p.M * p.ldc, sentinel), c2(p.M * p.ldc, sentinel);
                ctx.ref->gemm_w8a8(raw_args(p, c1.data()), 0, N);
                for (size_t n0 = 0; n0 < N; n0 += 32)
                    ctx.k->gemm_w8a8(raw_args(p, c2.data(), true), n0, std::min(N, n0 + 32));
                QKT_CHECK(c1 == c2, "split by 32 M=%zu N=%zu K=%zu", M, N, K);
            }
}

// The weight codes on a 64-byte line and off it (the AMX kernel reads
// whole-line weight rows in place and copies others onto lines first), with
// row strides that keep the rows on lines or not, against the reference.
QKT_TEST(w8a8_i32_weight_alignment) {
    Rng rng(19);
    for (size_t K : {size_t(64), size_t(161), size_t(768)})
        for (size_t M : {size_t(9), size_t(17), size_t(33), size_t(128)})
            for (size_t off : {size_t(0), size_t(1), size_t(16)})
                for (size_t ldb : {K, (K + 63) / 64 * 64 + 64}) {
                    const size_t N = 100;
                    Problem p = make_problem(M, N, K, 5, rng);
                    std::vector<int8_t> buf(N * ldb + 128, 0x11);
                    int8_t* b = buf.data() + (-reinterpret_cast<uintptr_t>(buf.data()) & 63) + off;
                    for (size_t n = 0; n < N; ++n) std::memcpy(b + n * ldb, p.b.data() + n * p.ldb, K);
                    const int32_t sentinel = 0x7eadbeef;
                    std::vector<int32_t> c1(M * p.ldc, sentinel), c2(M * p.ldc, sentinel);
                    ctx.ref->gemm_w8a8(raw_args(p, c1.data()), 0, N);
                    qk::W8A8Args a = raw_args(p, c2.data(), true);
                    a.b = b;
                    a.ldb = ldb;
                    ctx.k->gemm_w8a8(a, 0, 48);
                    ctx.k->gemm_w8a8(a, 48, N);
                    QKT_CHECK(c1 == c2, "M=%zu K=%zu offset %zu ldb %zu", M, K, off, ldb);
                }
}

// Edge codes: every product at +-127*127, zeros, and the largest K whose
// sums fit in int32 (the VNNI bias compensation wraps and comes back).
QKT_TEST(w8a8_i32_edge_codes) {
    Rng rng(12);
    const char* names[] = {"random", "all -127", "all 127", "mixed", "zeros"};
    for (int mode = 1; mode <= 4; ++mode)
        for (size_t K : {size_t(1), size_t(33), size_t(64), size_t(65), size_t(4097)})
            for (size_t M : {size_t(1), size_t(3), size_t(5), size_t(16), size_t(17)}) {
                Problem p = make_problem(M, 7, K, mode, rng);
                check_raw(ctx, p, 0, rng, names[mode]);
            }
    for (int mode = 1; mode <= 3; ++mode) {
        Problem p = make_problem(2, 3, qk::kW8A8MaxK, mode, rng);
        check_raw(ctx, p, 0, rng, names[mode]);
        Problem p17 = make_problem(17, 3, qk::kW8A8MaxK, mode, rng);  // packed path
        check_raw(ctx, p17, 0, rng, names[mode]);
        if (mode != 3) {
            std::vector<int32_t> c(2 * p.ldc);
            ctx.k->gemm_w8a8(raw_args(p, c.data()), 0, 3);
            QKT_CHECK(c[0] == int32_t(qk::kW8A8MaxK * 16129), "max sum %d", c[0]);
        }
    }
}

// Fused rescale: bit-identical floats, with and without bias / accumulate.
QKT_TEST(w8a8_fused_vs_ref) {
    Rng rng(13);
    for (size_t K : {size_t(1), size_t(7), size_t(64), size_t(65), size_t(127), size_t(4097)})
        for (size_t M : {size_t(1), size_t(2), size_t(3), size_t(4), size_t(5), size_t(16), size_t(17), size_t(33),
                         size_t(48)})
            for (size_t N : {size_t(1), size_t(7), size_t(17), size_t(65)})
                for (int variant = 0; variant < 4; ++variant) {
                    if (K == 4097 && M > 5) continue;
                    Problem p = make_problem(M, N, K, int(K % 2) ? 0 : 5, rng);
                    std::vector<float> sa(M), sb(N), bias(N);
                    for (auto& v : sa) v = rng.uni(1e-4f, 0.05f);
                    for (auto& v : sb) v = rng.uni(1e-4f, 0.05f);
                    for (auto& v : bias) v = rng.uni(-1.0f, 1.0f);
                    const size_t ldy = N + 1;
                    std::vector<float> y0(M * ldy);
                    for (auto& v : y0) v = rng.uni(-2.0f, 2.0f);
                    std::vector<float> y1 = y0, y2 = y0;
                    qk::W8A8Args a = raw_args(p, nullptr, (variant + M) % 2 == 1);
                    a.sa = sa.data();
                    a.sb = sb.data();
                    a.bias = (variant & 1) ? bias.data() : nullptr;
                    a.accumulate = (variant & 2) != 0;
                    a.ldy = ldy;
                    a.y = y1.data();
                    ctx.ref->gemm_w8a8(a, 0, N);
                    a.y = y2.data();
                    run_split(*ctx.k, a, int(M % 2), rng);
                    for (size_t i = 0; i < M * ldy; ++i)
                        QKT_CHECK(fbits(y1[i]) == fbits(y2[i]), "M=%zu N=%zu K=%zu v=%d i=%zu got %a want %a", M, N, K,
                                  variant, i, y2[i], y1[i]);
                    // The spec's order of operations, recomputed here.
                    for (size_t m = 0; m < M; ++m)
                        for (size_t n = 0; n < N; ++n) {
                            int32_t acc = 0;
                            for (size_t k = 0; k < K; ++k)
                                acc += (int(p.a[m * p.lda + k]) - 128) * int(p.b[n * p.ldb + k]);
                            float v = float(acc) * sa[m];
                            v = v * sb[n];
                            if (a.accumulate) v = v + y0[m * ldy + n];
                            if (a.bias) v = v + a.bias[n];
                            QKT_CHECK(fbits(v) == fbits(y1[m * ldy + n]), "ref vs spec m=%zu n=%zu", m, n);
                        }
                }
}

// Driver: the activation codes equal qk::quantize's (8-bit symmetric per
// channel); the output equals the ref driver bit for bit and is within the
// stated bound of the float64 product of the dequantized operands.
QKT_TEST(w8a8_driver_vs_dequantized) {
    Rng rng(14);
    for (size_t K : {size_t(1), size_t(9), size_t(63), size_t(65), size_t(1000)})
        for (size_t M : {size_t(1), size_t(2), size_t(4), size_t(7), size_t(33)})
            for (size_t N : {size_t(1), size_t(17), size_t(65)}) {
                QWeight w = make_weight(N, K, rng);
                std::vector<float> x(M * K), bias(N);
                for (auto& v : x) v = rng.uni(-3.0f, 3.0f);
                if (M > 2) for (size_t k = 0; k < K; ++k) x[2 * K + k] = 0.0f;      // zero row
                if (M > 3) for (size_t k = 0; k < K; ++k) x[3 * K + k] = -1.25f;    // constant row
                for (auto& v : bias) v = rng.uni(-1.0f, 1.0f);
                std::vector<float> y1(M * N), y2(M * N);
                QKT_CHECK(qk::gemm_w8a8(*ctx.ref, w.view(), x.data(), M, bias.data(), y1.data()) == SIZE_MAX, "ret");
                QKT_CHECK(qk::gemm_w8a8(*ctx.k, w.view(), x.data(), M, bias.data(), y2.data()) == SIZE_MAX, "ret");
                for (size_t i = 0; i < M * N; ++i)
                    QKT_CHECK(fbits(y1[i]) == fbits(y2[i]), "M=%zu N=%zu K=%zu i=%zu got %a want %a", M, N, K, i, y2[i], y1[i]);
                // The activation codes and scales.
                std::vector<uint8_t> a(M * K);
                std::vector<float> sx(M), sq(M);
                std::vector<int8_t> q(M * K);
                QKT_CHECK(qk::w8a8_quantize_rows(*ctx.k, x.data(), M, K, nullptr, a.data(), sx.data()) == SIZE_MAX, "q");
                qk::QuantSpec s{8, false, qk::Granularity::channel, 0};
                qk::quantize(x.data(), qk::SrcType::f32, M, K, s, q.data(), sq.data(), nullptr);
                for (size_t m = 0; m < M; ++m) QKT_CHECK(fbits(sx[m]) == fbits(sq[m]), "scale m=%zu", m);
                for (size_t i = 0; i < M * K; ++i) QKT_CHECK(int(a[i]) - 128 == q[i], "code i=%zu", i);
                const double u = std::ldexp(1.0, -24);
                for (size_t m = 0; m < M; ++m)
                    for (size_t n = 0; n < N; ++n) {
                        double P = 0;
                        for (size_t k = 0; k < K; ++k)
                            P += (double(q[m * K + k]) * sx[m]) * (double(w.q[n * K + k]) * w.scale[n]);
                        const double y64 = P + bias[n];
                        const double bound = 8 * u * (std::fabs(P) + std::fabs(bias[n])) + 1e-30;
                        QKT_CHECK(std::fabs(y2[m * N + n] - y64) <= bound, "M=%zu N=%zu K=%zu m=%zu n=%zu y=%.9g y64=%.9g",
                                  M, N, K, m, n, y2[m * N + n], y64);
                    }
            }
    // NaN / Inf in X is reported by flat index; K = 0 gives the bias.
    QWeight w = make_weight(5, 40, rng);
    std::vector<float> x(3 * 40, 0.5f), y(15);
    x[2 * 40 + 7] = NAN;
    x[2 * 40 + 9] = INFINITY;
    QKT_CHECK(qk::gemm_w8a8(*ctx.k, w.view(), x.data(), 3, nullptr, y.data()) == 2 * 40 + 7, "nan index");
    size_t nout = 99;
    QKT_CHECK(qk::gemm_llm_int8(*ctx.k, w.view(), x.data(), 3, 6.0f, nullptr, y.data(), &nout) == 2 * 40 + 7,
              "nan index llm");
    const float b5[] = {1, 2, 3, 4, 5};
    qk::W8A8Weight w0{nullptr, w.scale.data(), w.rowsum.data(), 5, 0};
    QKT_CHECK(qk::gemm_w8a8(*ctx.k, w0, x.data(), 3, b5, y.data()) == SIZE_MAX, "K=0");
    for (size_t i = 0; i < 15; ++i) QKT_CHECK(y[i] == b5[i % 5], "K=0 i=%zu", i);
}

// Results do not depend on the thread count (1, 2, 7).
QKT_TEST(w8a8_threads) {
    Rng rng(15);
    const size_t before = qk::threads();
    for (size_t M : {size_t(1), size_t(3), size_t(16), size_t(130)}) {
        const size_t N = 333, K = 257;
        QWeight w = make_weight(N, K, rng);
        std::vector<float> x(M * K), bias(N);
        for (auto& v : x) v = rng.uni(-2.0f, 2.0f);
        for (size_t m = 0; m < M; ++m) x[m * K + 5] = 30.0f;  // an outlier column for LLM.int8
        for (auto& v : bias) v = rng.uni(-1.0f, 1.0f);
        std::vector<float> ref, refl;
        for (size_t t : {size_t(1), size_t(2), size_t(7)}) {
            qk::set_threads(t);
            std::vector<float> y(M * N), yl(M * N);
            qk::gemm_w8a8(*ctx.k, w.view(), x.data(), M, bias.data(), y.data());
            size_t no = 0;
            qk::gemm_llm_int8(*ctx.k, w.view(), x.data(), M, 6.0f, bias.data(), yl.data(), &no);
            QKT_CHECK(no == 1, "outliers %zu", no);
            if (ref.empty()) { ref = y; refl = yl; continue; }
            for (size_t i = 0; i < M * N; ++i) {
                QKT_CHECK(fbits(y[i]) == fbits(ref[i]), "threads=%zu M=%zu i=%zu", t, M, i);
                QKT_CHECK(fbits(yl[i]) == fbits(refl[i]), "llm threads=%zu M=%zu i=%zu", t, M, i);
            }
        }
    }
    qk::set_threads(before);
}

// LLM.int8 with ~0.5% outlier columns of magnitude 20..60: >= 10x smaller
// error than W8A8 against x . W_deq^T in float64; equal to W8A8 without
// outliers and with threshold 0.
QKT_TEST(w8a8_llm_int8) {
    Rng rng(16);
    for (size_t M : {size_t(1), size_t(5), size_t(33)}) {
        const size_t K = 1024, N = 65;
        QWeight w = make_weight(N, K, rng);
        std::vector<float> x(M * K), bias(N);
        for (auto& v : x) v = rng.uni(-1.0f, 1.0f);
        for (auto& v : bias) v = rng.uni(-0.5f, 0.5f);
        const size_t out_cols[] = {3, 200, 511, 512, 1023};  // 5 / 1024 ~ 0.5%
        std::vector<float> xc = x;                           // without outliers
        for (size_t m = 0; m < M; ++m)
            for (size_t c : out_cols) x[m * K + c] = (rng.next() & 1 ? 1.0f : -1.0f) * rng.uni(20.0f, 60.0f);
        std::vector<float> y8(M * N), yl(M * N), yc(M * N), ylc(M * N), y0(M * N);
        size_t no = 0;
        qk::gemm_w8a8(*ctx.k, w.view(), x.data(), M, bias.data(), y8.data());
        QKT_CHECK(qk::gemm_llm_int8(*ctx.k, w.view(), x.data(), M, 6.0f, bias.data(), yl.data(), &no) == SIZE_MAX, "ret");
        QKT_CHECK(no == 5, "outlier columns %zu", no);
        double e8 = 0, el = 0;
        std::vector<double> sa(M * N);  // sum |x w|, for the float part's tolerance below
        for (size_t m = 0; m < M; ++m)
            for (size_t n = 0; n < N; ++n) {
                double y64 = bias[n];
                for (size_t k = 0; k < K; ++k) {
                    const double t = double(x[m * K + k]) * (double(w.q[n * K + k]) * w.scale[n]);
                    y64 += t;
                    sa[m * N + n] += std::fabs(t);
                }
                e8 = std::fmax(e8, std::fabs(y8[m * N + n] - y64));
                el = std::fmax(el, std::fabs(yl[m * N + n] - y64));
            }
        QKT_CHECK(el * 10 <= e8, "M=%zu llm err %g w8a8 err %g", M, el, e8);
        // Threshold 0 (disabled) and no column reaching the threshold: W8A8 exactly.
        qk::gemm_llm_int8(*ctx.k, w.view(), x.data(), M, 0.0f, bias.data(), y0.data(), &no);
        QKT_CHECK(no == 0, "disabled %zu", no);
        qk::gemm_w8a8(*ctx.k, w.view(), xc.data(), M, bias.data(), yc.data());
        qk::gemm_llm_int8(*ctx.k, w.view(), xc.data(), M, 6.0f, bias.data(), ylc.data(), &no);
        QKT_CHECK(no == 0, "clean %zu", no);
        for (size_t i = 0; i < M * N; ++i) {
            QKT_CHECK(fbits(y0[i]) == fbits(y8[i]), "threshold 0 i=%zu", i);
            QKT_CHECK(fbits(ylc[i]) == fbits(yc[i]), "no outliers i=%zu", i);
        }
        // The int8 part of LLM.int8 is bit-exact across ISAs; the float part
        // goes through qk::gemm (ISA summation order; int8 outlier columns,
        // decoded: the amx table's split-bf16 panels): close to the ref.
        std::vector<float> ylr(M * N);
        qk::gemm_llm_int8(*ctx.ref, w.view(), x.data(), M, 6.0f, bias.data(), ylr.data(), &no);
        const double slack = qkt::panel_dq_slack(*ctx.k, qk::WFormat::i8);
        for (size_t i = 0; i < M * N; ++i)
            QKT_CHECK(std::fabs(ylr[i] - yl[i]) <= 1e-4f * (1.0f + std::fabs(ylr[i])) + slack * sa[i],
                      "llm vs ref i=%zu %g %g", i, yl[i], ylr[i]);
    }
}

// LLM.int8() with per-row outlier columns (gemm_llm_int8_rows): each row
// has its own outliers (rows differ); the result is as accurate as the
// shared-column form against a float64 evaluation, every row equals, bit
// for bit, that row computed alone (and on any ISA: the float part is a
// plain ordered sum, the int8 part exact), and a row without outliers is
// W8A8 exactly.
QKT_TEST(w8a8_llm_int8_rows) {
    Rng rng(17);
    const size_t K = 1024, N = 65, M = 21;  // 21 rows: the packed kernel (16 rows) and the rest
    QWeight w = make_weight(N, K, rng);
    std::vector<float> x(M * K), bias(N);
    for (auto& v : x) v = rng.uni(-1.0f, 1.0f);
    for (auto& v : bias) v = rng.uni(-0.5f, 0.5f);
    std::vector<size_t> nout(M);
    for (size_t m = 1; m < M; ++m) {  // row 0: no outlier
        nout[m] = 1 + m % 6;
        for (size_t j = 0; j < nout[m]; ++j) x[m * K + (m * 131 + j * 389) % K] = (rng.next() & 1 ? 1.0f : -1.0f) * rng.uni(20.0f, 60.0f);
    }
    std::vector<float> y(M * N), yr(M * N), y8(M * N);
    size_t most = 0;
    QKT_CHECK(qk::gemm_llm_int8_rows(*ctx.k, w.view(), x.data(), M, 6.0f, bias.data(), y.data(), &most) == SIZE_MAX, "ret");
    QKT_CHECK(most == 6, "most outlier columns of a row %zu", most);
    qk::gemm_w8a8(*ctx.k, w.view(), x.data(), M, bias.data(), y8.data());
    double e8 = 0, el = 0;
    for (size_t m = 0; m < M; ++m) {
        std::vector<float> one(N), oneref(N);
        size_t no = 0;
        qk::gemm_llm_int8_rows(*ctx.k, w.view(), x.data() + m * K, 1, 6.0f, bias.data(), one.data(), &no);
        QKT_CHECK(no == nout[m], "row %zu: %zu outlier columns, want %zu", m, no, nout[m]);
        qk::gemm_llm_int8_rows(*ctx.ref, w.view(), x.data() + m * K, 1, 6.0f, bias.data(), oneref.data(), &no);
        for (size_t n = 0; n < N; ++n) {
            QKT_CHECK(fbits(one[n]) == fbits(y[m * N + n]), "row %zu col %zu alone %g, among %zu rows %g", m, n, one[n], M, y[m * N + n]);
            QKT_CHECK(fbits(oneref[n]) == fbits(y[m * N + n]), "row %zu col %zu: the reference table gives %g, this one %g", m, n, oneref[n], y[m * N + n]);
            if (m == 0) QKT_CHECK(fbits(y[n]) == fbits(y8[n]), "row 0 (no outlier) col %zu: %g, W8A8 %g", n, y[n], y8[n]);
            double y64 = bias[n];
            for (size_t k = 0; k < K; ++k) y64 += double(x[m * K + k]) * (double(w.q[n * K + k]) * w.scale[n]);
            if (m > 0) {
                e8 = std::fmax(e8, std::fabs(y8[m * N + n] - y64));
                el = std::fmax(el, std::fabs(y[m * N + n] - y64));
            }
        }
    }
    QKT_CHECK(el * 10 <= e8, "per-row llm err %g w8a8 err %g", el, e8);
}

// gemm_w8a8_multi: each product bit for bit what gemm_w8a8 gives it alone
// (q/k/v widths, an empty one, bias on some), for rows below and above the
// packed-activation threshold, 1 and 2 threads; a NaN reported at its index.
QKT_TEST(w8a8_multi_equals_single) {
    Rng rng(21);
    const size_t before = qk::threads();
    const size_t K = 257;
    const size_t Ns[] = {96, 0, 33, 40};
    std::vector<QWeight> ws;
    std::vector<std::vector<float>> biases;
    for (size_t N : Ns) {
        ws.push_back(make_weight(N, K, rng));
        biases.emplace_back(N);
        for (float& b : biases.back()) b = rng.uni(-1.0f, 1.0f);
    }
    for (size_t M : {size_t(1), size_t(5), size_t(16), size_t(70)}) {
        std::vector<float> x(M * K);
        for (auto& v : x) v = rng.uni(-2.0f, 2.0f);
        for (size_t t : {size_t(1), size_t(2)}) {
            qk::set_threads(t);
            std::vector<qk::W8A8Product> ps;
            std::vector<std::vector<float>> ys(4), want(4);
            for (size_t p = 0; p < 4; ++p) {
                const float* b = p % 2 == 0 ? biases[p].data() : nullptr;
                want[p].assign(M * Ns[p], 0.0f);
                ys[p].assign(M * Ns[p], 777.0f);
                // (view() divides by N to find K)
                const qk::W8A8Weight v = Ns[p] ? ws[p].view() : qk::W8A8Weight{nullptr, nullptr, nullptr, 0, K};
                QKT_CHECK(qk::gemm_w8a8(*ctx.k, v, x.data(), M, b, want[p].data()) == SIZE_MAX, "finite");
                ps.push_back({v, b, ys[p].data()});
            }
            QKT_CHECK(qk::gemm_w8a8_multi(*ctx.k, ps.data(), 4, x.data(), M) == SIZE_MAX, "finite");
            for (size_t p = 0; p < 4; ++p)
                for (size_t i = 0; i < M * Ns[p]; ++i)
                    QKT_CHECK(fbits(ys[p][i]) == fbits(want[p][i]), "%s M=%zu threads=%zu product %zu: y[%zu]", ctx.k->name, M, t, p, i);
            x[K + 7 < M * K ? K + 7 : 7] = NAN;
            QKT_CHECK(qk::gemm_w8a8_multi(*ctx.k, ps.data(), 4, x.data(), M) == (K + 7 < M * K ? K + 7 : 7), "NaN index");
            x[K + 7 < M * K ? K + 7 : 7] = 0.25f;
        }
    }
    qk::set_threads(before);
}
