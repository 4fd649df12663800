// AVX2 + FMA transformer glue kernels: attn_rows, silu_mul and gelu_tanh, the
// reference's operations lane by lane (bit-identical to it; see
// attn_avx512.cpp for the scheme). A block of 64 keys is 8 ymm of score
// lanes, of which only the vectors holding visible keys are computed; p · V
// runs over 64-wide chunks of the head dimension (eight accumulator chains)
// with masked loads for the tail. Rows go one at a time, so every row reads
// its block of K and V (32 KB at hd = 64) again, where the AVX-512 kernel
// shares each load among four rows; from kCopyVRows rows a call, a block's
// value rows are first copied together (see attn_rows).
// Measured on AMD EPYC Zen 5 running the avx2 table, one thread, operands
// in cache, 12 / 4 heads of 64 from position 0, median of 400, against the
// version before (all 8 score vectors, 32-wide p · V chunks, masked loads
// and stores of o): T = 128 803-810 -> 739-743 us, T = 512 10.9 -> 9.9 ms;
// then the copy of the value rows (five interleaved runs): T = 128 750-775
// -> 678-694 us, a decode step (3 rows, no copy) unchanged. The AVX-512
// kernel measured no gain from the copy (T = 128 299-308 us without,
// 309-313 with).
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "../isa.h"
#include "../attn_exp.h"

namespace qk {
namespace avx2 {

namespace {

using namespace attn_exp_consts;

// Lanes [0, n) of a ymm as an all-ones int mask (n may exceed 8 or be <= 0).
inline __m256i lanes(long n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n < 0 ? 0 : n > 8 ? 8 : n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The reference's attn_exp on 8 lanes.
inline __m256 exp8(__m256 x) {
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 c = _mm256_max_ps(x, _mm256_set1_ps(kLo));  // (x > lo ? x : lo)
    c = _mm256_min_ps(c, _mm256_set1_ps(kHi));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(c, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Hi), c);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Lo), r);
    const __m256 z = _mm256_mul_ps(r, r);
    __m256 y = _mm256_set1_ps(kP0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP5));
    y = _mm256_fmadd_ps(y, z, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(kHi), _CMP_GT_OQ);
    return _mm256_blendv_ps(_mm256_blendv_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), _mm256_set1_ps(INFINITY), big), x, nan);
}

inline float hmax(__m256 v) {
    const __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 c = _mm_max_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_max_ss(c, _mm_movehdup_ps(c)));
}

// o[0 .. hd) = o * c (when rescale), then o[i] = fma(p[jj], V[jj][i], o[i]) for jj < nb;
// l += p[jj] in key order inside the first chunk's key loop (the reference's
// chain, under the FMAs rather than in a latency-bound loop of its own, as
// in attn_avx512.cpp). hd > 0.
inline void pv(float* o, size_t hd, bool rescale, float c, const float* p, size_t nb, const float* v, size_t ldv,
               float& l) {
    const __m256 cv = _mm256_set1_ps(c);
    float ls = l;
    // 64-wide chunks: eight accumulator chains, enough to keep both FMA
    // pipes busy through the FMA latency (four, in 32-wide chunks, held
    // the loop to about one FMA a cycle)
    for (size_t i0 = 0; i0 < hd; i0 += 64) {
        const bool sum = i0 == 0;
        const size_t w = hd - i0 < 64 ? hd - i0 : 64;
        __m256i mk[8];
        __m256 acc[8];
        // (plain loads and stores of o for whole chunks: vmaskmovps
        // stores are slow on AMD)
        for (int u = 0; u < 8; ++u) {
            mk[u] = lanes(long(w) - 8 * u);
            acc[u] = w == 64 ? _mm256_loadu_ps(o + i0 + 8 * u) : _mm256_maskload_ps(o + i0 + 8 * u, mk[u]);
            if (rescale) acc[u] = _mm256_mul_ps(acc[u], cv);
        }
        if (w == 64) {
            for (size_t jj = 0; jj < nb; ++jj) {
                if (sum) ls += p[jj];
                const __m256 pj = _mm256_broadcast_ss(p + jj);
                const float* vj = v + jj * ldv + i0;
                for (int u = 0; u < 8; ++u) acc[u] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * u), acc[u]);
            }
        } else {
            const int nu = int((w + 7) / 8);
            for (size_t jj = 0; jj < nb; ++jj) {
                if (sum) ls += p[jj];
                const __m256 pj = _mm256_broadcast_ss(p + jj);
                const float* vj = v + jj * ldv + i0;
                for (int u = 0; u < nu; ++u) acc[u] = _mm256_fmadd_ps(pj, _mm256_maskload_ps(vj + 8 * u, mk[u]), acc[u]);
            }
        }
        for (int u = 0; u < 8; ++u) {
            if (w == 64) _mm256_storeu_ps(o + i0 + 8 * u, acc[u]);
            else _mm256_maskstore_ps(o + i0 + 8 * u, mk[u], acc[u]);
        }
    }
    l = ls;
}

// Scores of one row against the first NV 8-key vectors of a block (the
// ones holding visible keys): each lane the reference's fma chain over the
// head dimension. The vectors past them are left 0: every lane there is a
// hidden key, which the caller blends to -inf (p = 0) as the reference
// does. Skipping them halves the work of a prompt's diagonal blocks.
template <int NV>
inline void scores(const float* q, const float* kt, size_t hd, __m256* s) {
    for (int u = 0; u < 8; ++u) s[u] = _mm256_setzero_ps();
    for (size_t i = 0; i < hd; ++i) {
        const __m256 qi = _mm256_broadcast_ss(q + i);
        const float* kr = kt + i * kAttnBlock;
        for (int u = 0; u < NV; ++u) s[u] = _mm256_fmadd_ps(qi, _mm256_loadu_ps(kr + 8 * u), s[u]);
    }
}

inline void scores_n(int nv, const float* q, const float* kt, size_t hd, __m256* s) {
    switch (nv) {
        case 1: scores<1>(q, kt, hd, s); break;
        case 2: scores<2>(q, kt, hd, s); break;
        case 3: scores<3>(q, kt, hd, s); break;
        case 4: scores<4>(q, kt, hd, s); break;
        case 5: scores<5>(q, kt, hd, s); break;
        case 6: scores<6>(q, kt, hd, s); break;
        case 7: scores<7>(q, kt, hd, s); break;
        default: scores<8>(q, kt, hd, s); break;
    }
}

// Rows of a call from which a block's value rows are copied together first.
constexpr size_t kCopyVRows = 8;

}  // namespace

void attn_rows(const AttnRowsArgs& a) {
    const size_t hd = a.hd, rows = a.rows;
    float* o = a.scratch;            // [rows][hd]
    float* m = o + rows * hd;        // [rows]
    float* l = m + rows;             // [rows]
    float* p = l + rows;             // [kAttnBlock]
    float* vb = p + 4 * kAttnBlock;  // [kAttnBlock][hd]
    size_t maxlim = 0;
    for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < hd; ++i) o[r * hd + i] = 0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
        maxlim = a.lim[r] > maxlim ? a.lim[r] : maxlim;
    }
    const __m256 ninf = _mm256_set1_ps(-INFINITY), scale = _mm256_set1_ps(a.scale);
    for (size_t b = 0; b * kAttnBlock < maxlim; ++b) {
        const size_t j0 = b * kAttnBlock;
        const float* kt = a.kt + b * a.kt_stride;
        // The block's value rows, copied together when enough rows read
        // them: in the cache they are kv_dim floats apart (1 KB at 4 heads
        // of 64), which maps a block's 256 lines onto 16 of L1's 64 sets,
        // so each row's p · V fetched them again from L2. (A decode step's
        // few rows read them too few times to pay for the copy.)
        const float* vblk = a.v + j0 * a.ldv;
        size_t ldvb = a.ldv;
        if (rows >= kCopyVRows) {
            const size_t nbmax = maxlim - j0 < kAttnBlock ? maxlim - j0 : kAttnBlock;
            for (size_t jj = 0; jj < nbmax; ++jj) std::memcpy(vb + jj * hd, vblk + jj * a.ldv, hd * sizeof(float));
            vblk = vb;
            ldvb = hd;
        }
        for (size_t r = 0; r < rows; ++r) {
            const size_t lim = a.lim[r];
            if (lim <= j0) continue;
            const size_t nb = lim - j0 < kAttnBlock ? lim - j0 : kAttnBlock;
            const float* q = a.q[r];
            __m256 s[8];
            scores_n(int((nb + 7) / 8), q, kt, hd, s);
            __m256 valid[8];
            __m256 mv = ninf;
            for (int u = 0; u < 8; ++u) {
                valid[u] = _mm256_castsi256_ps(lanes(long(nb) - 8 * u));
                s[u] = _mm256_blendv_ps(ninf, _mm256_mul_ps(s[u], scale), valid[u]);
                mv = _mm256_max_ps(s[u], mv);
            }
            const float mb = hmax(mv);
            const float mn = b == 0 ? mb : (mb > m[r] ? mb : m[r]);
            float c = 1.0f;
            if (b > 0) {
                c = _mm256_cvtss_f32(exp8(_mm256_set1_ps(m[r] - mn)));
                l[r] *= c;
            }
            const __m256 mnv = _mm256_set1_ps(mn);
            for (int u = 0; u < 8; ++u) _mm256_storeu_ps(p + 8 * u, _mm256_and_ps(valid[u], exp8(_mm256_sub_ps(s[u], mnv))));
            pv(o + r * hd, hd, b > 0, c, p, nb, vblk, ldvb, l[r]);
            m[r] = mn;
        }
    }
    for (size_t r = 0; r < rows; ++r) {
        const __m256 lv = _mm256_set1_ps(l[r]);
        float* out = a.out[r];
        const float* orow = o + r * hd;
        for (size_t i = 0; i < hd; i += 8) {
            const __m256i k = lanes(long(hd - i));
            _mm256_maskstore_ps(out + i, k, _mm256_div_ps(_mm256_maskload_ps(orow + i, k), lv));
        }
    }
}

// One vector of each, shared by the unrolled loops and their masked tails
// (the same operations per lane; formulas as in attn_avx512.cpp).
static inline __m256 gelu8(__m256 v) {
    const __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(kGeluC), _mm256_mul_ps(_mm256_mul_ps(v, v), v), v);
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_mul_ps(_mm256_set1_ps(kGeluK), y))));
}
static inline __m256 silu8(__m256 x) {
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_xor_ps(x, _mm256_set1_ps(-0.0f)))));
}

void gelu_tanh(float* x, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {  // four vectors a round, as silu_mul
        __m256 v[4];
        for (int j = 0; j < 4; ++j) v[j] = _mm256_loadu_ps(x + i + 8 * j);
        for (int j = 0; j < 4; ++j) _mm256_storeu_ps(x + i + 8 * j, gelu8(v[j]));
    }
    for (; i < n; i += 8) {
        const __m256i k = lanes(long(n - i));
        _mm256_maskstore_ps(x + i, k, gelu8(_mm256_maskload_ps(x + i, k)));
    }
}

void silu_mul(float* g, const float* u, size_t n) {
    size_t i = 0;
    // Four whole vectors a round with plain loads and stores (see the
    // AVX-512 silu_mul); the masked loads and stores only for the tail.
    for (; i + 32 <= n; i += 32) {
        __m256 x[4];
        for (int j = 0; j < 4; ++j) x[j] = _mm256_loadu_ps(g + i + 8 * j);
        for (int j = 0; j < 4; ++j) _mm256_storeu_ps(g + i + 8 * j, _mm256_mul_ps(silu8(x[j]), _mm256_loadu_ps(u + i + 8 * j)));
    }
    for (; i < n; i += 8) {
        const __m256i k = lanes(long(n - i));
        _mm256_maskstore_ps(g + i, k, _mm256_mul_ps(silu8(_mm256_maskload_ps(g + i, k)), _mm256_maskload_ps(u + i, k)));
    }
}

}  // namespace avx2
}  // namespace qk

#endif
