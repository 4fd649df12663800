// Causal decode attention (see attention_ops.h).
//
// Per (query t, kv head g): the `group` query heads of g are rows of X for one
// gemv over the keys of g (K [lim, hd], row stride kvDim), so each key row is
// read once for all of them (mc <= 4 rows per gemv call); then per head the
// softmax and the weighted sum of the value rows, in double.
#include "attention_ops.h"

#include <cmath>
#include <vector>

#include "../dispatch.h"
#include "../threadpool.h"

namespace qk {

namespace {

void one_task(const Kernels& k, const AttnArgs& a, size_t t, size_t g, std::vector<float>& s, std::vector<double>& acc) {
    const size_t hd = a.head_dim, group = a.n_heads / a.n_kv_heads;
    const size_t q_dim = a.n_heads * hd, kv_dim = a.n_kv_heads * hd;
    const size_t lim = a.pos0 + t + 1;  // causal: positions 0 .. pos0 + t
    s.resize(group * lim);
    acc.resize(hd);
    // Scores of the group's heads: S[r, j] = q[t, (g * group + r) * hd ..] · keys[j, g * hd ..].
    GemmArgs ga{};
    ga.ldx = hd;
    ga.M = group;
    ga.N = lim;
    ga.K = hd;
    ga.w.fmt = WFormat::f32;
    ga.w.data = a.keys + g * hd;
    ga.w.row_bytes = kv_dim * sizeof(float);
    ga.w.scales = nullptr;
    ga.w.zps = nullptr;
    ga.w.group = hd;
    ga.bias = nullptr;
    ga.x = a.q + t * q_dim + g * group * hd;
    ga.y = s.data();
    ga.ldy = lim;
    for (size_t r0 = 0; r0 < group; r0 += 4) k.gemv(ga, r0, group - r0 < 4 ? group - r0 : 4, 0, lim);

    for (size_t r = 0; r < group; ++r) {
        const float* sr = s.data() + r * lim;
        double mx = -INFINITY;
        for (size_t j = 0; j < lim; ++j) {
            const double d = double(sr[j]) * a.scale;
            if (d > mx) mx = d;  // (not std::fmax: GCC 12 for aarch64 ICEs vectorizing that reduction)
        }
        double sum = 0.0;
        for (double& v : acc) v = 0.0;
        for (size_t j = 0; j < lim; ++j) {
            const double e = std::exp(double(sr[j]) * a.scale - mx);
            sum += e;
            const float* vj = a.values + j * kv_dim + g * hd;
            for (size_t i = 0; i < hd; ++i) acc[i] += e * double(vj[i]);
        }
        // Normalized once at the end: sum_j (e_j / sum) v_j = (sum_j e_j v_j) / sum.
        float* o = a.out + t * q_dim + (g * group + r) * hd;
        const double inv = 1.0 / sum;
        for (size_t i = 0; i < hd; ++i) o[i] = float(acc[i] * inv);
    }
}

}  // namespace

void attention(const Kernels& k, const AttnArgs& a) {
    if (a.T == 0 || a.n_heads == 0 || a.head_dim == 0) return;
    // Flops of the whole call: q·k and p·v for every head and position.
    const double flops = 4.0 * double(a.T) * double(a.n_heads) * double(a.head_dim) * double(a.pos0 + a.T);
    parallel_for(a.T * a.n_kv_heads, flops, [&](size_t task, size_t) {
        thread_local std::vector<float> s;
        thread_local std::vector<double> acc;
        one_task(k, a, task / a.n_kv_heads, task % a.n_kv_heads, s, acc);
    });
}

void attention(const AttnArgs& a) { attention(kernels(), a); }

}  // namespace qk
