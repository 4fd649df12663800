// Causal attention over a KV cache (see attention_ops.h).
//
// One task = one kv head g and a tile of query positions; its rows are the
// `group` query heads of g at each position of the tile, handed to
// attn_rows in one call so each block of g's keys/values is read once from
// memory for all of them. Tiles hold about kTileRows rows; the tiles of the
// latest positions (the most keys) are queued first for balance.
#include "attention_ops.h"

#include <algorithm>
#include <vector>

#include "../dispatch.h"
#include "../threadpool.h"
#include "op_util.h"

namespace qk {

namespace {

constexpr size_t kTileRows = 32;

struct Scratch {
    std::vector<const float*> q;
    std::vector<float*> out;
    std::vector<size_t> lim;
    std::vector<float> f;
};

// Query positions per tile of a call.
size_t tile_positions(const AttnArgs& a) {
    const size_t group = a.n_heads / a.n_kv_heads;
    return group >= kTileRows ? 1 : kTileRows / group;
}

size_t tiles_of(const AttnArgs& a) {
    if (a.T == 0 || a.n_heads == 0 || a.head_dim == 0) return 0;
    const size_t tq = tile_positions(a);
    return (a.T + tq - 1) / tq;
}

// Flops of a call: q·k and p·v for every head and visible position.
double flops_of(const AttnArgs& a) {
    return 4.0 * double(a.T) * double(a.n_heads) * double(a.head_dim) *
           double(a.pos0 + (a.causal ? (a.T + 1) / 2 : a.T));
}

// Task `task` of call `a`: kv head task % n_kv_heads, tiles from the last
// (the latest positions, the most keys) first.
void run_task(const Kernels& k, const AttnArgs& a, size_t task) {
    thread_local Scratch s;
    const size_t hd = a.head_dim, group = a.n_heads / a.n_kv_heads;
    const size_t q_dim = a.n_heads * hd, kv_dim = a.n_kv_heads * hd;
    const size_t tq = tile_positions(a), tiles = tiles_of(a);
    const size_t tile = tiles - 1 - task / a.n_kv_heads, g = task % a.n_kv_heads;
    const size_t t0 = tile * tq, t1 = t0 + tq < a.T ? t0 + tq : a.T;
    const size_t rows = (t1 - t0) * group;
    ops::grow(s.q, rows);
    ops::grow(s.out, rows);
    ops::grow(s.lim, rows);
    ops::grow(s.f, attn_scratch_floats(rows, hd));
    size_t r = 0;
    for (size_t t = t0; t < t1; ++t)
        for (size_t h = g * group; h < (g + 1) * group; ++h, ++r) {
            s.q[r] = a.q + t * q_dim + h * hd;
            s.out[r] = a.out + t * q_dim + h * hd;
            s.lim[r] = a.causal ? a.pos0 + t + 1 : a.pos0 + a.T;
        }
    AttnRowsArgs ra{};
    ra.q = s.q.data();
    ra.out = s.out.data();
    ra.lim = s.lim.data();
    ra.rows = rows;
    ra.kt = a.keys + g * hd * kAttnBlock;
    ra.kt_stride = kv_dim * kAttnBlock;
    ra.v = a.values + g * hd;
    ra.ldv = kv_dim;
    ra.hd = hd;
    ra.scale = a.scale;
    ra.scratch = s.f.data();
    k.attn_rows(ra);
}

}  // namespace

void attention(const Kernels& k, const AttnArgs& a) {
    const size_t tiles = tiles_of(a);
    if (tiles == 0) return;
    parallel_for(tiles * a.n_kv_heads, flops_of(a), [&](size_t task, size_t) { run_task(k, a, task); });
}

void attention_batch(const Kernels& k, const AttnArgs* calls, size_t n) {
    // tasks of every call in one pool run: first[i] = index of call i's first task
    std::vector<size_t> first(n + 1, 0);
    double flops = 0;
    for (size_t i = 0; i < n; ++i) {
        first[i + 1] = first[i] + tiles_of(calls[i]) * calls[i].n_kv_heads;
        flops += flops_of(calls[i]);
    }
    if (first[n] == 0) return;
    parallel_for(first[n], flops, [&](size_t task, size_t) {
        const size_t i = size_t(std::upper_bound(first.begin(), first.end(), task) - first.begin()) - 1;
        run_task(k, calls[i], task - first[i]);
    });
}

void attention_batch(const AttnArgs* calls, size_t n) { attention_batch(kernels(), calls, n); }

void attention(const AttnArgs& a) { attention(kernels(), a); }

void attn_cache_write(float* keys, float* values, const float* k, const float* v, size_t pos0, size_t T, size_t kv_dim) {
    std::copy(v, v + T * kv_dim, values + pos0 * kv_dim);
    // Keys are transposed into their blocks: for each run of positions in
    // one block, 16 dimensions at a time, so the 16-float pieces of the
    // source rows stay in L1 while each dimension's run of positions is
    // written contiguously (one position at a time over all dimensions
    // touches kv_dim lines per position: 3-5x slower at T = 128).
    for (size_t t0 = 0; t0 < T;) {
        const size_t p0 = pos0 + t0, off = p0 % kAttnBlock;
        const size_t n = std::min(T - t0, kAttnBlock - off);  // positions in this block
        float* base = keys + (p0 / kAttnBlock) * kv_dim * kAttnBlock + off;
        const float* src = k + t0 * kv_dim;
        // Decode writes one position: one float in each of kv_dim lines,
        // 256 B apart, which the GEMMs since the last step have evicted.
        // Stores that miss drain a few at a time; prefetching every line
        // first lets the misses overlap.
        if (n <= 16)
            for (size_t c = 0; c < kv_dim; ++c) __builtin_prefetch(base + c * kAttnBlock, 1, 3);
        for (size_t c0 = 0; c0 < kv_dim; c0 += 16) {
            const size_t c1 = std::min(kv_dim, c0 + 16);
            for (size_t c = c0; c < c1; ++c) {
                float* dst = base + c * kAttnBlock;
                for (size_t t = 0; t < n; ++t) dst[t] = src[t * kv_dim + c];
            }
        }
        t0 += n;
    }
}

}  // namespace qk
