// Tests of the quantization element loops, conversions and sub-byte packing:
// every ISA table bit-exact against the scalar reference on many shapes and
// edge values, and the reference itself pinned to hand-computed values and
// to an independent model (double-precision division).
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>

#include "harness.h"

namespace {

// Deterministic xorshift64* generator.
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 1) {}
    uint64_t next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 0x2545f4914f6cdd1dull;
    }
    float uniform(float lo, float hi) { return lo + (hi - lo) * float(next() >> 40) * 0x1p-24f; }
    int32_t range(int32_t lo, int32_t hi) { return lo + int32_t(next() % uint64_t(hi - lo + 1)); }
};

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

const size_t kSizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 4097};
const size_t kGroups[] = {1, 2, 6, 8, 16, 32, 34, 64, 128};

// (n_groups, G) shapes: one group of every size, and 1..3 groups of every G.
std::vector<std::pair<size_t, size_t>> shapes(bool even_g) {
    std::vector<std::pair<size_t, size_t>> r;
    for (size_t n : kSizes)
        if (!even_g || n % 2 == 0) r.push_back({1, n});
    for (size_t n : kSizes)
        if (!even_g || n % 2 == 0) r.push_back({3, n});
    for (size_t G : kGroups)
        if (!even_g || G % 2 == 0)
            for (size_t ng : {1, 2, 3, 5}) r.push_back({ng, G});
    if (even_g) r.push_back({2, 4098});
    return r;
}

enum Fill { kRandom, kZeros, kConst, kHuge, kTiny, kSubnormal, kNegative, kHalves, kClamp, kMixed, kFillCount };
const char* const kFillNames[] = {"random", "zeros",  "const",  "huge",  "tiny",
                                  "subnormal", "negative", "halves", "clamp", "mixed"};

// x[n] filled per pattern; the halves pattern is exact multiples of s/2 for s = 0.25.
std::vector<float> make_data(Fill f, size_t n, Rng& rng) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) {
        switch (f) {
            case kRandom: x[i] = rng.uniform(-3.0f, 3.0f); break;
            case kZeros: x[i] = (i & 1) ? -0.0f : 0.0f; break;
            case kConst: x[i] = 1.75f; break;
            case kHuge: x[i] = 3.0e38f * rng.uniform(-1.0f, 1.0f); break;
            case kTiny: x[i] = rng.uniform(-1e-30f, 1e-30f); break;
            case kSubnormal: x[i] = from_bits(uint32_t(rng.next() & 0x807fffffu)); break;
            case kNegative: x[i] = rng.uniform(-100.0f, -1e-3f); break;
            case kHalves: x[i] = (float(rng.range(-300, 300)) + 0.5f) * 0.25f; break;
            case kClamp: x[i] = rng.uniform(-1e6f, 1e6f); break;
            case kMixed: {
                const float v[] = {0.0f, -0.0f, 1e-40f, -3e38f, 3e38f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 1e-6f};
                x[i] = v[rng.next() % (sizeof v / sizeof v[0])];
                break;
            }
            default: break;
        }
    }
    return x;
}

struct QRange { int32_t qmin, qmax; bool asym; };
// Every range the library uses: int8 sym/asym, int4 sym/asym, int2.
const QRange kRanges[] = {{-127, 127, false}, {-128, 127, true}, {-8, 7, false}, {0, 15, true}, {0, 3, true}};

// Independent model of quantize: a correctly rounded float quotient via
// double division (53 >= 2*24 + 2 bits, so no double-rounding error).
int8_t model_q(float x, float s, int32_t z, int32_t qmin, int32_t qmax) {
    const float quot = float(double(x) / double(s));
    double v = std::nearbyint(double(quot)) + z;
    if (!(v > qmin)) v = qmin;
    if (v > qmax) v = qmax;
    return int8_t(v);
}

}  // namespace

// The spec pinned to hand-computed values (checked on every ISA table).
QKT_TEST(quant_pinned_values) {
    const float x[] = {2.5f, -0.5f, 1.5f, 0.5f, -1.5f, -2.5f, 3.49f, 127.5f, 1000.0f, -1000.0f, 0.0f, -0.0f};
    const int8_t want_sym[] = {2, 0, 2, 0, -2, -2, 3, 127, 127, -127, 0, 0};
    const float one = 1.0f;
    int8_t q[12];
    for (const qk::Kernels* k : {ctx.ref, ctx.k}) {
        k->quantize(x, 1, 12, &one, nullptr, -127, 127, q);
        for (int i = 0; i < 12; ++i) QKT_CHECK(q[i] == want_sym[i], "%s i=%d got %d want %d", k->name, i, q[i], want_sym[i]);
        // zp applied after rounding: rne(2.5) - 3 = -1; -1000 clamps to -128.
        const int32_t zp = -3;
        const int8_t want_asym[] = {-1, -3, -1, -3, -5, -5, 0, 125, 127, -128, -3, -3};
        k->quantize(x, 1, 12, &one, &zp, -128, 127, q);
        for (int i = 0; i < 12; ++i) QKT_CHECK(q[i] == want_asym[i], "%s i=%d got %d want %d", k->name, i, q[i], want_asym[i]);
        // int4 / int2 ranges clamp.
        const int32_t zp8 = 8;
        const int8_t want_u4[] = {10, 8, 10, 8, 6, 6, 11, 15, 15, 0, 8, 8};
        k->quantize(x, 1, 12, &one, &zp8, 0, 15, q);
        for (int i = 0; i < 12; ++i) QKT_CHECK(q[i] == want_u4[i], "%s i=%d got %d want %d", k->name, i, q[i], want_u4[i]);
        // One division, not a reciprocal multiply: 2.25f / 0.3f = 7.4999995f and
        // 8.25f / 0.3f = 27.499998f (x * (1 / 0.3f) gives 7.5 and 27.5, which
        // would round to 8 and 28); 0x40700001 / 0.3f = 12.5 exactly -> 12.
        // Huge quotients (inf) clamp.
        const float x2[] = {2.25f, 8.25f, from_bits(0x40700001u), 3e38f, -3e38f};
        const float s2 = 0.3f;
        int8_t q2[5];
        k->quantize(x2, 1, 5, &s2, nullptr, -127, 127, q2);
        QKT_CHECK(q2[0] == 7 && q2[1] == 27 && q2[2] == 12 && q2[3] == 127 && q2[4] == -127, "%s %d %d %d %d %d", k->name,
                  q2[0], q2[1], q2[2], q2[3], q2[4]);
        // The same through the vector bodies: quotients near k + 0.5 where a
        // reciprocal multiply rounds differently from the division.
        std::vector<float> x3;
        int sensitive = 0;
        for (int j = -127; j < 127; ++j) {
            const float v = float(double(j + 0.5) * double(s2));
            x3.push_back(v);
            sensitive += std::nearbyint(v / s2) != std::nearbyint(v * (1.0f / s2));
        }
        QKT_CHECK(sensitive > 8, "test data lost its reciprocal-sensitive cases: %d", sensitive);
        std::vector<int8_t> q3(x3.size());
        k->quantize(x3.data(), 1, x3.size(), &s2, nullptr, -128, 127, q3.data());
        for (size_t i = 0; i < x3.size(); ++i) {
            const int8_t m = model_q(x3[i], s2, 0, -128, 127);
            QKT_CHECK(q3[i] == m, "%s x=%a got %d want %d", k->name, x3[i], q3[i], m);
        }
        // dequantize: (q - zp) * s, int32 subtraction.
        const int8_t dq[] = {-128, 127, 0, 5};
        const int32_t dz = 127;
        const float ds = 0.5f;
        float y[4];
        k->dequantize_i8(dq, 1, 4, &ds, &dz, y);
        QKT_CHECK(y[0] == -127.5f && y[1] == 0.0f && y[2] == -63.5f && y[3] == -61.0f, "%s %g %g %g %g", k->name, y[0], y[1], y[2], y[3]);
        const uint8_t p4[] = {0xE1, 0x87};  // signed {1, -2, 7, -8}; unsigned {1, 14, 7, 8}
        k->dequantize_i4(p4, 1, 4, &ds, nullptr, true, y);
        QKT_CHECK(y[0] == 0.5f && y[1] == -1.0f && y[2] == 3.5f && y[3] == -4.0f, "%s %g %g %g %g", k->name, y[0], y[1], y[2], y[3]);
        const int32_t z4 = 8;
        k->dequantize_i4(p4, 1, 4, &ds, &z4, false, y);
        QKT_CHECK(y[0] == -3.5f && y[1] == 3.0f && y[2] == -0.5f && y[3] == 0.0f, "%s %g %g %g %g", k->name, y[0], y[1], y[2], y[3]);
    }
}

// Random shapes/patterns/ranges: ISA == ref bit for bit, ref == model, and no
// write past the end.
QKT_TEST(quant_quantize_vs_ref) {
    Rng rng(1);
    for (auto [ng, G] : shapes(false)) {
        const size_t n = ng * G;
        for (int f = 0; f < kFillCount; ++f) {
            // +1 offset: unaligned input.
            std::vector<float> buf = make_data(Fill(f), n + 1, rng);
            const float* x = buf.data() + 1;
            for (const QRange& r : kRanges) {
                for (int zmode = 0; zmode < 2; ++zmode) {
                    std::vector<float> scale(ng);
                    std::vector<int32_t> zp(ng);
                    for (size_t g = 0; g < ng; ++g) {
                        float amax = 0;
                        for (size_t i = 0; i < G; ++i) amax = std::fmax(amax, std::fabs(x[g * G + i]));
                        const float factor = (g % 3 == 0) ? 1.0f : (g % 3 == 1 ? 0.37f : 2.0f);
                        float s = amax > 0 ? amax / float(r.qmax - r.qmin) * factor : 1.0f;
                        if (!(s > 0) || !std::isfinite(s)) s = 1.0f;
                        if (f == kHalves) s = 0.25f;
                        if (f == kClamp && g == 1) s = 1e-38f;  // quotients overflow to inf
                        scale[g] = s;
                        zp[g] = r.asym ? rng.range(r.qmin, r.qmax) : 0;  // sym: non-null zeros
                    }
                    const int32_t* zpp = zmode ? zp.data() : nullptr;
                    std::vector<int8_t> a(n + 64, 0x5a), b(n + 64, 0x5a);
                    ctx.ref->quantize(x, ng, G, scale.data(), zpp, r.qmin, r.qmax, a.data());
                    ctx.k->quantize(x, ng, G, scale.data(), zpp, r.qmin, r.qmax, b.data());
                    for (size_t i = 0; i < n + 64; ++i) {
                        const size_t g = i / G;
                        QKT_CHECK(a[i] == b[i], "ng=%zu G=%zu fill=%s q=[%d,%d] zp=%d i=%zu x=%a s=%a got %d want %d", ng, G,
                                  kFillNames[f], r.qmin, r.qmax, zmode, i, i < n ? x[i] : 0.0f, i < n ? scale[g] : 0.0f,
                                  b[i], a[i]);
                        if (i < n) {
                            const int8_t m = model_q(x[i], scale[g], zpp ? zpp[g] : 0, r.qmin, r.qmax);
                            QKT_CHECK(a[i] == m, "ref vs model i=%zu x=%a s=%a got %d want %d", i, x[i], scale[g], a[i], m);
                            QKT_CHECK(a[i] >= r.qmin && a[i] <= r.qmax, "range i=%zu %d", i, a[i]);
                        } else {
                            QKT_CHECK(b[i] == 0x5a, "wrote past the end: ng=%zu G=%zu i=%zu", ng, G, i);
                        }
                    }
                }
            }
        }
    }
}

// Quotients exactly at k + 0.5 round to even, through the vector bodies.
QKT_TEST(quant_round_half_even) {
    std::vector<float> x;
    for (int k = -130; k <= 130; ++k) x.push_back((float(k) + 0.5f) * 0.125f);
    const float s = 0.125f;
    std::vector<int8_t> q(x.size());
    ctx.k->quantize(x.data(), 1, x.size(), &s, nullptr, -128, 127, q.data());
    for (size_t i = 0; i < x.size(); ++i) {
        const int k = int(i) - 130;
        int want = (k % 2 == 0) ? k : k + 1;  // k + 0.5 -> the even neighbour
        want = want < -128 ? -128 : (want > 127 ? 127 : want);
        QKT_CHECK(q[i] == want, "k=%d got %d want %d", k, q[i], want);
    }
}

QKT_TEST(quant_dequantize_vs_ref) {
    Rng rng(2);
    for (auto [ng, G] : shapes(false)) {
        const size_t n = ng * G;
        std::vector<int8_t> qbuf(n + 1);
        for (auto& v : qbuf) v = int8_t(rng.next());
        const int8_t* q = qbuf.data() + 1;
        std::vector<float> scale(ng);
        std::vector<int32_t> zp(ng);
        for (size_t g = 0; g < ng; ++g) {
            scale[g] = g == 0 ? 3e38f / 255 : rng.uniform(1e-5f, 2.0f);
            zp[g] = rng.range(-128, 127);
        }
        for (const int32_t* zpp : {(const int32_t*)nullptr, (const int32_t*)zp.data()}) {
            std::vector<float> a(n + 16, 7.0f), b(n + 16, 7.0f);
            ctx.ref->dequantize_i8(q, ng, G, scale.data(), zpp, a.data());
            ctx.k->dequantize_i8(q, ng, G, scale.data(), zpp, b.data());
            for (size_t i = 0; i < n + 16; ++i) {
                QKT_CHECK(bits(a[i]) == bits(b[i]), "ng=%zu G=%zu i=%zu got %a want %a", ng, G, i, b[i], a[i]);
                if (i < n) {
                    const float m = float(int32_t(q[i]) - (zpp ? zpp[i / G] : 0)) * scale[i / G];
                    QKT_CHECK(bits(a[i]) == bits(m), "ref i=%zu", i);
                }
            }
        }
    }
}

QKT_TEST(quant_dequantize_i4_vs_ref) {
    Rng rng(3);
    for (auto [ng, G] : shapes(true)) {
        const size_t n = ng * G;
        std::vector<uint8_t> pbuf(n / 2 + 1);
        for (auto& v : pbuf) v = uint8_t(rng.next());
        const uint8_t* p = pbuf.data() + 1;
        std::vector<float> scale(ng);
        std::vector<int32_t> zp(ng);
        for (size_t g = 0; g < ng; ++g) {
            scale[g] = rng.uniform(1e-5f, 2.0f);
            zp[g] = rng.range(0, 15);
        }
        for (bool is_signed : {true, false}) {
            for (const int32_t* zpp : {(const int32_t*)nullptr, (const int32_t*)zp.data()}) {
                std::vector<float> a(n + 16, 7.0f), b(n + 16, 7.0f);
                ctx.ref->dequantize_i4(p, ng, G, scale.data(), zpp, is_signed, a.data());
                ctx.k->dequantize_i4(p, ng, G, scale.data(), zpp, is_signed, b.data());
                for (size_t i = 0; i < n + 16; ++i) {
                    QKT_CHECK(bits(a[i]) == bits(b[i]), "ng=%zu G=%zu signed=%d i=%zu got %a want %a", ng, G, is_signed, i,
                              b[i], a[i]);
                    if (i < n) {
                        int v = (p[i / 2] >> (4 * (i % 2))) & 15;
                        if (is_signed && v >= 8) v -= 16;
                        const float m = float(v - (zpp ? zpp[i / G] : 0)) * scale[i / G];
                        QKT_CHECK(bits(a[i]) == bits(m), "ref i=%zu", i);
                    }
                }
            }
        }
    }
}

QKT_TEST(quant_minmax_absmax_vs_ref) {
    Rng rng(4);
    for (auto [ng, G] : shapes(false)) {
        const size_t n = ng * G;
        for (int f = 0; f < kFillCount; ++f) {
            std::vector<float> buf = make_data(Fill(f), n + 1, rng);
            const float* x = buf.data() + 1;
            std::vector<float> mn_a(ng), mx_a(ng), mn_b(ng), mx_b(ng), am_a(ng), am_b(ng);
            const size_t ra = ctx.ref->minmax(x, ng, G, mn_a.data(), mx_a.data());
            const size_t rb = ctx.k->minmax(x, ng, G, mn_b.data(), mx_b.data());
            QKT_CHECK(ra == SIZE_MAX && rb == SIZE_MAX, "finite data: %zu %zu", ra, rb);
            const size_t sa = ctx.ref->absmax(x, ng, G, am_a.data());
            const size_t sb = ctx.k->absmax(x, ng, G, am_b.data());
            QKT_CHECK(sa == SIZE_MAX && sb == SIZE_MAX, "finite data: %zu %zu", sa, sb);
            for (size_t g = 0; g < ng; ++g) {
                float mn = x[g * G], mx = x[g * G], am = 0;
                for (size_t i = 0; i < G; ++i) {
                    mn = std::fmin(mn, x[g * G + i]);
                    mx = std::fmax(mx, x[g * G + i]);
                    am = std::fmax(am, std::fabs(x[g * G + i]));
                }
                QKT_CHECK(mn_a[g] == mn && mx_a[g] == mx && am_a[g] == am, "ref g=%zu", g);
                QKT_CHECK(mn_b[g] == mn_a[g] && mx_b[g] == mx_a[g], "ng=%zu G=%zu fill=%s g=%zu got [%a,%a] want [%a,%a]", ng,
                          G, kFillNames[f], g, mn_b[g], mx_b[g], mn_a[g], mx_a[g]);
                QKT_CHECK(bits(am_b[g]) == bits(am_a[g]), "ng=%zu G=%zu fill=%s g=%zu got %a want %a", ng, G,
                          kFillNames[f], g, am_b[g], am_a[g]);
            }
        }
    }
}

// The index of the first NaN/Inf anywhere in the span, in any group.
QKT_TEST(quant_nonfinite_index) {
    Rng rng(5);
    const float bad_values[] = {NAN, -NAN, INFINITY, -INFINITY, from_bits(0x7f800001u)};
    for (auto [ng, G] : shapes(false)) {
        const size_t n = ng * G;
        std::vector<float> x = make_data(kRandom, n, rng);
        std::vector<size_t> positions = {0, n - 1, n / 2, n / 3};
        for (int k = 0; k < 3; ++k) positions.push_back(size_t(rng.next() % n));
        for (size_t pos : positions) {
            for (float bv : bad_values) {
                std::vector<float> y = x;
                y[pos] = bv;
                // A second, later non-finite value must not be reported.
                if (pos + 1 < n) y[n - 1] = INFINITY;
                std::vector<float> a(ng), b(ng), c(ng);
                QKT_CHECK(ctx.ref->minmax(y.data(), ng, G, a.data(), b.data()) == pos, "ref minmax pos=%zu", pos);
                QKT_CHECK(ctx.ref->absmax(y.data(), ng, G, c.data()) == pos, "ref absmax pos=%zu", pos);
                const size_t r1 = ctx.k->minmax(y.data(), ng, G, a.data(), b.data());
                const size_t r2 = ctx.k->absmax(y.data(), ng, G, c.data());
                QKT_CHECK(r1 == pos && r2 == pos, "ng=%zu G=%zu pos=%zu val=%08x got %zu %zu", ng, G, pos, bits(bv), r1, r2);
            }
        }
    }
    // Hand values: per-group results of a small input.
    const float x[] = {-1.0f, 2.0f, -3.0f, 0.5f, 4.0f, -4.5f};
    float mn[3], mx[3], am[3];
    QKT_CHECK(ctx.k->minmax(x, 3, 2, mn, mx) == SIZE_MAX, "minmax");
    QKT_CHECK(ctx.k->absmax(x, 3, 2, am) == SIZE_MAX, "absmax");
    QKT_CHECK(mn[0] == -1 && mx[0] == 2 && mn[1] == -3 && mx[1] == 0.5f && mn[2] == -4.5f && mx[2] == 4, "minmax values");
    QKT_CHECK(am[0] == 2 && am[1] == 3 && am[2] == 4.5f, "absmax values");
}

QKT_TEST(quant_f16_bf16) {
    std::vector<uint16_t> all(65536 + 1);
    for (uint32_t i = 0; i < 65536; ++i) all[i + 1] = uint16_t(i);
    for (size_t n : {size_t(65536), size_t(1), size_t(7), size_t(9), size_t(17), size_t(33), size_t(65535)}) {
        // Short spans sit around the inf/NaN codes; +1: unaligned.
        const uint16_t* src = all.data() + 1 + (n >= 65535 ? 65536 - n : 0x7c00 - n / 2);
        std::vector<float> a(n + 8, 7.0f), b(n + 8, 7.0f);
        ctx.ref->f16_to_f32(src, a.data(), n);
        ctx.k->f16_to_f32(src, b.data(), n);
        for (size_t i = 0; i < n + 8; ++i) {
            const bool both_nan = std::isnan(a[i]) && std::isnan(b[i]);
            QKT_CHECK(both_nan || bits(a[i]) == bits(b[i]), "f16 n=%zu h=%04x got %08x want %08x", n, i < n ? src[i] : 0,
                      bits(b[i]), bits(a[i]));
        }
        ctx.ref->bf16_to_f32(src, a.data(), n);
        ctx.k->bf16_to_f32(src, b.data(), n);
        for (size_t i = 0; i < n + 8; ++i) {
            QKT_CHECK(bits(a[i]) == bits(b[i]), "bf16 n=%zu i=%zu got %08x want %08x", n, i, bits(b[i]), bits(a[i]));
            if (i < n) QKT_CHECK(bits(a[i]) == uint32_t(src[i]) << 16, "bf16 ref i=%zu", i);
        }
    }
    // Hand values of the f16 spec, on every table.
    const uint16_t h[] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x8001, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x7e00, 0x7c01, 0x3555};
    const float want[] = {1.0f, -2.0f, 0x1p-24f, 1023 * 0x1p-24f, -0x1p-24f, 0x1p-14f, 65504.0f, INFINITY, -INFINITY, 0.0f, -0.0f, NAN, NAN, 0x1.554p-2f};
    for (const qk::Kernels* k : {ctx.ref, ctx.k}) {
        float y[14];
        k->f16_to_f32(h, y, 14);
        for (int i = 0; i < 14; ++i) {
            const bool ok = std::isnan(want[i]) ? std::isnan(y[i]) : bits(y[i]) == bits(want[i]);
            QKT_CHECK(ok, "%s h=%04x got %a want %a", k->name, h[i], y[i], want[i]);
        }
        const uint16_t bf[] = {0x3f80, 0xc040, 0x7f80, 0x0001};
        k->bf16_to_f32(bf, y, 4);
        QKT_CHECK(y[0] == 1.0f && y[1] == -3.0f && y[2] == INFINITY && bits(y[3]) == 0x00010000u, "%s bf16", k->name);
    }
}

QKT_TEST(quant_pack_unpack) {
    Rng rng(6);
    std::vector<size_t> sizes(std::begin(kSizes), std::end(kSizes));
    for (size_t n : {size_t(128), size_t(129), size_t(255), size_t(256), size_t(257), size_t(1000)}) sizes.push_back(n);
    for (size_t n : sizes) {
        for (bool is_signed : {true, false}) {
            std::vector<int8_t> qbuf(n + 1);
            for (auto& v : qbuf) v = int8_t(is_signed ? rng.range(-8, 7) : rng.range(0, 15));
            const int8_t* q = qbuf.data() + 1;
            const size_t nb = (n + 1) / 2;
            std::vector<uint8_t> a(nb + 40, 0xa5), b(nb + 40, 0xa5);
            ctx.ref->pack_i4(q, n, a.data());
            ctx.k->pack_i4(q, n, b.data());
            for (size_t i = 0; i < nb + 40; ++i) QKT_CHECK(a[i] == b[i], "pack_i4 n=%zu i=%zu got %02x want %02x", n, i, b[i], a[i]);
            for (size_t i = nb; i < nb + 40; ++i) QKT_CHECK(b[i] == 0xa5, "pack_i4 wrote past the end n=%zu", n);
            if (n & 1) QKT_CHECK((a[nb - 1] >> 4) == 0, "odd n leaves the high nibble 0");
            std::vector<int8_t> ua(n + 70, 0x33), ub(n + 70, 0x33);
            ctx.ref->unpack_i4(a.data(), n, is_signed, ua.data());
            ctx.k->unpack_i4(a.data(), n, is_signed, ub.data());
            for (size_t i = 0; i < n + 70; ++i) QKT_CHECK(ua[i] == ub[i], "unpack_i4 n=%zu i=%zu got %d want %d", n, i, ub[i], ua[i]);
            for (size_t i = 0; i < n; ++i) QKT_CHECK(ua[i] == q[i], "i4 round trip n=%zu i=%zu", n, i);
            for (size_t i = n; i < n + 70; ++i) QKT_CHECK(ub[i] == 0x33, "unpack_i4 wrote past the end n=%zu", n);
        }
        // Unpack of arbitrary bytes, both signednesses.
        std::vector<uint8_t> raw((n + 1) / 2 + 1);
        for (auto& v : raw) v = uint8_t(rng.next());
        for (bool is_signed : {true, false}) {
            std::vector<int8_t> ua(n), ub(n);
            ctx.ref->unpack_i4(raw.data() + 1, n, is_signed, ua.data());
            ctx.k->unpack_i4(raw.data() + 1, n, is_signed, ub.data());
            QKT_CHECK(ua == ub, "unpack_i4 raw n=%zu signed=%d", n, is_signed);
        }
        // int2
        std::vector<int8_t> qbuf(n + 1);
        for (auto& v : qbuf) v = int8_t(rng.range(0, 3));
        const int8_t* q = qbuf.data() + 1;
        const size_t nb = (n + 3) / 4;
        std::vector<uint8_t> a(nb + 20, 0xa5), b(nb + 20, 0xa5);
        ctx.ref->pack_i2(q, n, a.data());
        ctx.k->pack_i2(q, n, b.data());
        for (size_t i = 0; i < nb + 20; ++i) QKT_CHECK(a[i] == b[i], "pack_i2 n=%zu i=%zu got %02x want %02x", n, i, b[i], a[i]);
        for (size_t i = nb; i < nb + 20; ++i) QKT_CHECK(b[i] == 0xa5, "pack_i2 wrote past the end n=%zu", n);
        if (n % 4) QKT_CHECK((a[nb - 1] >> (2 * (n % 4))) == 0, "pack_i2 trailing bits n=%zu", n);
        std::vector<int8_t> ua(n + 70, 0x33), ub(n + 70, 0x33);
        ctx.ref->unpack_i2(a.data(), n, ua.data());
        ctx.k->unpack_i2(a.data(), n, ub.data());
        for (size_t i = 0; i < n + 70; ++i) QKT_CHECK(ua[i] == ub[i], "unpack_i2 n=%zu i=%zu got %d want %d", n, i, ub[i], ua[i]);
        for (size_t i = 0; i < n; ++i) QKT_CHECK(ua[i] == q[i], "i2 round trip n=%zu i=%zu", n, i);
        std::vector<uint8_t> raw2(nb + 1);
        for (auto& v : raw2) v = uint8_t(rng.next());
        std::vector<int8_t> ra(n), rb(n);
        ctx.ref->unpack_i2(raw2.data() + 1, n, ra.data());
        ctx.k->unpack_i2(raw2.data() + 1, n, rb.data());
        QKT_CHECK(ra == rb, "unpack_i2 raw n=%zu", n);
    }
    // Known byte layouts (ONNX order: even element in the low nibble).
    for (const qk::Kernels* k : {ctx.ref, ctx.k}) {
        const int8_t s4[] = {1, -2, 7, -8, 5};
        uint8_t p[3] = {0xff, 0xff, 0xff};
        k->pack_i4(s4, 5, p);
        QKT_CHECK(p[0] == 0xE1 && p[1] == 0x87 && p[2] == 0x05, "%s pack_i4 %02x %02x %02x", k->name, p[0], p[1], p[2]);
        const int8_t u4[] = {15, 0};
        k->pack_i4(u4, 2, p);
        QKT_CHECK(p[0] == 0x0F, "%s pack_i4 unsigned %02x", k->name, p[0]);
        int8_t u[5];
        const uint8_t e1[] = {0xE1, 0x87, 0x05};
        k->unpack_i4(e1, 5, true, u);
        QKT_CHECK(u[0] == 1 && u[1] == -2 && u[2] == 7 && u[3] == -8 && u[4] == 5, "%s unpack_i4 signed", k->name);
        k->unpack_i4(e1, 4, false, u);
        QKT_CHECK(u[0] == 1 && u[1] == 14 && u[2] == 7 && u[3] == 8, "%s unpack_i4 unsigned", k->name);
        const int8_t s2[] = {0, 1, 2, 3, 1, 2};
        p[0] = p[1] = 0xff;
        k->pack_i2(s2, 6, p);
        QKT_CHECK(p[0] == 0xE4 && p[1] == 0x09, "%s pack_i2 %02x %02x", k->name, p[0], p[1]);
        k->unpack_i2(p, 5, u);
        QKT_CHECK(u[0] == 0 && u[1] == 1 && u[2] == 2 && u[3] == 3 && u[4] == 1, "%s unpack_i2", k->name);
    }
}

// ---- the division-free fast path of the SIMD quantize ---------------------
// The SIMD tables bracket fl(x / s) with x * (1/s -/+ a few ulps) and divide
// only the ambiguous lanes; these tests aim at exactly those lanes.
namespace {

float step_ulps(float v, int n) {
    for (; n > 0; --n) v = std::nextafter(v, INFINITY);
    for (; n < 0; ++n) v = std::nextafter(v, -INFINITY);
    return v;
}

// Runs ref and ISA on x[] (one group per entry of scales, G = x.size() /
// scales.size()) and checks bit equality, the model and the range.
void check_groups(qkt::Ctx& ctx, const char* what, const std::vector<float>& x, const std::vector<float>& scales,
                  const std::vector<int32_t>* zps, int32_t qmin, int32_t qmax) {
    const size_t ng = scales.size(), G = x.size() / ng;
    const int32_t* zpp = zps ? zps->data() : nullptr;
    std::vector<int8_t> a(x.size() + 16, 0x5a), b(x.size() + 16, 0x5a);
    ctx.ref->quantize(x.data(), ng, G, scales.data(), zpp, qmin, qmax, a.data());
    ctx.k->quantize(x.data(), ng, G, scales.data(), zpp, qmin, qmax, b.data());
    for (size_t i = 0; i < x.size() + 16; ++i) {
        if (i >= x.size()) {
            QKT_CHECK(b[i] == 0x5a, "%s: wrote past the end i=%zu", what, i);
            continue;
        }
        const size_t g = i / G;
        const int32_t z = zpp ? zpp[g] : 0;
        QKT_CHECK(a[i] == b[i], "%s: q=[%d,%d] z=%d i=%zu x=%a s=%a x/s=%a got %d want %d", what, qmin, qmax, z, i, x[i],
                  scales[g], x[i] / scales[g], b[i], a[i]);
        if (!std::isnan(x[i])) {
            const int8_t m = model_q(x[i], scales[g], z, qmin, qmax);
            QKT_CHECK(a[i] == m, "%s: ref vs model x=%a s=%a got %d want %d", what, x[i], scales[g], a[i], m);
        } else {
            QKT_CHECK(a[i] == qmin, "%s: NaN -> qmin, got %d", what, a[i]);
        }
    }
}

// Scales with inexact reciprocals, exact ones, binade edges of 1/s, and the
// ends of the range where the fast path must hand over to the division.
std::vector<float> adversarial_scales() {
    std::vector<float> s = {0.3f, 0.1f, 1.0f / 3.0f, 0.7f, 0.375f, 0.75f, 1.5f, 6.0f, 0x1.8p-3f, 0x1.4p-7f, 0x1.c0p+3f,
                            0.25f, 1.0f, 2.0f, 0x1.000002p0f, 0x1.fffffep-1f, 0x1.fffffcp-1f, 0x1.000004p+0f,
                            0.0078740157f /* 1/127 */, 0.011764706f /* 3/255 */, 1e-3f, 1e-6f, 1e-20f, 1e20f,
                            0x1p-125f, 0x1.8p-126f, 0x1p-126f /* 1/s = 2^126 */, 0x1p+125f, 0x1p+126f, 0x1.fffffep+126f,
                            0x1p+127f /* 1/s subnormal */, 3e38f, FLT_MAX};
    // Subnormal and tiny scales: 1/s overflows to inf (or comes close).
    for (uint32_t u : {0x00000001u, 0x00000002u, 0x00000003u, 0x00000100u, 0x00123456u, 0x00400000u, 0x007fffffu,
                       0x00200001u})
        s.push_back(from_bits(u));
    return s;
}

}  // namespace

// Quotients at and within 1-3 ulps of every k + 0.5 around the clamp range,
// for every code range and several zero points, many scales.
QKT_TEST(quant_fast_path_halves) {
    Rng rng(11);
    long sensitive = 0;
    for (const QRange& r : kRanges) {
        std::vector<int32_t> zs = {0};
        if (r.asym) zs = {r.qmin, r.qmax, (r.qmin + r.qmax) / 2, rng.range(r.qmin, r.qmax)};
        for (int32_t z : zs) {
            for (float s : adversarial_scales()) {
                std::vector<float> x;
                // k + 0.5 for every code +-3 beyond the clamped range.
                for (int32_t k = r.qmin - z - 4; k <= r.qmax - z + 3; ++k) {
                    const double h = double(k) + 0.5;
                    const float x0 = float(h * double(s));
                    if (!std::isfinite(x0)) continue;
                    for (int d = -3; d <= 3; ++d) {
                        const float v = step_ulps(x0, d);
                        x.push_back(v);
                        if (std::isfinite(1.0f / s))
                            sensitive += std::nearbyint(v * (1.0f / s)) != std::nearbyint(v / s);
                    }
                    // The quotient ulps (not the x ulps) around h: x = fl(q * s)
                    // for q = h -+ 1..3 ulps of h.
                    for (int d = -3; d <= 3; ++d) x.push_back(float(double(step_ulps(float(h), d)) * double(s)));
                }
                while (x.size() % 16) x.push_back(x[x.size() % 7]);
                const std::vector<int32_t> zp(1, z);
                char what[64];
                std::snprintf(what, sizeof what, "halves s=%a", s);
                check_groups(ctx, what, x, std::vector<float>(1, s), r.asym ? &zp : nullptr, r.qmin, r.qmax);
                // The same as several groups (G = 16) with alternating scales.
                std::vector<float> sc(x.size() / 16);
                for (size_t g = 0; g < sc.size(); ++g) sc[g] = (g & 1) ? s : 0.3f;
                std::vector<int32_t> zg(sc.size(), z);
                check_groups(ctx, what, x, sc, r.asym ? &zg : nullptr, r.qmin, r.qmax);
            }
        }
    }
    QKT_CHECK(sensitive > 100, "the data lost its reciprocal-sensitive cases: %ld", sensitive);
}

// Exact ties x / s = k + 0.5 with scales whose reciprocal is inexact (3, 5, 7,
// 11 times a power of two), clamp edges, huge quotients and non-finite x.
QKT_TEST(quant_fast_path_edges) {
    for (const QRange& r : kRanges) {
        for (float s : {0.375f, 0.625f, 0x1.cp-5f, 0x1.6p+2f, 3.0f, 0x1.8p-100f, 0x1.4p+100f}) {
            std::vector<float> x;
            for (int32_t k = -300; k <= 300; ++k) x.push_back(float((double(k) + 0.5) * double(s)));  // exact
            for (int32_t k = -300; k <= 300; ++k) x.push_back(float(double(k) * double(s)));
            // Huge quotients, overflow to inf, and non-finite inputs.
            for (float v : {3e38f, -3e38f, FLT_MAX, -FLT_MAX, 1e30f, -1e30f, 8388608.5f, 16777216.0f, -16777216.0f,
                            float(INFINITY), float(-INFINITY), float(NAN), -float(NAN), 0.0f, -0.0f, 1e-45f, -1e-45f})
                x.push_back(v);
            for (int e = -149; e <= 127; e += 3) {
                x.push_back(std::ldexp(1.0f, e));
                x.push_back(-std::ldexp(1.5f, e));
            }
            char what[64];
            std::snprintf(what, sizeof what, "edges s=%a", s);
            check_groups(ctx, what, x, std::vector<float>(1, s), nullptr, r.qmin, r.qmax);
            for (int32_t z : {r.qmin, r.qmax}) {
                const std::vector<int32_t> zp(1, z);
                check_groups(ctx, what, x, std::vector<float>(1, s), &zp, r.qmin, r.qmax);
            }
        }
    }
    // Every adversarial scale on data spanning all exponents (incl. quotients
    // that overflow to inf or underflow), with the widest zero points.
    Rng rng(12);
    std::vector<float> x(4096 + 5);
    for (auto& v : x) {
        uint32_t u = uint32_t(rng.next());
        if ((u & 0x7f800000u) == 0x7f800000u) u &= 0xbfffffffu;
        v = from_bits(u);
    }
    for (float s : adversarial_scales()) {
        for (const QRange& r : kRanges) {
            const std::vector<int32_t> zp(1, r.asym ? r.qmax : 0);
            check_groups(ctx, "all exponents", x, std::vector<float>(1, s), r.asym ? &zp : nullptr, r.qmin, r.qmax);
        }
    }
    // Zero points outside the code range (the contract allows any int32).
    for (int32_t z : {-70000, -65537, -65536, -300, 300, 65536, 65537, 1 << 24, -(1 << 30)}) {
        std::vector<float> xz;
        for (int32_t k = -z - 200; k <= -z + 200; ++k) xz.push_back(float((double(k) + 0.5) * 0.375));
        const std::vector<int32_t> zp(1, z);
        check_groups(ctx, "wild zp", xz, std::vector<float>(1, 0.375f), &zp, -128, 127);
    }
}

// Random (x, scale, zp) pairs against the ref, bit for bit: scales drawn
// over many binades, x chosen so x / s lands in and around the code range,
// often right at a half-integer.
QKT_TEST(quant_fast_path_fuzz) {
    Rng rng(13);
    const size_t G = 37, ng = 1 << 15;  // 1.2M pairs per round
    for (int round = 0; round < 4; ++round) {
        const QRange& r = kRanges[round % 5];
        std::vector<float> x(ng * G), sc(ng);
        std::vector<int32_t> zp(ng);
        for (size_t g = 0; g < ng; ++g) {
            float s = std::ldexp(rng.uniform(1.0f, 2.0f), rng.range(-40, 40));
            if (rng.next() % 64 == 0) s = from_bits(uint32_t(rng.next() % 0x00800000u) + 1);  // subnormal
            sc[g] = s;
            zp[g] = r.asym ? rng.range(r.qmin, r.qmax) : 0;
            for (size_t i = 0; i < G; ++i) {
                const double qv = double(rng.range(-300, 300)) + (rng.next() % 2 ? 0.5 : rng.uniform(0.0f, 1.0f));
                float v = float(qv * double(s));
                v = step_ulps(v, int(rng.next() % 7) - 3);
                if (rng.next() % 97 == 0) v = from_bits(uint32_t(rng.next()) & 0xbf7fffffu);  // anything finite
                x[g * G + i] = v;
            }
        }
        check_groups(ctx, "fuzz", x, sc, r.asym ? &zp : nullptr, r.qmin, r.qmax);
    }
}
