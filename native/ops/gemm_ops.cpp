// The portable GEMM driver (see gemm_ops.h). No ISA flags: every kernel is
// called through a qk::Kernels table.
//
// Panel path, per task (a block of nb rows of W, i.e. nb columns of Y):
//   for each K block [k0, k0 + kc):
//     P[nb, kc] = W[n0 : n0 + nb, k0 : k0 + kc] as f32
//     for each M block of mb rows: Y[m, n0 : n0 + nb] (+)= X[m, k0 : k0+kc] · P^T
//   then Y += bias.
// f32 weights are used in place (P = the block of W, ldp = K): the AVX-512
// kernel broadcasts straight from P's rows, so a copy bought nothing but a
// full pass over W (N = K = 4096, one thread, copy vs in place: ~1.8x the
// time at M = 16, where the weights come from L3 and the copy did not overlap
// the FMAs, ~1.1x at M = 128; AVX2: in place ~1.1-1.3x at M = 16, within
// noise at M = 128). Other formats are decoded once per call by
// dequant_panel into a per-thread scratch panel (rows padded by one cache
// line so that rows 2 KiB apart do not all map to the same L1 sets; not
// measured on its own) reused by every row of X. K blocks never straddle a
// quantization group: kc is a whole number of groups, or, when one group is
// longer than the target kc, a group is cut into chunks that are decoded one
// row at a time through a one-row view of W (a view with K' = G' = chunk
// length is a valid per-channel WeightView). On the amx table, int8 and
// int4 panels run on split-bf16 AMX tiles (Kernels::gemm_panel_dq) against
// X split once per call for all tasks (dq_split_x).
#include "gemm_ops.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../dispatch.h"
#include "../threadpool.h"
#include "op_util.h"

namespace qk {

using ops::min_sz;
using ops::record_bad;

namespace {

size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

// 64-byte aligned per-thread scratch, one buffer per Slot, grown on demand
// and never shrunk.
template <int Slot>
void* thread_scratch(size_t bytes) {
    struct alignas(64) Line {
        unsigned char b[64];
    };
    thread_local std::vector<Line> buf;
    const size_t need = (bytes + 63) / 64;
    if (buf.size() < need) buf.resize(need);
    return buf.data();
}

// The panel of a task (a few hundred KB at most with the default blocking).
float* panel_scratch(size_t floats) { return static_cast<float*>(thread_scratch<0>(floats * sizeof(float))); }

// X split for the split-bf16 panels (SplitX: 4 bytes per value of X, as X
// itself), on the calling thread, read by every task of one call.
void* split_x_scratch(size_t bytes) { return thread_scratch<1>(bytes); }

void set_bias_only(const GemmArgs& a) {
    for (size_t m = 0; m < a.M; ++m) {
        float* y = a.y + m * a.ldy;
        for (size_t n = 0; n < a.N; ++n) y[n] = a.bias ? a.bias[n] : 0.0f;
    }
}

bool is_quantized(WFormat f) { return f == WFormat::i8 || f == WFormat::i4; }

// Decode W[n0 : n0 + nr, k0 : k0 + kc] into p (row stride ldp) when the
// block lies inside one quantization group per row but is shorter than it
// (chunked mode): one call per row through a one-row per-channel view.
void dequant_chunk(const Kernels& kern, const GemmArgs& a, size_t n0, size_t nr, size_t k0,
                   size_t kc, float* p, size_t ldp) {
    const WeightView& w = a.w;
    const size_t G = w.group;
    const size_t gpr = scale_stride(w, a.K);
    const size_t g = k0 / G;
    for (size_t j = 0; j < nr; ++j) {
        const size_t n = n0 + j;
        const uint8_t* row = static_cast<const uint8_t*>(w.data) + n * w.row_bytes;
        WeightView v;
        v.fmt = w.fmt;
        v.group = kc;
        v.scales = w.scales + n * gpr + g;
        // zps are one byte each in both formats (int8 / uint8).
        v.zps = w.zps ? static_cast<const void*>(static_cast<const uint8_t*>(w.zps) + n * gpr + g)
                      : nullptr;
        if (w.fmt == WFormat::i8) {
            v.data = row + k0;
            v.row_bytes = kc;
        } else {  // i4: k0 and kc are even here
            v.data = row + k0 / 2;
            v.row_bytes = kc / 2;
        }
        kern.dequant_panel(v, 0, 1, 0, kc, p + j * ldp, ldp);
    }
}

// Rows [n0, n0 + nr) of a weight view with f16 scales (w.scales16), as the
// panel kernels of one task see them: rebased to row 0, their scales
// widened to f32 into `widened` ([nr, gs] floats, gs the row stride of w's
// scales and zero points). A view over K columns reads ceil(K / w.group)
// groups per row (all gs of them, or fewer for the parts of a weight with a
// shorter last group): only those are read and widened, one run per row then.
WeightView widen_rows(const Kernels& k, const WeightView& w, size_t K, size_t n0, size_t nr, size_t gs,
                      std::vector<float>& widened) {
    const size_t used = std::min(gs, (K + w.group - 1) / w.group);
    ops::grow(widened, nr * gs);
    if (used == gs) {
        k.f16_to_f32(w.scales16 + n0 * gs, widened.data(), nr * gs);
    } else {
        for (size_t j = 0; j < nr; ++j) k.f16_to_f32(w.scales16 + (n0 + j) * gs, widened.data() + j * gs, used);
    }
    return rebase_rows(w, n0, gs, widened.data());
}

// The arguments the panel kernels of one task (rows [n0, n1) of W) run on,
// and in *base the index of row n0 in them. f32 scales: `a` itself
// (absolute rows, base n0). f16 scales: the task's rows rebased to row 0
// (y and bias offset to match) with their scales widened into a per-thread
// block, [n1 - n0, gstride] floats (128 KiB for 256 rows at K = 4096, G =
// 32): dequant_panel only reads f32 scales, and the widening (K / G
// conversions per row) is small next to the panel's M x K work per row.
const GemmArgs& task_args(const Kernels& kern, const GemmArgs& a, size_t n0, size_t n1, GemmArgs& tmp, size_t* base) {
    if (!a.w.scales16) {
        *base = n0;
        return a;
    }
    thread_local std::vector<float> widened;
    tmp = a;
    tmp.w = widen_rows(kern, a.w, a.K, n0, n1 - n0, scale_stride(a.w, a.K), widened);
    tmp.N = n1 - n0;
    tmp.y = a.y + n0;
    tmp.bias = a.bias ? a.bias + n0 : nullptr;
    *base = 0;
    return tmp;
}

void gemm_gemv_path(const Kernels& kern, const GemmArgs& a, const GemmBlocking& b) {
    const size_t nb = b.gemv_nb ? b.gemv_nb : 64;
    const size_t tasks = (a.N + nb - 1) / nb;
    const double flops = 2.0 * double(a.M) * double(a.N) * double(a.K);
    parallel_for(tasks, flops, [&](size_t t, size_t) {
        const size_t n0 = t * nb;
        const size_t n1 = min_sz(a.N, n0 + nb);
        // (every gemv kernel reads f16 scales itself)
        // up to 8 rows of X a call: the AVX-512 f32 tiles take 8 at once
        // (the weight block read once per 8 rows); the others split them
        for (size_t m0 = 0; m0 < a.M; m0 += 8) kern.gemv(a, m0, min_sz(8, a.M - m0), n0, n1);
    });
}

// Default K block for f32 weights read in place: the kernels keep a
// transposed copy of X[M, kc] (the AVX-512 one does) and re-read it for every
// strip of W rows, so it should stay in L2: M * kc floats <= 512 KiB
// (M = 16: kc = K up to 8192; M = 128: 1024; M = 256: 512). Measured at
// N = K = 4096 (AVX-512, one thread) against kc = 512: M = 16 ~1.5x
// (fewer passes over Y and fewer tile epilogues), M = 128 ~1.1x; kc = K at
// M = 128 (2 MiB of X) was ~0.8x. K is then cut into equal blocks.
size_t f32_auto_kc(size_t M, size_t K) {
    const size_t rows = round_up(M, 16);
    size_t kc = (size_t(512) * 1024 / 4) / rows;
    if (kc < 256) kc = 256;
    const size_t blocks = (K + kc - 1) / kc;
    return round_up((K + blocks - 1) / blocks, 16);
}

void gemm_panel_path(const Kernels& kern, const GemmArgs& a, const GemmBlocking& b) {
    const WeightView& w = a.w;
    const size_t K = a.K;
    const size_t nb = b.nb ? b.nb : 256;
    const size_t mb = b.mb ? b.mb : a.M;
    const bool in_place = w.fmt == WFormat::f32;
    // row-invariant: the K blocks (hence each row's sums) must not depend on
    // M, so f32 takes the blocking it would at 128 rows (a prompt chunk)
    const size_t kc_rows = a.row_invariant ? size_t(128) : min_sz(a.M, mb);
    size_t kc_target = b.kc ? b.kc : (in_place ? f32_auto_kc(kc_rows, K) : 512);
    kc_target = round_up(kc_target, 2);  // i4 chunks must start on a byte

    // K blocking. Uniform blocks of kc (a whole number of groups), except in
    // chunked mode (G > kc_target) where each group is cut into chunks of
    // kc_target and a shorter last chunk.
    const bool quant = is_quantized(w.fmt);
    const size_t G = quant ? w.group : 0;
    const bool chunked = quant && G > kc_target;
    size_t kc = kc_target;
    if (quant && !chunked) kc = (kc_target / G) * G;
    if (kc > K) kc = K;
    // 64-byte aligned scratch rows plus one line (see the top of the file).
    const size_t ldp = round_up(kc, 16) + 16;

    const size_t n_tasks = (a.N + nb - 1) / nb;
    // few blocks of W (N = 256..768 at 256 per task): split M too, see ops::m_split_rows
    size_t m_rows = ops::m_split_rows(a.M, n_tasks, threads());

    // int8 / int4 weights on a table with split-bf16 panels (amx; f16 and
    // bf16 weights keep f32 products, as float models): X is split
    // once here for every task, in tiles of 16 rows by 32 values of k, so
    // every block of M must start on a tile row and every K block on a line
    // (true for the default blocking with any group size that is a multiple
    // of 32, and for any K up to one block).
    SplitX xs;
    const bool m_aligned = (mb % 16 == 0 || mb >= a.M) && (m_rows % 16 == 0 || m_rows >= a.M);
    const bool k_aligned = kc >= K || (kc % 32 == 0 && (!chunked || G % 32 == 0));
    const bool dq = quant && kern.gemm_panel_dq && m_aligned && k_aligned;
    // symmetric int8, one scale per row: the codes go to the tiles as they are
    const bool dq_codes = dq && w.fmt == WFormat::i8 && !w.zps && scale_stride(w, K) == 1;
    // int4 (G a multiple of 32 here): decoded straight into the split tiles
    const bool dq_i4 = dq && w.fmt == WFormat::i4 && G % 32 == 0;
    // Those two decode the weight codes inside the tile kernel, so every M
    // part decodes all of its block of W again: one part per thread, not
    // three (two threads, M = 128, 256 x 768: int8 0.108-0.118 -> 0.084-0.087
    // ms, int4 g32 0.168 -> 0.127; 768 x 768 level; one thread unchanged;
    // the parts are still whole multiples of 16 rows)
    if (dq_codes || dq_i4) m_rows = ops::m_split_rows(a.M, n_tasks, threads(), 1);
    const size_t m_tasks = (a.M + m_rows - 1) / m_rows;
    if (dq) {
        xs.M = a.M;
        xs.K = K;
        xs.data = split_x_scratch(xs.bytes());
        // on the pool, 2 blocks of 16 rows per task: on the calling thread
        // alone it had held two-thread prefill to 1.3-1.4x one thread
        const size_t blocks = xs.rows() / 16, per = 2;
        parallel_for((blocks + per - 1) / per, 16.0 * double(a.M) * double(K), [&](size_t t, size_t) {
            kern.dq_split_x(a.x, a.ldx, a.M, K, xs, t * per, t * per + per);
        });
    }
    const double flops = 2.0 * double(a.M) * double(a.N) * double(K);
    parallel_for(n_tasks * m_tasks, flops, [&](size_t task, size_t) {
        const size_t t = task % n_tasks, m_lo = task / n_tasks * m_rows, m_hi = min_sz(a.M, m_lo + m_rows);
        const size_t nr = min_sz(a.N, t * nb + nb) - t * nb;
        GemmArgs tmp;
        size_t n0;  // row t * nb of W, in the task's view of it
        const GemmArgs& ta = task_args(kern, a, t * nb, t * nb + nr, tmp, &n0);
        float* scratch = in_place || dq_codes || dq_i4 ? nullptr : panel_scratch(nb * ldp);
        size_t k0 = 0;
        while (k0 < K) {
            size_t kl;
            if (chunked) {
                const size_t group_end = (k0 / G + 1) * G;
                kl = min_sz(kc, group_end - k0);
            } else {
                kl = min_sz(kc, K - k0);
            }
            if (dq_codes || dq_i4) {
                for (size_t m0 = m_lo; m0 < m_hi; m0 += mb) {
                    const size_t mc = min_sz(mb, m_hi - m0);
                    float* y = ta.y + m0 * a.ldy + n0;
                    if (dq_codes) kern.gemm_panel_dq_i8(xs, m0, mc, k0, ta.w, n0, nr, kl, y, a.ldy, k0 != 0);
                    else kern.gemm_panel_dq_i4(xs, m0, mc, k0, ta.w, scale_stride(w, K), n0, nr, kl, y, a.ldy, k0 != 0);
                }
                k0 += kl;
                continue;
            }
            const float* p = scratch;
            size_t lp = ldp;
            if (in_place) {
                lp = w.row_bytes / sizeof(float);
                p = static_cast<const float*>(ta.w.data) + n0 * lp + k0;
            } else if (chunked) {
                dequant_chunk(kern, ta, n0, nr, k0, kl, scratch, ldp);
            } else {
                kern.dequant_panel(ta.w, n0, nr, k0, kl, scratch, ldp);
            }
            for (size_t m0 = m_lo; m0 < m_hi; m0 += mb) {
                const size_t mc = min_sz(mb, m_hi - m0);
                float* y = ta.y + m0 * a.ldy + n0;
                if (dq) kern.gemm_panel_dq(xs, m0, mc, k0, p, lp, nr, kl, y, a.ldy, k0 != 0);
                else kern.gemm_panel_f32(a.x + m0 * a.ldx + k0, a.ldx, mc, p, lp, nr, kl, y, a.ldy, k0 != 0);
            }
            k0 += kl;
        }
        if (ta.bias) {
            for (size_t m = m_lo; m < m_hi; ++m) {
                float* y = ta.y + m * a.ldy + n0;
                for (size_t j = 0; j < nr; ++j) y[j] += ta.bias[n0 + j];
            }
        }
    });
}

}  // namespace

GemmBlocking default_gemm_blocking(WFormat fmt) {
    GemmBlocking b;
    // Crossover of the two paths measured at N = K = 4096 (AVX-512, one
    // thread): gemv re-reads the (L2-resident) weight block once per 4 rows
    // of X and decodes it each time; the panel path decodes once but pays a
    // full panel pass. int4 decode is the most expensive; int8 gemv
    // (group-accumulated) stays ahead up to M = 16; f16/bf16 gemv up to 8
    // (the panel path, conversion pass included, takes ~2x gemv's time at
    // M = 8). f32 weights
    // are read in place by the panel path (no panel pass, W read once for
    // any M), ahead of gemv from M = 5: M = 6 ~1.15x, M = 8 ~1.2x, M = 4 ~0.7x.
    // int4 and int8: the table's own crossover in the overload below (the
    // values here are the AVX-512 f32 panel's).
    switch (fmt) {
        case WFormat::i4: b.gemv_max_m = 4; break;
        case WFormat::i8: b.gemv_max_m = 16; break;
        case WFormat::f32: b.gemv_max_m = 4; break;
        default: b.gemv_max_m = 8; break;
    }
    b.gemv_nb = 64;
    // 256 rows of W per task: the AVX-512 kernel transposes X[M, kc] once per
    // task and K block, so wider tasks amortize it (measured vs nb = 64,
    // N = K = 4096, M = 128, one thread: int8 and int4 ~1.15x, f32 ~1.2x;
    // the scratch panel of the decoded formats is then 256 x 528 floats,
    // ~0.5 MiB, L2 resident). The results do not depend on nb.
    b.nb = 256;
    // K block: f32 weights (read in place) 0 = from M (f32_auto_kc), the
    // decoded formats 512 (whole groups).
    b.kc = fmt == WFormat::f32 ? 0 : 512;
    b.mb = 256;
    return b;
}

GemmBlocking default_gemm_blocking(const Kernels& k, WFormat fmt) {
    GemmBlocking b = default_gemm_blocking(fmt);
    if (fmt == WFormat::i4) b.gemv_max_m = k.gemv_max_m_i4;
    if (fmt == WFormat::i8) b.gemv_max_m = k.gemv_max_m_i8;
    return b;
}

namespace {

// A quantized weight whose last group is shorter (K % G != 0, scales
// [N, ceil(K / G)]): two products over the same rows of W, the K1 columns
// of whole groups and the K2 = K - K1 columns of the last group (one group
// of G' = K2, a view starting at column K1 of every row), then
// Y = Y1 + (Y2 + bias). Every kernel sees groups that divide its K.
void gemm_tail(const Kernels& kern, const GemmArgs& a, const GemmBlocking* blocking) {
    size_t K1;
    GemmArgs tail = a;
    tail.w = last_group_view(a.w, a.K, &K1);
    tail.K = a.K - K1;
    tail.x = a.x + K1;
    if (K1 == 0) {  // K < G: the whole row is one (short) group
        gemm(kern, tail, blocking);
        return;
    }
    GemmArgs main = a;
    main.K = K1;
    main.w.gstride = tail.w.gstride;
    main.bias = nullptr;
    gemm(kern, main, blocking);
    thread_local std::vector<float> y2;
    ops::grow(y2, a.M * a.N);
    tail.y = y2.data();
    tail.ldy = a.N;
    gemm(kern, tail, blocking);
    for (size_t m = 0; m < a.M; ++m) {
        float* y = a.y + m * a.ldy;
        const float* t = y2.data() + m * a.N;
        for (size_t n = 0; n < a.N; ++n) y[n] += t[n];
    }
}

// Symmetric per-channel int8 weights on a table with exact-digit tiles
// (amx, the only one): see Kernels::gemm_i8x. Row-invariant calls take it
// at every M (its rows do not depend on M). Other calls take it for
// kI8xMinM <= M <= kI8xMaxM. One thread, Sapphire Rapids-class Xeon, GFLOP/s
// of an int8 per-channel QLinear forward over 768 x 768, 2048 x 768,
// 768 x 2048, 4096 x 4096 and 32000 x 768 (one session, load 0.4-0.9),
// digits / the previous path (gemv to M = 7, then split-bf16 panels):
//   M = 1    34-81 / 42-55  (W streamed: gemv stays)
//   M = 4    125-243 / 95-113
//   M = 8    206-420 / 102-142
//   M = 16   293-450 / 185-256
//   M = 32   321-408 / 264-304
//   M = 128  333-441 / 406-453  (the panels' bf16 products win here)
constexpr size_t kI8xMinM = 2;
constexpr size_t kI8xMaxM = 32;
bool i8x_applies(const Kernels& kern, const GemmArgs& a) {
    return kern.gemm_i8x && a.w.fmt == WFormat::i8 && !a.w.zps && a.w.group == a.K && scale_stride(a.w, a.K) == 1 &&
           a.K <= kI8xMaxK;
}

// X split once into digits (DigitX) for every task; tasks of 64 weight
// rows; a row of X holding inf or NaN (no digits) then runs gemv alone,
// row-invariant, so its result does not depend on M either.
void gemm_i8x_path(const Kernels& kern, const GemmArgs& a) {
    DigitX dx;
    dx.M = a.M;
    dx.K = a.K;
    dx.data = thread_scratch<2>(dx.bytes());
    thread_local std::vector<int32_t> exps;
    thread_local std::vector<uint8_t> bad;
    ops::grow(exps, a.M);
    ops::grow(bad, a.M);
    dx.exps = exps.data();
    dx.bad = bad.data();
    // the split in chunks of 8 digit tiles (32 rows of X), each a DigitX
    // view of its own tiles, on the pool
    constexpr size_t kSplitRows = 32;
    const size_t chunks = (a.M + kSplitRows - 1) / kSplitRows;
    parallel_for(chunks, 40.0 * double(a.M) * double(a.K), [&](size_t c, size_t) {
        DigitX part = dx;
        const size_t m0 = c * kSplitRows;
        part.M = min_sz(kSplitRows, a.M - m0);
        part.data = static_cast<int8_t*>(dx.data) + (m0 / 4) * dx.steps() * 1024;
        part.exps = dx.exps + m0;
        part.bad = dx.bad + m0;
        kern.i8x_split(a.x + m0 * a.ldx, a.ldx, part.M, a.K, part);
    });
    // 64 weight rows per task when X is one digit tile (decode: W streamed,
    // more tasks than threads), else 128 (X's digits read once per task).
    // With the split on the pool too, two threads, row-invariant, M = 128:
    // 2048 x 768 655-679 -> 729-741 GFLOP/s, 768 x 2048 444 -> 517 (256 rows
    // per task, split on the calling thread, before); one thread unchanged.
    const size_t nb = a.M <= 4 ? 64 : 128;
    const size_t n_tasks = (a.N + nb - 1) / nb;
    parallel_for(n_tasks, 2.0 * double(a.M) * double(a.N) * double(a.K), [&](size_t t, size_t) {
        kern.gemm_i8x(dx, a.w, t * nb, min_sz(a.N, t * nb + nb), a.bias, a.y, a.ldy);
    });
    for (size_t m = 0; m < a.M; ++m) {
        if (!bad[m]) continue;
        GemmArgs r = a;
        r.x = a.x + m * a.ldx;
        r.y = a.y + m * a.ldy;
        r.M = 1;
        r.row_invariant = true;
        r.invariant_panel = false;
        kern.gemv(r, 0, 1, 0, a.N);
    }
}

}  // namespace

void gemm(const Kernels& kern, const GemmArgs& a, const GemmBlocking* blocking) {
    if (a.M == 0 || a.N == 0) return;
    if (a.K == 0) {
        set_bias_only(a);
        return;
    }
    if (is_quantized(a.w.fmt) && a.K % a.w.group != 0) {
        gemm_tail(kern, a, blocking);
        return;
    }
    if (i8x_applies(kern, a) && (a.row_invariant || (a.M >= kI8xMinM && a.M <= kI8xMaxM))) {
        gemm_i8x_path(kern, a);
        return;
    }
    const GemmBlocking b = blocking ? *blocking : default_gemm_blocking(kern, a.w.fmt);
    // row-invariant: one path for every M (gemv, or the panel path with
    // M-independent K blocks); batched decoding needs a sequence's rows to
    // come out the same whatever else is in the batch
    if (a.row_invariant ? !a.invariant_panel : a.M <= b.gemv_max_m)
        gemm_gemv_path(kern, a, b);
    else
        gemm_panel_path(kern, a, b);
}

void gemm(const GemmArgs& a) { gemm(kernels(), a, nullptr); }

}  // namespace qk
