// Dynamic W8A8 int8 GEMM and LLM.int8() drivers (see w8a8_ops.h). No ISA
// flags: kernels are called through a qk::Kernels table.
//
// gemm_w8a8: (1) quantize X per row into a biased uint8 scratch (parallel
// over rows; the table's minmax + quantize, qk::choose_params); (1b) if the
// kernel reads packed activations at this M (Kernels::w8a8_packed_min_m:
// AVX-512 from 7 rows), the table's w8a8_pack_a regroups them, parallel
// over 16-row blocks; (2) the table's gemm_w8a8 kernel over blocks of N rows
// of W (parallel_for), fused int32 -> float rescale and bias.
// gemm_llm_int8: (0) find the outlier columns; (1) as above with those
// columns read as 0; (2) the float part X[:, outliers] · deq(W[:, outliers])^T
// into Y with qk::gemm (i8 per-channel view of the gathered weight columns,
// so the weights are dequantized from the stored int8 codes); (3) the int8
// kernel in accumulate mode adds its part, then the bias.
#include "w8a8_ops.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "../dispatch.h"
#include "../threadpool.h"
#include "op_util.h"
#include "gemm_ops.h"
#include "quantize_ops.h"

namespace qk {

using ops::min_sz;
using ops::record_bad;

namespace {



// Y = bias (or 0) for K == 0.
void bias_only(const float* bias, size_t M, size_t N, float* y) {
    for (size_t m = 0; m < M; ++m)
        for (size_t n = 0; n < N; ++n) y[m * N + n] = bias ? bias[n] : 0.0f;
}

// W rows per task: whole multiples of every kernel tile width (8, 6, 4, 3).
size_t rows_per_task(size_t M) { return M < 4 ? 64 : 96; }

// Packed copy of the activations for kernels that read one (see W8A8Args),
// on a 64-byte boundary of buf: every 64-byte piece a kernel loads (an
// AVX-512 vector, a tile row) is then one cache line. (A vector's heap
// block starts 16 bytes into a line; the AMX tiles of X then each touched
// 32 lines instead of 16, and the tile loop of a 128 x 2048 x 768 W8A8
// GEMM ran 1.9x slower.)
uint8_t* packed_buffer(std::vector<uint8_t>& buf, size_t M, size_t K) {
    ops::grow(buf, w8a8_packed_bytes(M, K) + 63);
    return buf.data() + (-reinterpret_cast<uintptr_t>(buf.data()) & 63);
}

const uint8_t* packed_for(const Kernels& k, const uint8_t* a, size_t M, size_t K, std::vector<uint8_t>& buf) {
    if (M < k.w8a8_packed_min_m) return nullptr;
    uint8_t* ap = packed_buffer(buf, M, K);
    w8a8_pack_a(k, a, K, M, K, ap);
    return ap;
}

W8A8Args int8_args(const W8A8Weight& w, const uint8_t* a, const uint8_t* ap, const float* sx, size_t M,
                   const float* bias, bool accumulate, float* y) {
    W8A8Args args;
    args.a = a;
    args.ap = ap;
    args.lda = w.K;
    args.sa = sx;
    args.M = M;
    args.N = w.N;
    args.K = w.K;
    args.b = w.q;
    args.ldb = w.K;
    args.sb = w.scale;
    args.b_rowsum = w.rowsum;
    args.bias = bias;
    args.accumulate = accumulate;
    args.y = y;
    args.ldy = w.N;
    args.c = nullptr;
    args.ldc = 0;
    return args;
}

// Products p = 0 .. P - 1 over the same quantized activations (args[p].M
// rows each), all in one parallel_for: each product's blocks of W, times
// blocks of M when there are few blocks of W in all.
void run_products(const Kernels& k, const W8A8Args* args, size_t P) {
    const size_t M = args[0].M;
    const size_t nb = rows_per_task(M);
    size_t n_tasks[kW8A8MaxProducts], first[kW8A8MaxProducts + 1], all = 0;
    for (size_t p = 0; p < P; ++p) all += n_tasks[p] = (args[p].N + nb - 1) / nb;
    // few blocks of W: split M too (in multiples of 16 rows, the packed
    // activation blocks), see ops::m_split_rows; int32 sums stay exact
    const size_t m_rows = ops::m_split_rows(M, all, threads());
    const size_t m_tasks = (M + m_rows - 1) / m_rows;
    first[0] = 0;
    for (size_t p = 0; p < P; ++p) first[p + 1] = first[p] + n_tasks[p] * m_tasks;
    const size_t block = 64 * ((args[0].K + 3) / 4);  // bytes per 16 packed rows
    parallel_for(first[P], [&](size_t task, size_t) {
        size_t p = 0;
        while (task >= first[p + 1]) ++p;
        const W8A8Args& a = args[p];
        const size_t i = task - first[p], t = i % n_tasks[p], m0 = i / n_tasks[p] * m_rows;
        W8A8Args sub = a;
        sub.M = min_sz(M, m0 + m_rows) - m0;
        sub.a = a.a + m0 * a.lda;
        sub.ap = a.ap && sub.M >= k.w8a8_packed_min_m ? a.ap + m0 / 16 * block : nullptr;
        sub.sa = a.sa + m0;
        sub.y = a.y + m0 * a.ldy;
        k.gemm_w8a8(sub, t * nb, min_sz(a.N, (t + 1) * nb));
    });
}

void run_int8(const Kernels& k, const W8A8Weight& w, const uint8_t* a, const uint8_t* ap, const float* sx,
              size_t M, const float* bias, bool accumulate, float* y) {
    const W8A8Args args = int8_args(w, a, ap, sx, M, bias, accumulate, y);
    run_products(k, &args, 1);
}

// Per-call scratch of the calling thread (activations and their scales).
struct Scratch {
    std::vector<uint8_t> a;
    std::vector<uint8_t> ap;
    std::vector<float> sx;
};
Scratch& call_scratch() {
    thread_local Scratch s;
    return s;
}

}  // namespace

void w8a8_rowsums(const int8_t* q, size_t N, size_t K, int32_t* rowsum) {
    const size_t rpt = 64;
    parallel_for((N + rpt - 1) / rpt, [&](size_t t, size_t) {
        for (size_t n = t * rpt; n < min_sz(N, (t + 1) * rpt); ++n) {
            const int8_t* r = q + n * K;
            int32_t s = 0;
            for (size_t i = 0; i < K; ++i) s += r[i];
            rowsum[n] = s;
        }
    });
}

size_t w8a8_packed_bytes(size_t M, size_t K) { return (M + 15) / 16 * ((K + 3) / 4) * 64; }

void w8a8_pack_a(const Kernels& k, const uint8_t* a, size_t lda, size_t M, size_t K, uint8_t* ap) {
    const size_t block = 64 * ((K + 3) / 4);
    // Parallel over 16-row blocks (M * K bytes in all: a small pass next to
    // the GEMM's M * N * K products).
    parallel_for((M + 15) / 16, [&](size_t b, size_t) {
        k.w8a8_pack_a(a + 16 * b * lda, lda, min_sz(16, M - 16 * b), K, ap + b * block);
    });
}

void w8a8_pack_a(const uint8_t* a, size_t lda, size_t M, size_t K, uint8_t* ap) {
    w8a8_pack_a(kernels(), a, lda, M, K, ap);
}

namespace {

// Row `row` of K values to int8 codes + 128 at q (symmetric absmax, [-127,
// 127]) and its scale *s; columns marked in outlier_cols (or nullptr) count
// as 0. Returns SIZE_MAX, or the index in the row of its first NaN/Inf.
size_t quantize_row(const Kernels& k, const float* row, size_t K, const uint8_t* outlier_cols, uint8_t* q, float* s) {
    QuantSpec spec;
    spec.bits = 8;
    spec.asymmetric = false;
    spec.gran = Granularity::channel;
    spec.group = 0;
    int32_t qmin, qmax;
    code_range(spec, &qmin, &qmax);  // [-127, 127]
    float mn, mx;
    const size_t e = k.minmax(row, 1, K, &mn, &mx);
    if (e != SIZE_MAX) return e;
    thread_local std::vector<float> masked;
    if (outlier_cols) {
        masked.resize(K);
        for (size_t i = 0; i < K; ++i) masked[i] = outlier_cols[i] ? 0.0f : row[i];
        row = masked.data();
        k.minmax(row, 1, K, &mn, &mx);
    }
    int32_t zp;
    choose_params(spec, mn, mx, s, &zp);
    k.quantize(row, 1, K, s, nullptr, qmin, qmax, reinterpret_cast<int8_t*>(q));
    // qx + 128. K is a by-value parameter, so the uint8_t stores cannot
    // alias it and the loop vectorizes (read through a lambda's reference
    // capture it was reloaded after every byte: 2.5x the whole row step).
    for (size_t i = 0; i < K; ++i) q[i] = uint8_t(q[i] ^ 0x80u);
    return SIZE_MAX;
}

// X[M, K] quantized as w8a8_quantize_rows does, into s.a and s.sx, and
// packed as w8a8_pack_a does, into s.ap (on a 64-byte boundary, *ap), in one
// pass over blocks of 16 rows: one hand-off to the pool instead of two, and
// tasks of 16 rows (two threads had split the quantization of a 128-row X
// into 86 and 42 rows). Same return value as w8a8_quantize_rows.
size_t quantize_pack(const Kernels& k, const float* x, size_t M, size_t K, Scratch& s, const uint8_t** ap) {
    uint8_t* packed = packed_buffer(s.ap, M, K);
    const size_t block = 64 * ((K + 3) / 4);  // bytes per 16 packed rows
    std::atomic<size_t> bad{SIZE_MAX};
    parallel_for((M + 15) / 16, [&](size_t b, size_t) {
        const size_t m0 = 16 * b, rows = min_sz(16, M - m0);
        for (size_t m = m0; m < m0 + rows; ++m) {
            const size_t e = quantize_row(k, x + m * K, K, nullptr, s.a.data() + m * K, s.sx.data() + m);
            if (e != SIZE_MAX) {
                record_bad(bad, m * K + e);
                return;
            }
        }
        k.w8a8_pack_a(s.a.data() + m0 * K, K, rows, K, packed + b * block);
    });
    *ap = packed;
    return bad.load();
}

}  // namespace

size_t w8a8_quantize_rows(const Kernels& k, const float* x, size_t M, size_t K, const uint8_t* outlier_cols,
                          uint8_t* a, float* sx) {
    if (M == 0 || K == 0) return SIZE_MAX;
    std::atomic<size_t> bad{SIZE_MAX};
    const size_t rpt = ops::even_rows_per_task(M, K, threads());
    parallel_for((M + rpt - 1) / rpt, [&](size_t t, size_t) {
        for (size_t m = t * rpt; m < min_sz(M, (t + 1) * rpt); ++m) {
            const size_t e = quantize_row(k, x + m * K, K, outlier_cols, a + m * K, sx + m);
            if (e != SIZE_MAX) {
                record_bad(bad, m * K + e);
                return;
            }
        }
    });
    return bad.load();
}

namespace {

// X[M, K] quantized (and packed when the kernel reads packed rows at this M)
// into the calling thread's scratch s: codes s.a, scales s.sx, *ap the packed
// copy or nullptr. Same return value as w8a8_quantize_rows.
size_t quantize_x(const Kernels& k, const float* x, size_t M, size_t K, Scratch& s, const uint8_t** ap) {
    ops::grow(s.a, M * K);
    ops::grow(s.sx, M);
    *ap = nullptr;
    return M >= k.w8a8_packed_min_m ? quantize_pack(k, x, M, K, s, ap)
                                    : w8a8_quantize_rows(k, x, M, K, nullptr, s.a.data(), s.sx.data());
}

}  // namespace

size_t gemm_w8a8(const Kernels& k, const W8A8Weight& w, const float* x, size_t M, const float* bias, float* y) {
    const W8A8Product p{w, bias, y};
    return gemm_w8a8_multi(k, &p, 1, x, M);
}

size_t gemm_w8a8_multi(const Kernels& k, const W8A8Product* ps, size_t P, const float* x, size_t M) {
    if (P == 0 || M == 0) return SIZE_MAX;
    const size_t K = ps[0].w.K;
    if (P > kW8A8MaxProducts) {  // (callers pass a layer's q, k, v at most)
        for (size_t p = 0; p < P; p += kW8A8MaxProducts) {
            const size_t bad = gemm_w8a8_multi(k, ps + p, min_sz(kW8A8MaxProducts, P - p), x, M);
            if (bad != SIZE_MAX) return bad;
        }
        return SIZE_MAX;
    }
    if (K == 0) {
        for (size_t p = 0; p < P; ++p) bias_only(ps[p].bias, M, ps[p].w.N, ps[p].y);
        return SIZE_MAX;
    }
    size_t rows = 0;
    for (size_t p = 0; p < P; ++p) rows += ps[p].w.N;
    if (rows == 0) return SIZE_MAX;  // (no output: x is not read)
    Scratch& s = call_scratch();
    const uint8_t* ap;
    const size_t bad = quantize_x(k, x, M, K, s, &ap);
    if (bad != SIZE_MAX) return bad;
    W8A8Args args[kW8A8MaxProducts];
    size_t n = 0;
    for (size_t p = 0; p < P; ++p)
        if (ps[p].w.N > 0) args[n++] = int8_args(ps[p].w, s.a.data(), ap, s.sx.data(), M, ps[p].bias, false, ps[p].y);
    if (n > 0) run_products(k, args, n);
    return SIZE_MAX;
}

size_t gemm_w8a8_multi(const W8A8Product* ps, size_t P, const float* x, size_t M) {
    return gemm_w8a8_multi(kernels(), ps, P, x, M);
}

size_t gemm_w8a8(const W8A8Weight& w, const float* x, size_t M, const float* bias, float* y) {
    return gemm_w8a8(kernels(), w, x, M, bias, y);
}

size_t gemm_llm_int8(const Kernels& k, const W8A8Weight& w, const float* x, size_t M, float threshold,
                     const float* bias, float* y, size_t* n_outlier_cols_out) {
    if (n_outlier_cols_out) *n_outlier_cols_out = 0;
    const size_t K = w.K, N = w.N;
    if (M == 0 || N == 0) return SIZE_MAX;
    // Outlier columns (NaN never compares >= and is reported below).
    std::vector<size_t> cols;
    std::vector<uint8_t> is_out;
    if (threshold > 0.0f && K > 0) {
        is_out.assign(K, 0);
        for (size_t m = 0; m < M; ++m) {
            const float* r = x + m * K;
            for (size_t i = 0; i < K; ++i) is_out[i] |= uint8_t(std::fabs(r[i]) >= threshold);
        }
        for (size_t i = 0; i < K; ++i)
            if (is_out[i]) cols.push_back(i);
    }
    if (cols.empty()) return gemm_w8a8(k, w, x, M, bias, y);
    const size_t no = cols.size();
    if (n_outlier_cols_out) *n_outlier_cols_out = no;

    Scratch& s = call_scratch();
    ops::grow(s.a, M * K);
    ops::grow(s.sx, M);
    const size_t bad = w8a8_quantize_rows(k, x, M, K, is_out.data(), s.a.data(), s.sx.data());
    if (bad != SIZE_MAX) return bad;

    // Float part: Y = X[:, cols] · (Wq[:, cols] * sw)^T, no bias.
    std::vector<float> xo(M * no);
    for (size_t m = 0; m < M; ++m)
        for (size_t j = 0; j < no; ++j) xo[m * no + j] = x[m * K + cols[j]];
    std::vector<int8_t> wo(N * no);
    const size_t rpt = 256;
    parallel_for((N + rpt - 1) / rpt, [&](size_t t, size_t) {
        // Locals, not the captured references (int8 stores may alias them).
        const size_t* c = cols.data();
        const int8_t* q = w.q;
        int8_t* o = wo.data();
        const size_t nc = no, kk = K;
        for (size_t n = t * rpt; n < min_sz(N, (t + 1) * rpt); ++n)
            for (size_t j = 0; j < nc; ++j) o[n * nc + j] = q[n * kk + c[j]];
    });
    GemmArgs g;
    g.x = xo.data();
    g.ldx = no;
    g.M = M;
    g.N = N;
    g.K = no;
    g.w.fmt = WFormat::i8;
    g.w.data = wo.data();
    g.w.row_bytes = no;
    g.w.scales = w.scale;  // per channel: [N, 1]
    g.w.zps = nullptr;
    g.w.group = no;
    g.bias = nullptr;
    g.y = y;
    g.ldy = N;
    gemm(k, g, nullptr);

    // Int8 part added on top, then the bias.
    run_int8(k, w, s.a.data(), packed_for(k, s.a.data(), M, K, s.ap), s.sx.data(), M, bias, true, y);
    return SIZE_MAX;
}

size_t gemm_llm_int8_rows(const Kernels& k, const W8A8Weight& w, const float* x, size_t M, float threshold,
                          const float* bias, float* y, size_t* max_outlier_cols_out) {
    if (max_outlier_cols_out) *max_outlier_cols_out = 0;
    const size_t K = w.K, N = w.N;
    if (M == 0 || N == 0) return SIZE_MAX;
    if (K == 0) {
        bias_only(bias, M, N, y);
        return SIZE_MAX;
    }
    // Each row quantized with its own outlier columns read as 0.
    Scratch& s = call_scratch();
    ops::grow(s.a, M * K);
    ops::grow(s.sx, M);
    std::vector<uint8_t> mask(K);
    std::vector<size_t> cols;           // every row's outlier columns, concatenated
    std::vector<size_t> start(M + 1);  // row m's are cols[start[m] .. start[m + 1])
    size_t most = 0;
    for (size_t m = 0; m < M; ++m) {
        const float* r = x + m * K;
        start[m] = cols.size();
        for (size_t i = 0; i < K; ++i) {
            mask[i] = threshold > 0.0f && std::fabs(r[i]) >= threshold;
            if (mask[i]) cols.push_back(i);
        }
        most = std::max(most, cols.size() - start[m]);
        const size_t bad = w8a8_quantize_rows(k, r, 1, K, mask.data(), s.a.data() + m * K, s.sx.data() + m);
        if (bad != SIZE_MAX) return m * K + bad;
    }
    start[M] = cols.size();
    if (max_outlier_cols_out) *max_outlier_cols_out = most;
    // The weight columns of all rows' outliers (their union U, ascending),
    // gathered once into wu[N, |U|]; pos[j]: where row column cols[j] is in U.
    std::vector<size_t> uni(cols);
    std::sort(uni.begin(), uni.end());
    uni.erase(std::unique(uni.begin(), uni.end()), uni.end());
    const size_t nu = uni.size();
    std::vector<uint32_t> pos(cols.size());
    for (size_t j = 0; j < cols.size(); ++j) pos[j] = uint32_t(std::lower_bound(uni.begin(), uni.end(), cols[j]) - uni.begin());
    std::vector<int8_t> wu(N * nu);
    // The float part of each row, into Y (0 for a row without outliers): a
    // sum over the row's own columns in ascending order, whatever U is.
    const size_t rpt = 256;
    parallel_for((N + rpt - 1) / rpt, [&](size_t t, size_t) {
        const size_t n0 = t * rpt, n1 = min_sz(N, (t + 1) * rpt);
        const int8_t* q = w.q;
        int8_t* o = wu.data();
        for (size_t n = n0; n < n1; ++n)
            for (size_t u = 0; u < nu; ++u) o[n * nu + u] = q[n * K + uni[u]];
        for (size_t m = 0; m < M; ++m) {
            float* yr = y + m * N;
            const float* xr = x + m * K;
            for (size_t n = n0; n < n1; ++n) {
                const int8_t* wr = o + n * nu;
                float acc = 0.0f;
                for (size_t j = start[m]; j < start[m + 1]; ++j) acc += xr[cols[j]] * (float(wr[pos[j]]) * w.scale[n]);
                yr[n] = acc;
            }
        }
    });
    // The int8 part added on top, then the bias.
    run_int8(k, w, s.a.data(), packed_for(k, s.a.data(), M, K, s.ap), s.sx.data(), M, bias, true, y);
    return SIZE_MAX;
}

size_t gemm_llm_int8_rows(const W8A8Weight& w, const float* x, size_t M, float threshold, const float* bias, float* y,
                          size_t* max_outlier_cols_out) {
    return gemm_llm_int8_rows(kernels(), w, x, M, threshold, bias, y, max_outlier_cols_out);
}

size_t gemm_llm_int8(const W8A8Weight& w, const float* x, size_t M, float threshold, const float* bias, float* y,
                     size_t* n_outlier_cols_out) {
    return gemm_llm_int8(kernels(), w, x, M, threshold, bias, y, n_outlier_cols_out);
}

}  // namespace qk
