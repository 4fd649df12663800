#include "linalg_ops.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "../threadpool.h"
#include "gemm_ops.h"

namespace qk {

namespace {

// Rows (and columns) per block of the factor and of the inverse: the
// product kernel's k extent in the factor, and the tiles both hand to the
// thread pool. Larger blocks stream the trailing matrix fewer times (K / kNb
// passes), smaller ones keep the unblocked parts (diagonal blocks, panel
// substitutions: K^2 * kNb / 2 operations) small. Measured, factor alone,
// AMD EPYC: K = 4096 one thread 1.90 / 1.71 / 1.86 s and K = 11008 two
// threads 21.3 / 17.9 / 17.0 s for 64 / 128 / 256.
constexpr size_t kNb = 128;

// Four independent partial sums: the compiler vectorizes this loop and the
// add latency is hidden (the unblocked parts are dot products of
// contiguous row pieces).
inline double dot(const double* a, const double* b, size_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

// In place, lower Cholesky factor A = R R^T of a [K, K] (row-major, lower
// triangle read and written; entries above the diagonal are scratch).
// Right-looking by blocks of kNb columns [kb, e):
//   1. the diagonal block, already updated by every block before it, is
//      factored unblocked (Cholesky-Banachiewicz);
//   2. each row below it solves against that block (R21 = A21 R11^-T),
//      rows in parallel;
//   3. the trailing lower triangle takes the product: A22 -= R21 R21^T, in
//      tiles of kNb rows in parallel (each tile also writes the upper half
//      of its diagonal square: scratch, never read).
// Returns false on a pivot <= 0 or not finite.
bool cholesky_lower(double* a, size_t K, const Kernels& kn) {
    for (size_t kb = 0; kb < K; kb += kNb) {
        const size_t e = std::min(K, kb + kNb), nb = e - kb;
        for (size_t i = kb; i < e; ++i) {
            double* ri = a + i * K;
            for (size_t j = kb; j < i; ++j) {
                const double* rj = a + j * K;
                ri[j] = (ri[j] - dot(ri + kb, rj + kb, j - kb)) / rj[j];
            }
            const double d = ri[i] - dot(ri + kb, ri + kb, i - kb);
            if (!(d > 0) || !std::isfinite(d)) return false;
            ri[i] = std::sqrt(d);
        }
        if (e == K) break;
        const size_t rows = K - e, tiles = (rows + kNb - 1) / kNb;
        parallel_for(tiles, double(rows) * nb * nb, [&](size_t t, size_t) {
            for (size_t i = e + t * kNb; i < std::min(K, e + (t + 1) * kNb); ++i) {
                double* ri = a + i * K;
                for (size_t j = kb; j < e; ++j) {
                    const double* rj = a + j * K;
                    ri[j] = (ri[j] - dot(ri + kb, rj + kb, j - kb)) / rj[j];
                }
            }
        });
        parallel_for(tiles, double(rows) * rows * nb, [&](size_t t, size_t) {
            const size_t r0 = e + t * kNb, r1 = std::min(K, r0 + kNb);
            kn.dgemm_nt_sub(a + r0 * K + kb, K, r1 - r0, a + e * K + kb, K, r1 - e, nb, a + r0 * K + e, K);
        });
    }
    return true;
}

// X = R^-1 for the lower factor R of cholesky_lower, stored transposed:
// row c of xt holds column c of X (xt must be zero on entry; X is lower, so
// xt[c][i] stays 0 for i < c). Columns go in blocks C = [c0, c1) of kNb, in
// parallel (independent); within one, rows go down in blocks I = [i0, i1):
//   T = I_{I,C} - R[I, c0:i0] X[c0:i0, C]      (one product: X is 0 above c0)
//   X[I, C] = R[I, I]^-1 T                      (forward substitution)
// Every dot product reads two contiguous ranges (a row of R, a row of xt).
void invert_lower_transposed(const double* a, size_t K, double* xt, const Kernels& kn) {
    const size_t blocks = (K + kNb - 1) / kNb;
    parallel_for(blocks, double(K) * K * K / 6, [&](size_t cb, size_t) {
        const size_t c0 = cb * kNb, c1 = std::min(K, c0 + kNb), nc = c1 - c0;
        std::vector<double> t(kNb * kNb);
        for (size_t i0 = c0; i0 < K; i0 += kNb) {
            const size_t i1 = std::min(K, i0 + kNb), ni = i1 - i0;
            for (size_t ii = 0; ii < ni; ++ii)
                for (size_t cc = 0; cc < nc; ++cc) t[ii * nc + cc] = i0 + ii == c0 + cc ? 1.0 : 0.0;
            if (i0 > c0) kn.dgemm_nt_sub(a + i0 * K + c0, K, ni, xt + c0 * K + c0, K, nc, i0 - c0, t.data(), nc);
            for (size_t i = i0; i < i1; ++i) {
                const double* ri = a + i * K;
                for (size_t c = c0; c < std::min(c1, i + 1); ++c) {
                    const size_t lo = std::max(i0, c);
                    double* xc = xt + c * K;
                    xc[i] = (t[(i - i0) * nc + (c - c0)] - dot(ri + lo, xc + lo, i - lo)) / ri[i];
                }
            }
        }
    });
}

}  // namespace

bool chol_inverse_upper(const Kernels& kn, double* h, size_t K) {
    if (K == 0) return true;
    // A = J H J (lower triangle), row-major: A[i][j] = H[K-1-i][K-1-j].
    // Both K x K work arrays are filled by the pool, rows in parallel (a
    // serial zero-fill of 1 GB at K = 11008 took half a second). a's upper
    // triangle is only scratch, but the trailing products read it: zeros,
    // never uninitialized memory. inv must start at zero.
    std::unique_ptr<double[]> a(new double[K * K]);
    std::unique_ptr<double[]> inv(new double[K * K]);  // row c: column c of R^-1
    const double copy_flops = 2.0 * double(K) * double(K);
    parallel_for((K + 63) / 64, copy_flops, [&](size_t task, size_t) {
        for (size_t i = task * 64; i < std::min(K, task * 64 + 64); ++i) {
            for (size_t j = 0; j <= i; ++j) a[i * K + j] = h[(K - 1 - i) * K + (K - 1 - j)];
            std::fill(a.get() + i * K + i + 1, a.get() + (i + 1) * K, 0.0);
            std::fill(inv.get() + i * K, inv.get() + (i + 1) * K, 0.0);
        }
    });
    if (!cholesky_lower(a.get(), K, kn)) return false;
    invert_lower_transposed(a.get(), K, inv.get(), kn);
    // U = J R^-1 J: U[p][q] = Rinv[K-1-p][K-1-q] = inv[(K-1-q) * K + (K-1-p)], upper.
    parallel_for((K + 63) / 64, copy_flops, [&](size_t task, size_t) {
        for (size_t p = task * 64; p < std::min(K, task * 64 + 64); ++p)
            for (size_t q = 0; q < K; ++q) h[p * K + q] = q >= p ? inv[(K - 1 - q) * K + (K - 1 - p)] : 0.0;
    });
    return true;
}

void gptq_walk(const GptqWalk& g, size_t p0, size_t p1) {
    constexpr size_t kRows = 16;  // rows per task
    const size_t nb = g.b1 - g.b0;
    parallel_for((g.N + kRows - 1) / kRows, 2.0 * double(g.N) * double(p1 - p0) * double(g.b1 - p0), [&](size_t task, size_t) {
        for (size_t n = task * kRows; n < std::min(g.N, (task + 1) * kRows); ++n) {
            float* wr = g.w + n * g.K;
            for (size_t p = p0; p < p1; ++p) {
                const size_t col = size_t(g.col[p]), grp = col / g.G;
                const float s = g.scales[n * g.ng + grp];
                const int32_t z = g.zps[n * g.ng + grp];
                const float v = wr[p];
                const double r = double(std::nearbyint(v / s)) + z;
                const int32_t q = int32_t(std::min(std::max(r, double(g.qmin)), double(g.qmax)));
                g.codes[n * g.K + col] = int8_t(q);
                const float deq = float(q - z) * s;
                const double e = (double(v) - double(deq)) / g.u[p * g.K + p];
                g.e[n * nb + (p - g.b0)] = float(e);
                const double* up = g.u + p * g.K;
                for (size_t t = p + 1; t < g.b1; ++t) wr[t] = float(double(wr[t]) - e * up[t]);
            }
        }
    });
}

void gptq_lazy_update(const Kernels& k, float* w, size_t N, size_t K, const double* u, const float* e, size_t b0,
                      size_t b1) {
    const size_t nb = b1 - b0, rest = K - b1;
    if (N == 0 || nb == 0 || rest == 0) return;
    std::unique_ptr<float[]> ut(new float[rest * nb]);  // Ut[t, i] = U[b0 + i, b1 + t]
    parallel_for((rest + 255) / 256, double(rest) * double(nb), [&](size_t task, size_t) {
        for (size_t t = task * 256; t < std::min(rest, (task + 1) * 256); ++t)
            for (size_t i = 0; i < nb; ++i) ut[t * nb + i] = float(u[(b0 + i) * K + b1 + t]);
    });
    std::unique_ptr<float[]> d(new float[N * rest]);  // D = E · Ut^T  [N, rest]
    GemmArgs a{};
    a.x = e;
    a.ldx = nb;
    a.M = N;
    a.N = rest;
    a.K = nb;
    a.w.fmt = WFormat::f32;
    a.w.data = ut.get();
    a.w.row_bytes = 4 * nb;
    a.w.group = nb;
    a.y = d.get();
    a.ldy = rest;
    gemm(k, a);
    parallel_for((N + 15) / 16, double(N) * double(rest), [&](size_t task, size_t) {
        for (size_t n = task * 16; n < std::min(N, (task + 1) * 16); ++n) {
            float* wr = w + n * K + b1;
            const float* dr = d.get() + n * rest;
            for (size_t t = 0; t < rest; ++t) wr[t] = wr[t] - dr[t];
        }
    });
}

namespace {
constexpr size_t kClipRows = 32;  // rows per task of the clipping search

// The quantized value of v (float, as the kernels dequantize it).
inline float dequant(float v, float s, int32_t z, int32_t qmin, int32_t qmax) {
    const double r = double(std::nearbyint(v / s)) + z;
    const int32_t q = int32_t(std::min(std::max(r, double(qmin)), double(qmax)));
    return float(q - z) * s;
}

// The group's code q - z of v at (s, z), as a double.
inline double code(float v, float s, int32_t z, int32_t qmin, int32_t qmax) {
    const double r = double(std::nearbyint(v / s)) + z;
    return double(int32_t(std::min(std::max(r, double(qmin)), double(qmax))) - z);
}

// p [rows, len] = -(r [rows, len] · B), B the block-diagonal part of H
// [len, len] (the block of h at rows and columns kh.. kh + len, row stride
// ldh) in diagonal blocks of kGroupHBlock columns; one dgemm_nt_sub per
// block (H is symmetric: its rows are B's columns).
void times_h_blocks(const Kernels& kn, const double* r, size_t rows, size_t len, const double* h, size_t ldh,
                    size_t kh, double* p) {
    std::fill(p, p + rows * len, 0.0);
    for (size_t b0 = 0; b0 < len; b0 += kGroupHBlock) {
        const size_t nb = std::min(kGroupHBlock, len - b0);
        kn.dgemm_nt_sub(r + b0, len, rows, h + (kh + b0) * ldh + kh + b0, ldh, nb, nb, p + b0, len);
    }
}

// -sum_i a[i] * p[i] over a row (p holds -(r · B)).
inline double neg_dot(const double* a, const double* p, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s -= a[i] * p[i];
    return s;
}

// Per task scratch: rows x len doubles, several arrays.
struct GroupScratch {
    std::vector<double> r, p, px, xr;
    void size(size_t n) {
        r.resize(n);
        p.resize(n);
        px.resize(n);
        xr.resize(n);
    }
};
}  // namespace

void gptq_group_errors(const Kernels& kn, const float* x, size_t N, size_t L, size_t G, const float* scales,
                       const int32_t* zps, int32_t qmin, int32_t qmax, const double* h, size_t ldh, size_t k0,
                       double* out) {
    const size_t gl = (L + G - 1) / G;
    const double work = double(N) * double(L) * double(std::min(G, kGroupHBlock));
    parallel_for((N + kClipRows - 1) / kClipRows, 2.0 * work, [&](size_t task, size_t) {
        const size_t n0 = task * kClipRows, rows = std::min(N, n0 + kClipRows) - n0;
        thread_local GroupScratch sc;
        sc.size(rows * std::min(G, L));
        for (size_t j = 0; j < gl; ++j) {
            const size_t c0 = j * G, len = std::min(L, c0 + G) - c0;
            for (size_t n = 0; n < rows; ++n) {
                const float s = scales[(n0 + n) * gl + j];
                const int32_t z = zps ? zps[(n0 + n) * gl + j] : 0;
                const float* xr = x + (n0 + n) * L + c0;
                for (size_t i = 0; i < len; ++i) sc.r[n * len + i] = double(xr[i]) - double(dequant(xr[i], s, z, qmin, qmax));
            }
            times_h_blocks(kn, sc.r.data(), rows, len, h, ldh, k0 + c0, sc.p.data());
            for (size_t n = 0; n < rows; ++n) out[(n0 + n) * gl + j] = neg_dot(&sc.r[n * len], &sc.p[n * len], len);
        }
    });
}

void gptq_group_refit(const Kernels& kn, const float* x, size_t N, size_t L, size_t G, float* scales,
                      const int32_t* zps, int32_t qmin, int32_t qmax, const double* h, size_t ldh, size_t k0,
                      size_t rounds, double* err) {
    const size_t gl = (L + G - 1) / G;
    const double work = double(N) * double(L) * double(std::min(G, kGroupHBlock)) * double(2 * rounds + 1);
    parallel_for((N + kClipRows - 1) / kClipRows, 2.0 * work, [&](size_t task, size_t) {
        const size_t n0 = task * kClipRows, rows = std::min(N, n0 + kClipRows) - n0;
        thread_local GroupScratch sc;
        sc.size(rows * std::min(G, L));
        std::vector<float> cand(rows);
        std::vector<char> active(rows);
        for (size_t j = 0; j < gl; ++j) {
            const size_t c0 = j * G, len = std::min(L, c0 + G) - c0;
            // -(x B) once per group: the right-hand side of every round
            for (size_t n = 0; n < rows; ++n)
                for (size_t i = 0; i < len; ++i) sc.xr[n * len + i] = double(x[(n0 + n) * L + c0 + i]);
            times_h_blocks(kn, sc.xr.data(), rows, len, h, ldh, k0 + c0, sc.px.data());
            std::fill(active.begin(), active.end(), char(1));
            for (size_t round = 0; round < rounds; ++round) {
                // codes at the current scale -> the scale that fits them best: s = (d' B x) / (d' B d)
                for (size_t n = 0; n < rows; ++n) {
                    const float s = scales[(n0 + n) * gl + j];
                    const int32_t z = zps ? zps[(n0 + n) * gl + j] : 0;
                    const float* xr = x + (n0 + n) * L + c0;
                    for (size_t i = 0; i < len; ++i) sc.r[n * len + i] = active[n] ? code(xr[i], s, z, qmin, qmax) : 0.0;
                }
                times_h_blocks(kn, sc.r.data(), rows, len, h, ldh, k0 + c0, sc.p.data());
                bool any = false;
                for (size_t n = 0; n < rows; ++n) {
                    if (!active[n]) continue;
                    const double num = neg_dot(&sc.r[n * len], &sc.px[n * len], len);
                    const double den = neg_dot(&sc.r[n * len], &sc.p[n * len], len);
                    const float s2 = float(num / den);
                    if (!(den > 0) || !(s2 > 0) || !std::isfinite(s2) || s2 == scales[(n0 + n) * gl + j]) {
                        active[n] = 0;
                        continue;
                    }
                    cand[n] = s2;
                    any = true;
                }
                if (!any) break;
                // the error at the new scale (its own codes): kept where lower
                for (size_t n = 0; n < rows; ++n) {
                    const int32_t z = zps ? zps[(n0 + n) * gl + j] : 0;
                    const float* xr = x + (n0 + n) * L + c0;
                    for (size_t i = 0; i < len; ++i)
                        sc.r[n * len + i] = active[n] ? double(xr[i]) - double(dequant(xr[i], cand[n], z, qmin, qmax)) : 0.0;
                }
                times_h_blocks(kn, sc.r.data(), rows, len, h, ldh, k0 + c0, sc.p.data());
                for (size_t n = 0; n < rows; ++n) {
                    if (!active[n]) continue;
                    const double e = neg_dot(&sc.r[n * len], &sc.p[n * len], len);
                    if (e < err[(n0 + n) * gl + j]) {
                        err[(n0 + n) * gl + j] = e;
                        scales[(n0 + n) * gl + j] = cand[n];
                    } else {
                        active[n] = 0;
                    }
                }
            }
        }
    });
}

void clamp_groups(const float* x, size_t N, size_t L, size_t G, const float* lo, const float* hi, double c, float* out) {
    const size_t gl = (L + G - 1) / G;
    parallel_for((N + kClipRows - 1) / kClipRows, 2.0 * double(N) * double(L), [&](size_t task, size_t) {
        for (size_t n = task * kClipRows; n < std::min(N, (task + 1) * kClipRows); ++n)
            for (size_t j = 0; j < gl; ++j) {
                const double a = double(lo[n * gl + j]) * c, b = double(hi[n * gl + j]) * c;
                for (size_t i = j * G; i < std::min(L, (j + 1) * G); ++i)
                    out[n * L + i] = float(std::min(std::max(double(x[n * L + i]), a), b));
            }
    });
}

}  // namespace qk
