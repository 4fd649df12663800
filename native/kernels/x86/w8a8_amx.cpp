// AMX-INT8 W8A8 GEMM (Kernels::gemm_w8a8 of the amx table), bit-exact with
// qk::ref::gemm_w8a8 (w8a8_ref.cpp, the spec): the int32 sums are exact in
// any order, and the float epilogue is the AVX-512 packed kernel's.
//
// Formulation. tdpbsud multiplies a tile of SIGNED bytes A[16 rows][64 bytes]
// by a tile of UNSIGNED bytes B[16 rows][64 bytes] holding 4-byte groups:
//   C[r][c] += sum_{q < 16, t < 4} A[r][4 q + t] * B[q][4 c + t]   (int32)
// With A = 16 weight rows (the codes read IN PLACE from the row-major
// B[N, K], 64 values of k, row stride ldb) and B = one 16-row block of the
// packed biased activations (W8A8Args::ap: 16 groups of 4 k values, each
// 16 rows x 4 bytes, i.e. exactly this operand; 1 KiB per 64 values of k),
// C[n][m] is the biased sum of weight row n and activation row m: the
// packed kernel's accumulator layout (lanes over rows of X, one vector per
// weight row), so its epilogue (w8a8_packed_epilogue) finishes the tile.
// Neither operand is copied, except the K % 64 tail (a zero-padded 16 x 64
// copy of each), a group of weight rows that is not on 64-byte lines (see
// gemm_w8a8), and weight rows past a multiple of 16 (the AVX-512 kernel
// takes those columns).
//
// Tiles (8 registers of 16 x 64 bytes, configured once per call): C in
// tmm0-3, weights in tmm4-5, activations in tmm6-7. Two or more 16-row
// blocks of X: 2 x 2 tiles (per 64 values of k, 2 weight tiles and 2
// activation tiles feed 4 products); one block (batched decode, short
// prompts): 1 x 4 (4 weight tiles, 1 activation tile). Loop order per call
// ([n0, n1) = one task of the driver): for each group of 32 (or 64) weight
// rows, every activation block, so the weight rows stay in L2 for all of X.
//
// Linux hands out AMX state only after arch_prctl(ARCH_REQ_XCOMP_PERM)
// (dispatch.cpp asks once at start-up; without it this table is never
// selected). Each call loads its tile configuration on the calling thread
// and releases the tiles on return, so a thread that is not in a kernel
// carries no AMX state.
#if defined(__x86_64__) || defined(_M_X64)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "w8a8_amx.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "../isa.h"
#include "amx_tiles.h"
#include "w8a8_avx512_packed.h"

namespace qk {
namespace amx {

namespace {

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

// Blocks of 16 rows of X from which a misaligned weight group is copied
// onto lines and the next group prefetched (see gemm_w8a8).
constexpr size_t kCopyMinBlocks = 5;

// One operand of a 64-value step of k: a base pointer and its row stride.
struct Src {
    const void* p;
    size_t ld;
};

// The K % 64 tail of a group of weight rows or of an activation block,
// zero-padded to a full tile (zero codes add nothing; the bias compensation
// covers the real K only).
struct Tails {
    alignas(64) int8_t w[4][16 * 64];
    alignas(64) uint8_t x[2][16 * 64];
};

// Weight rows [n, n + 16 * nb) at k = Kf: the last kt bytes of each row.
void tail_weights(const W8A8Args& p, size_t n, int nb, size_t Kf, size_t kt, Tails& t) {
    for (int j = 0; j < nb; ++j) {
        std::memset(t.w[j], 0, sizeof t.w[j]);
        for (size_t r = 0; r < 16; ++r) std::memcpy(t.w[j] + 64 * r, p.b + (n + 16 * j + r) * p.ldb + Kf, kt);
    }
}

// Activation block `blk` from k = Kf: its remaining ceil(kt / 4) groups.
void tail_x(const W8A8Args& p, size_t blk, size_t Kf, size_t Kq, uint8_t* out) {
    std::memset(out, 0, 16 * 64);
    std::memcpy(out, p.ap + blk * 64 * Kq + 16 * Kf, 64 * (Kq - Kf / 4));
}

// Linear software prefetch (into L2) of the next group's weight rows, one
// contiguous block of the row-major W, a few lines per step of k, so that
// its copy or its tile loads find it in L2 (cold weights, 128 x 2048 x 768,
// one thread: 600-660 -> 480-560 us a call).
struct Prefetch {
    const char* p;
    const char* end;
    size_t lines;  // per step
    inline void step() {
        for (size_t i = 0; i < lines && p < end; ++i, p += 64) _mm_prefetch(p, _MM_HINT_T1);
    }
};

// The output lines a tile's epilogue will write (rows [m0, m0 + rows) of Y,
// or of C in raw mode, `lines` 64-byte lines from column n), fetched for
// writing (prefetch_for_write) a few rows per step of k
// while the tiles run, so the epilogue's stores find them in cache, owned.
// Measured (128 x 2048 x 768, one thread, Y not in cache): 500-586 ->
// 427-487 us a call.
struct OutputPrefetch {
    const char* y;
    size_t stride, rows, lines, r = 0;
    OutputPrefetch(const W8A8Args& p, size_t m0, size_t mrows, size_t n, size_t nlines)
        : y(reinterpret_cast<const char*>(p.c ? static_cast<const void*>(p.c + m0 * p.ldc + n)
                                              : static_cast<const void*>(p.y + m0 * p.ldy + n))),
          stride(4 * (p.c ? p.ldc : p.ldy)),
          rows(min_sz(mrows, p.M - m0)),
          lines(nlines) {}
    inline void step() {
        for (int i = 0; i < 3 && r < rows; ++i, ++r)
            for (size_t l = 0; l < lines; ++l) prefetch_for_write(y + r * stride + 64 * l);
    }
};

// C[v][j] (tmm 2v + j) += A_j (tmm 4 + j) * B_v (tmm 6 + v): 2 blocks of X
// against 2 groups of 16 weight rows.
inline void step_2x2(Src w0, Src w1, Src x0, Src x1) {
    _tile_loadd(4, w0.p, w0.ld);
    _tile_loadd(6, x0.p, x0.ld);
    _tile_dpbsud(0, 4, 6);
    _tile_loadd(5, w1.p, w1.ld);
    _tile_dpbsud(1, 5, 6);
    _tile_loadd(7, x1.p, x1.ld);
    _tile_dpbsud(2, 4, 7);
    _tile_dpbsud(3, 5, 7);
}

// One block of X against NB <= 4 groups of 16 weight rows: C[j] (tmm j) +=
// A_j * B (tmm 6); the weight tiles alternate between tmm4 and tmm5.
template <int NB>
inline void step_1xn(const Src* w, Src x) {
    _tile_loadd(6, x.p, x.ld);
    _tile_loadd(4, w[0].p, w[0].ld);
    _tile_dpbsud(0, 4, 6);
    if constexpr (NB > 1) {
        _tile_loadd(5, w[1].p, w[1].ld);
        _tile_dpbsud(1, 5, 6);
    }
    if constexpr (NB > 2) {
        _tile_loadd(4, w[2].p, w[2].ld);
        _tile_dpbsud(2, 4, 6);
    }
    if constexpr (NB > 3) {
        _tile_loadd(5, w[3].p, w[3].ld);
        _tile_dpbsud(3, 5, 6);
    }
}

// The first Kf bytes of the weight rows of one group: W in place (p.b + n
// ldb, stride ldb), or its copy on 64-byte lines (see gemm_w8a8).
struct Group {
    const int8_t* w;
    size_t ld;
};

// The epilogues of the last 2 x 2 tiles, deferred into the next tile's
// steps of k. An epilogue (rescale, 16 x 16 transpose, 16 row stores) right
// after its tile store first waits for that store (AMX stores do not
// forward to vector loads), and with ~200 vector uops it fills the reorder
// window, so the next tile's products do not start until it is nearly
// done. Run a few steps later, between the next tile's loads and products,
// it reads stores long completed and executes beside the tile unit. Each
// output's arithmetic is the same; only the order of the stores changes.
// Measured (one thread, Sapphire Rapids-class, interleaved runs): the W8A8
// prompt of the synthetic 12-layer model (128 tokens) 39.8-42.6 -> 36.3-39.3
// ms (two sessions of runs); QLinear 2048 x 768, cold weights, M = 32 / 64 137-139 / 207-222 ->
// 119-120 / 187-189 us, 4096 x 4096 M = 128 2395-2674 -> 2388-2470 us.
struct Pending {
    alignas(64) int32_t acc[4][16 * 16];
    size_t m0[4], rows[4], n[4];
    int count = 0, done = 0;
    inline void run_one(const W8A8Args& p) {
        avx512::w8a8_packed_epilogue(p, m0[done], rows[done], n[done], 16, acc[done], 1);
        ++done;
    }
    inline void flush(const W8A8Args& p) {
        while (done < count) run_one(p);
        count = done = 0;
    }
};

// Activation blocks b and b + 1 (rows [16 b, min(M, 16 b + 32))) x weight
// rows [n, n + 32); its epilogues go to `pe` (run during the next tile, or
// by pe.flush), and the previous tile's pending ones run during this one.
void tile_2x2(const W8A8Args& p, size_t b, size_t n, Group g, Tails& t, size_t Kf, size_t kt, Prefetch& pf, Pending& pe) {
    const size_t Kq = (p.K + 3) / 4, bstride = 64 * Kq;
    const uint8_t* x0 = p.ap + b * bstride;
    const uint8_t* x1 = x0 + bstride;
    const int8_t* w0 = g.w;
    const int8_t* w1 = w0 + 16 * g.ld;
    for (int c = 0; c < 4; ++c) zero_c(c);
    OutputPrefetch yp(p, 16 * b, 32, n, 2);
    // the pending epilogues one every `every` steps of k, from step 1 (the
    // stores of step 0's tiles then have a step's time to complete)
    const size_t ksteps = Kf / 64, every = ksteps > size_t(pe.count) ? ksteps / size_t(pe.count + 1) : 1;
    size_t s = 0;
    for (size_t k = 0; k < Kf; k += 64, ++s) {
        pf.step();
        yp.step();
        step_2x2({w0 + k, g.ld}, {w1 + k, g.ld}, {x0 + 16 * k, 64}, {x1 + 16 * k, 64});
        if (pe.done < pe.count && s + 1 >= every * size_t(pe.done + 1)) pe.run_one(p);
    }
    if (kt) {
        tail_x(p, b, Kf, Kq, t.x[0]);
        tail_x(p, b + 1, Kf, Kq, t.x[1]);
        tile_memory_barrier();
        step_2x2({t.w[0], 64}, {t.w[1], 64}, {t.x[0], 64}, {t.x[1], 64});
    }
    pe.flush(p);
    for (int v = 0; v < 2; ++v) {
        const size_t m0 = 16 * (b + v);
        if (m0 >= p.M) break;
        for (int j = 0; j < 2; ++j) {
            const int i = pe.count++;
            store_c(2 * v + j, pe.acc[i]);
            pe.m0[i] = m0;
            pe.rows[i] = min_sz(16, p.M - m0);
            pe.n[i] = n + 16 * size_t(j);
        }
    }
    tile_memory_barrier();  // the sums' loads (later) stay after these stores
}

// Activation block b x weight rows [n, n + 16 NB). Its epilogues run at
// once: deferred as tile_2x2's, they measured no faster here (one block
// of X, 4096 x 4096 at M = 8 and 16, cold weights).
template <int NB>
void tile_1xn(const W8A8Args& p, size_t b, size_t n, Group g, Tails& t, size_t Kf, size_t kt, Prefetch& pf) {
    const size_t Kq = (p.K + 3) / 4;
    const uint8_t* x = p.ap + b * 64 * Kq;
    Src w[NB];
    for (int j = 0; j < NB; ++j) w[j] = {g.w + 16 * size_t(j) * g.ld, g.ld};
    for (int j = 0; j < NB; ++j) zero_c(j);
    OutputPrefetch yp(p, 16 * b, 16, n, NB);
    for (size_t k = 0; k < Kf; k += 64) {
        pf.step();
        yp.step();
        Src wk[NB];
        for (int j = 0; j < NB; ++j) wk[j] = {static_cast<const int8_t*>(w[j].p) + k, g.ld};
        step_1xn<NB>(wk, {x + 16 * k, 64});
    }
    if (kt) {
        tail_x(p, b, Kf, Kq, t.x[0]);
        tile_memory_barrier();
        Src wt[NB];
        for (int j = 0; j < NB; ++j) wt[j] = {t.w[j], 64};
        step_1xn<NB>(wt, {t.x[0], 64});
    }
    alignas(64) int32_t acc[16 * 16];
    const size_t m0 = 16 * b;
    for (int j = 0; j < NB; ++j) {
        store_c(j, acc);
        avx512::w8a8_packed_epilogue(p, m0, min_sz(16, p.M - m0), n + 16 * size_t(j), 16, acc, 1);
    }
}

using Tile1Fn = void (*)(const W8A8Args&, size_t, size_t, Group, Tails&, size_t, size_t, Prefetch&);
const Tile1Fn kTile1[4] = {tile_1xn<1>, tile_1xn<2>, tile_1xn<3>, tile_1xn<4>};

}  // namespace

void gemm_w8a8(const W8A8Args& p, size_t n0, size_t n1) {
    if (p.M == 0 || n0 >= n1) return;
    if (!p.ap || p.M < kW8A8MinM) return avx512::gemm_w8a8(p, n0, n1);
    // Whole groups of 16 weight rows here; the rest (< 16 columns) on AVX-512.
    const size_t n_full = n0 + (n1 - n0) / 16 * 16;
    if (n_full > n0) {
        const size_t blocks = (p.M + 15) / 16;
        const size_t Kf = p.K / 64 * 64, kt = p.K - Kf;
        // Tails are per call: 6 KiB, off the stack of pool threads.
        thread_local Tails t;
        // Groups of 32 weight rows for 2 x 2 tiles (an odd last activation
        // block takes 1 x 2), or of 64 for 1 x 4 when X is one block.
        const size_t group = blocks >= 2 ? 32 : 64;
        // A tile row of W that is not on a 64-byte line touches two, and
        // the tile loads then bound the loop: 128 x 2048 x 768 ran 1.3x
        // slower with W 16 bytes off a line (as a plain heap array, or one
        // mapped from a checkpoint, can be) than on lines; quantize() puts
        // its arrays on lines (lib/ops/huge-pages.ts), so the copy below is
        // for the others. From kCopyMinBlocks blocks of X each group is
        // read often enough that it is first copied onto lines (a 24 KiB
        // sequential read of 32 rows at K = 768: the read the tiles would
        // make anyway, in an order the prefetchers follow), and the next
        // group is prefetched meanwhile. With fewer blocks the copy and the
        // prefetch stream cost more than they save (cold weights, one
        // thread, us, with / without both: 2048 x 768 M = 32 183 / 165,
        // M = 64 270 / 227, M = 128 392 / 478; 4096 x 4096 M = 16 (one
        // block) 1460-1530 / 1060-1160 (prefetch alone), M = 32 2057 /
        // 1559, M = 80 2961 / 2952, M = 128 3535 / 3794).
        thread_local std::vector<int8_t> wcopy;
        const bool copy = blocks >= kCopyMinBlocks && Kf > 0 && ((reinterpret_cast<uintptr_t>(p.b) | p.ldb) & 63) != 0;
        int8_t* wc = nullptr;
        if (copy) {
            wcopy.resize(group * Kf + 63);
            wc = wcopy.data() + (-reinterpret_cast<uintptr_t>(wcopy.data()) & 63);
        }
        thread_local Pending pe;  // 4 KiB of tile sums: off the stack of pool threads
        pe.count = pe.done = 0;
        configure_tiles();
        for (size_t n = n0; n < n_full; n += group) {
            const int nb = int(min_sz(group, n_full - n) / 16);
            if (kt) tail_weights(p, n, nb, Kf, kt, t);
            Group g{p.b + n * p.ldb, p.ldb};
            if (copy) {
                for (size_t r = 0; r < 16 * size_t(nb); ++r) std::memcpy(wc + r * Kf, g.w + r * p.ldb, Kf);
                g = {wc, Kf};
                tile_memory_barrier();
            }
            // The next group (in the next task too: tasks go up n on one
            // thread), spread over this group's steps of k, from
            // kCopyMinBlocks blocks of X (see above).
            const size_t steps = (nb == 2 ? (blocks + 1) / 2 : blocks) * (Kf / 64);
            const size_t next = blocks >= kCopyMinBlocks && n + group < p.N ? min_sz(group, p.N - n - group) : 0;
            const char* pf0 = next ? reinterpret_cast<const char*>(p.b + (n + group) * p.ldb) : nullptr;
            Prefetch pf{pf0, pf0 + next * p.ldb, steps ? (next * p.ldb / 64 + steps - 1) / steps : 0};
            size_t b = 0;
            if (nb == 2)
                for (; b + 2 <= blocks; b += 2) tile_2x2(p, b, n, g, t, Kf, kt, pf, pe);
            for (; b < blocks; ++b) kTile1[nb - 1](p, b, n, g, t, Kf, kt, pf);
        }
        pe.flush(p);
        _tile_release();
    }
    if (n_full < n1) avx512::gemm_w8a8(p, n_full, n1);
}

}  // namespace amx
}  // namespace qk

#endif  // x86-64
