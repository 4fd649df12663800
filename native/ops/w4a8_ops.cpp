// W4A8 driver (see w4a8_ops.h): (1) quantize X per block of 32 into the
// chunked layout of W4A8Args, with the block scales, their lane expansion
// and the per-group activation sums (parallel over rows); (2) the table's
// gemm_w4a8 over blocks of N rows of W (parallel_for). No ISA flags.
#include "w4a8_ops.h"

#include <algorithm>
#include <atomic>

#include "../dispatch.h"
#include "../threadpool.h"
#include "op_util.h"
#include "quantize_ops.h"

namespace qk {

using ops::min_sz;
using ops::record_bad;

namespace {



// One row: codes q[K] (natural order) -> the operands of row m of `a`.
// Returns the index in the row of the first NaN/Inf, or SIZE_MAX.
size_t quantize_row(const Kernels& k, const float* x, W4A8Acts& a, size_t m, std::vector<float>& amax,
                    std::vector<int8_t>& q, std::vector<int32_t>& bsum) {
    const size_t K = a.K, full = K / 32, rem = K % 32, nb = full + (rem ? 1 : 0);
    ops::grow(amax, nb);
    ops::grow(q, a.ldx);  // whole chunks of 128
    size_t e = full ? k.absmax(x, full, 32, amax.data()) : SIZE_MAX;
    if (e != SIZE_MAX) return e;
    if (rem) {
        e = k.absmax(x + 32 * full, 1, rem, amax.data() + full);
        if (e != SIZE_MAX) return 32 * full + e;
    }
    // choose_params' symmetric int8 scale of each block
    float* sx = a.sx.data() + m * a.ldsx;
    for (size_t b = 0; b < nb; ++b) sx[b] = absmax_scale(amax[b], 127);
    if (full) k.quantize(x, full, 32, sx, nullptr, -127, 127, q.data());
    if (rem) k.quantize(x + 32 * full, 1, rem, sx + full, nullptr, -127, 127, q.data() + 32 * full);

    // Chunked layout (per 128 values, the even ones then the odd ones) and
    // each block's sum of codes, by the table's w4a8_chunk_x over every
    // chunk: q is zero past K up to the last whole chunk, which gives the
    // layout's zeros there and adds nothing to a shorter last block's sum.
    const int8_t* qp = q.data();
    const size_t kk = K, chunks = a.ldx / 128;
    std::fill(q.begin() + kk, q.begin() + a.ldx, int8_t(0));
    ops::grow(bsum, 4 * chunks);
    k.w4a8_chunk_x(qp, chunks, a.xc.data() + m * a.ldx, bsum.data());

    float* sxl = a.sxl.data() + m * a.ldsxl;
    // (one lane per 8 values: block b's scale in lanes 4b .. 4b + 3, zero
    // past K; two plain loops, not one with a test per lane, which took a
    // tenth of this function's time)
    const size_t live = (kk + 7) / 8;
    for (size_t l = 0; l < live; ++l) sxl[l] = sx[l / 4];
    for (size_t l = live; l < a.ldsxl; ++l) sxl[l] = 0.0f;

    // tg[g] = sum_{k in g} sx[k / 32] * q[k], one product per segment (a
    // weight group cut by the activation blocks).
    float* tg = a.tg.data() + m * a.ldtg;
    const size_t G = a.G;
    if (G % 32 == 0) {  // (then 32 divides K: every block is whole)
        for (size_t g = 0; g < kk / G; ++g) {
            float t = 0.0f;
            for (size_t b = g * G / 32; b < (g + 1) * G / 32; ++b) t = t + sx[b] * float(bsum[b]);
            tg[g] = t;
        }
    } else {
        for (size_t g = 0; g < kk / G; ++g) {
            float t = 0.0f;
            int32_t d = 0;
            for (size_t i = g * G; i < (g + 1) * G; ++i) {
                d += qp[i];
                if ((i + 1) % 32 == 0 || i + 1 == (g + 1) * G) {
                    t = t + sx[i / 32] * float(d);
                    d = 0;
                }
            }
            tg[g] = t;
        }
    }
    return SIZE_MAX;
}

}  // namespace

size_t w4a8_quantize_rows(const Kernels& k, const float* x, size_t M, size_t K, size_t G, W4A8Acts& a, size_t ldx) {
    if (ldx == 0) ldx = K;
    a.M = M;
    a.K = K;
    a.G = G;
    const size_t chunks = (K + 127) / 128;
    a.ldx = 128 * chunks;
    a.ldsx = (K + 31) / 32;
    a.ldsxl = 16 * chunks;
    a.ldtg = K / G;
    ops::grow(a.xc, M * a.ldx);
    ops::grow(a.sx, M * a.ldsx);
    ops::grow(a.sxl, M * a.ldsxl);
    ops::grow(a.tg, M * a.ldtg);
    if (M == 0 || K == 0) return SIZE_MAX;
    std::atomic<size_t> bad{SIZE_MAX};
    const size_t rpt = ops::even_rows_per_task(M, K, threads());
    parallel_for((M + rpt - 1) / rpt, double(M) * double(K) * 8.0, [&](size_t t, size_t) {
        thread_local std::vector<float> amax;
        thread_local std::vector<int8_t> q;
        thread_local std::vector<int32_t> bsum;
        for (size_t m = t * rpt; m < min_sz(M, (t + 1) * rpt); ++m) {
            const size_t e = quantize_row(k, x + m * ldx, a, m, amax, q, bsum);
            if (e != SIZE_MAX) {
                record_bad(bad, m * ldx + e);
                return;
            }
        }
    });
    return bad.load();
}

namespace {

// The W4A8Args of one product over the quantized rows of `acts`.
W4A8Args product_args(const W4A8Acts& acts, const WeightView& w, size_t N, size_t K, size_t M, const float* bias,
                      float* y) {
    W4A8Args a;
    a.xc = acts.xc.data();
    a.ldx = acts.ldx;
    a.sx = acts.sx.data();
    a.ldsx = acts.ldsx;
    a.sxl = acts.sxl.data();
    a.ldsxl = acts.ldsxl;
    a.tg = acts.tg.data();
    a.ldtg = acts.ldtg;
    a.M = M;
    a.N = N;
    a.K = K;
    a.w = w;
    a.bias = bias;
    a.y = y;
    a.ldy = N;
    return a;
}

// Weight rows per task of a product of N rows at M activation rows.
size_t rows_per_task(const Kernels& k, size_t M, size_t N) {
    // 64 weight rows per task (a multiple of the rows kernel's 16): 64 K / 2
    // bytes stay in L2 while every block of activation rows passes over them.
    size_t nb = 64;
    // Decode (the row-layout kernel, memory-bound) on several threads: one
    // task per thread, its whole range of rows. The pool already starts each
    // thread on its own segment of tasks, but the kernel prefetches ~18 KiB
    // ahead of the tile it reads (prefetch_ahead), past the end of its task,
    // and a thread done early takes the other's last tasks, whose rows the
    // other had prefetched. 24 d768 layers from memory (W4A8 g32, M = 1,
    // two threads, AMD EPYC Zen 5, 40 interleaved rounds, twice): 3.70-3.91
    // -> 3.37-3.40 ms. Same bits: a row's result does not depend on the
    // split. (Up to 4 rows: the kernel's one pass over each weight row; more
    // rows take several passes over a task's rows, which must stay in L2.)
    if (M <= 4 && M < k.w4a8_rows_min_m && threads() > 1) {
        const size_t per = (N + threads() - 1) / threads();
        nb = std::max(nb, (per + 15) / 16 * 16);
    }
    return nb;
}

// Products p = 0 .. P - 1 of the rows quantized in `acts`, all in one
// parallel_for: task t of product p covers its weight rows [t nb_p, (t + 1) nb_p).
void run_products(const Kernels& k, const W4A8Args* args, size_t P) {
    size_t nb[kW4A8MaxProducts], first[kW4A8MaxProducts + 1];
    first[0] = 0;
    double flops = 0;
    for (size_t p = 0; p < P; ++p) {
        nb[p] = rows_per_task(k, args[p].M, args[p].N);
        first[p + 1] = first[p] + (args[p].N + nb[p] - 1) / nb[p];
        flops += 2.0 * double(args[p].M) * double(args[p].N) * double(args[p].K);
    }
    // (every W4A8 kernel reads f16 scales, WeightView::scales16, itself)
    // (the two kernels give the same bits: the choice is speed only)
    const auto kern = args[0].M >= k.w4a8_rows_min_m ? k.gemm_w4a8_rows : k.gemm_w4a8;
    parallel_for(first[P], flops, [&](size_t task, size_t) {
        size_t p = 0;
        while (task >= first[p + 1]) ++p;
        const size_t t = task - first[p];
        kern(args[p], t * nb[p], min_sz(args[p].N, (t + 1) * nb[p]));
    });
}

// One product over columns [0, K) of X (row stride ldx) and a weight view
// whose groups divide K (or, G % 32 != 0, which the kernels run with the
// reference: it indexes scales by k / G and so takes a shorter last group).
size_t w4a8_part(const Kernels& k, const WeightView& w, size_t N, size_t K, const float* x, size_t ldx, size_t M,
                 const float* bias, float* y, W4A8Acts& acts) {
    const size_t bad = w4a8_quantize_rows(k, x, M, K, w.group, acts, ldx);
    if (bad != SIZE_MAX) return bad;
    const W4A8Args a = product_args(acts, w, N, K, M, bias, y);
    run_products(k, &a, 1);
    return SIZE_MAX;
}

// The calling thread's quantized activations (one buffer for every call).
W4A8Acts& call_acts() {
    thread_local W4A8Acts acts;
    return acts;
}

// Whether the weight's groups need the two-part split of gemm_w4a8 (a
// shorter last group with G % 32 == 0).
bool split_tail(size_t G, size_t K) { return !(K % G == 0 || G % 32 != 0 || G > K); }

// The view of a weight whose groups need no split.
WeightView whole_view(const WeightView& w, size_t K) {
    WeightView v = w;
    v.gstride = (K + w.group - 1) / w.group;
    v.group = std::min(w.group, K);  // G > K: one group of K
    return v;
}

}  // namespace

size_t gemm_w4a8(const Kernels& k, const WeightView& w, size_t N, size_t K, const float* x, size_t M,
                 const float* bias, float* y) {
    if (M == 0 || N == 0) return SIZE_MAX;
    if (K == 0) {
        for (size_t m = 0; m < M; ++m)
            for (size_t n = 0; n < N; ++n) y[m * N + n] = bias ? bias[n] : 0.0f;
        return SIZE_MAX;
    }
    W4A8Acts& acts = call_acts();
    const size_t G = w.group;
    if (!split_tail(G, K)) return w4a8_part(k, whole_view(w, K), N, K, x, K, M, bias, y, acts);
    // A shorter last group with G % 32 == 0: the whole groups [0, K1) and the
    // last one [K1, K) as two products (K1 is a multiple of 32, so each
    // part's activation blocks are the row's own), Y = Y1 + (Y2 + bias).
    size_t K1;
    const WeightView tail = last_group_view(w, K, &K1);
    const size_t K2 = K - K1;
    WeightView main = w;
    main.gstride = tail.gstride;
    size_t bad = w4a8_part(k, main, N, K1, x, K, M, nullptr, y, acts);
    if (bad != SIZE_MAX) return bad;  // (indices are of x[M, K]: the parts read x with row stride K)
    thread_local std::vector<float> y2;
    ops::grow(y2, M * N);
    bad = w4a8_part(k, tail, N, K2, x + K1, K, M, bias, y2.data(), acts);
    if (bad != SIZE_MAX) return K1 + bad;
    for (size_t i = 0; i < M * N; ++i) y[i] += y2[i];
    return SIZE_MAX;
}

size_t gemm_w4a8_multi(const Kernels& k, const W4A8Product* ps, size_t P, size_t K, const float* x, size_t M) {
    if (P == 0 || M == 0) return SIZE_MAX;
    // One quantization and one parallel_for serve every product when their
    // weights read the activations alike: the same group size (the per-group
    // activation sums depend on it), none with the tail split, at most
    // kW4A8MaxProducts, K > 0. Otherwise each product on its own (same bits).
    size_t rows = 0;
    for (size_t p = 0; p < P; ++p) rows += ps[p].N;
    if (rows == 0) return SIZE_MAX;  // (no output: x is not read)
    bool shared = K > 0 && P <= kW4A8MaxProducts;
    for (size_t p = 0; p < P && shared; ++p)
        shared = ps[p].w.group == ps[0].w.group && !split_tail(ps[p].w.group, K);
    if (!shared) {
        for (size_t p = 0; p < P; ++p) {
            const size_t bad = gemm_w4a8(k, ps[p].w, ps[p].N, K, x, M, ps[p].bias, ps[p].y);
            if (bad != SIZE_MAX) return bad;
        }
        return SIZE_MAX;
    }
    W4A8Acts& acts = call_acts();
    const size_t bad = w4a8_quantize_rows(k, x, M, K, std::min(ps[0].w.group, K), acts, K);
    if (bad != SIZE_MAX) return bad;
    W4A8Args args[kW4A8MaxProducts];
    size_t n = 0;
    for (size_t p = 0; p < P; ++p)
        if (ps[p].N > 0) args[n++] = product_args(acts, whole_view(ps[p].w, K), ps[p].N, K, M, ps[p].bias, ps[p].y);
    if (n > 0) run_products(k, args, n);
    return SIZE_MAX;
}

size_t gemm_w4a8_multi(const W4A8Product* ps, size_t P, size_t K, const float* x, size_t M) {
    return gemm_w4a8_multi(kernels(), ps, P, K, x, M);
}

size_t gemm_w4a8(const WeightView& w, size_t N, size_t K, const float* x, size_t M, const float* bias, float* y) {
    return gemm_w4a8(kernels(), w, N, K, x, M, bias, y);
}

}  // namespace qk
