// The SIMD form of Kernels::dgemm_nt_sub (kernels.h), written once over a
// vector type and instantiated by each ISA's kernel file
// (x86/linalg_avx2.cpp, x86/linalg_avx512.cpp, arm/linalg_neon.cpp), so it
// is compiled with that file's flags. Everything here is in an unnamed
// namespace: each including file gets its own copy, never shared across ISAs.
//
// Scheme (the register-blocked outer product of BLAS micro-kernels): B is
// packed, NR = 2 vectors of columns at a time, k-major into bp[k][NR] (zero
// columns past N); then MR rows of A at a time keep an MR x NR tile of
// sums in registers, one broadcast of A[i, k] and two fmas per row per k.
// k runs in chunks of kKc so the packed strip (kKc x NR doubles, 32 KB at
// AVX-512) stays in L1/L2 for every row tile that reads it.
//
// V provides: T (the vector type), kLanes, zero(), load(p), store(p, v),
// bcast(x), fma(a, b, acc) = acc + a * b, sub(a, b).
#pragma once

#include <algorithm>
#include <cstddef>

namespace qk {
namespace {

constexpr size_t kDgemmKc = 256;

// C[r, j] -= tile sum for r < MR, j < nc (nc <= 2 * kLanes).
template <class V, size_t MR>
inline void dgemm_tile(const double* a, size_t lda, size_t kc, const double* bp, double* c, size_t ldc, size_t nc) {
    constexpr size_t L = V::kLanes;
    typename V::T acc[MR][2];
    for (size_t r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = V::zero();
    for (size_t k = 0; k < kc; ++k) {
        const typename V::T b0 = V::load(bp + k * 2 * L), b1 = V::load(bp + k * 2 * L + L);
        for (size_t r = 0; r < MR; ++r) {
            const typename V::T x = V::bcast(a[r * lda + k]);
            acc[r][0] = V::fma(x, b0, acc[r][0]);
            acc[r][1] = V::fma(x, b1, acc[r][1]);
        }
    }
    for (size_t r = 0; r < MR; ++r) {
        double* cr = c + r * ldc;
        if (nc == 2 * L) {
            V::store(cr, V::sub(V::load(cr), acc[r][0]));
            V::store(cr + L, V::sub(V::load(cr + L), acc[r][1]));
        } else {
            double t[2 * L];
            V::store(t, acc[r][0]);
            V::store(t + L, acc[r][1]);
            for (size_t j = 0; j < nc; ++j) cr[j] -= t[j];
        }
    }
}

template <class V, size_t MR>
void dgemm_nt_sub_simd(const double* a, size_t lda, size_t M, const double* b, size_t ldb, size_t N, size_t kc,
                       double* c, size_t ldc) {
    constexpr size_t NR = 2 * V::kLanes;
    alignas(64) double bp[kDgemmKc * NR];
    for (size_t k0 = 0; k0 < kc; k0 += kDgemmKc) {
        const size_t kn = std::min(kDgemmKc, kc - k0);
        for (size_t j0 = 0; j0 < N; j0 += NR) {
            const size_t nc = std::min(NR, N - j0);
            for (size_t j = 0; j < NR; ++j) {
                const double* bj = b + (j0 + j) * ldb + k0;
                if (j < nc) for (size_t k = 0; k < kn; ++k) bp[k * NR + j] = bj[k];
                else for (size_t k = 0; k < kn; ++k) bp[k * NR + j] = 0.0;
            }
            size_t i = 0;
            for (; i + MR <= M; i += MR) dgemm_tile<V, MR>(a + i * lda + k0, lda, kn, bp, c + i * ldc + j0, ldc, nc);
            for (; i < M; ++i) dgemm_tile<V, 1>(a + i * lda + k0, lda, kn, bp, c + i * ldc + j0, ldc, nc);
        }
    }
}

}  // namespace
}  // namespace qk
