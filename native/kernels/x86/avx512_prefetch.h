// Linear L2 prefetch of a later tile's weights, shared by the AVX-512 W4A8
// kernel files (include only from files compiled with AVX-512 flags).
// A tile reads 16 weight rows at once; 16 interleaved streams are followed
// badly by the hardware prefetchers (one row of X through such a tile ran at
// half speed from DRAM), so a tile ahead of it (the next one, or further for
// short rows: prefetch_ahead), one contiguous block, is prefetched as one
// stream, a slice per chunk of the tile being read.
#pragma once

#include <immintrin.h>

#include <cstddef>

namespace qk {
namespace avx512 {

// A tile of a weight buffer ahead of the one being read: rows [n + ahead,
// n + ahead + 16) (fewer at the end of the N rows), `stride` bytes apart,
// as one contiguous block. ahead = 16 is the next tile.
struct NextTile {
    const char* p = nullptr;
    size_t bytes = 0;  // 0 past the last tile: nothing to prefetch
    NextTile(const void* data, size_t stride, size_t n, size_t N, size_t ahead = 16) {
        if (n + ahead >= N) return;
        p = static_cast<const char*>(data) + (n + ahead) * stride;
        bytes = (N - n - ahead < 16 ? N - n - ahead : 16) * stride;
    }
    // Bytes [step c, step (c + 1)) of the block, step a multiple of 64.
    inline void slice(size_t c, size_t step) const {
        for (size_t o = step * c; o < step * (c + 1) && o < bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T1);
    }
};

// Several contiguous blocks (a later tile's codes, scales, zero points)
// prefetched into L2 a few lines at a time over `steps` calls of step(),
// spread over a tile's compute instead of issued in one burst: a burst of
// more lines than the core has misses outstanding stalls on the prefetch
// instructions themselves (in the W4A8 rows kernel, the 96-line burst per
// tile took about half of its panel fill's time at M = 16).
struct SpreadAhead {
    static constexpr int kBlocks = 3;
    const char* p[kBlocks] = {};
    size_t lines[kBlocks] = {};
    size_t per = 0, block = 0, cur = 0;
    // Adds the next tile's block of a buffer of rows `stride` bytes apart
    // (NextTile's: rows [n + 16, n + 32)); nothing past the last tile.
    void add(const void* data, size_t stride, size_t n, size_t N) {
        const NextTile t(data, stride, n, N);
        for (int b = 0; b < kBlocks; ++b)
            if (lines[b] == 0) {
                p[b] = t.p;
                lines[b] = (t.bytes + 63) / 64;
                return;
            }
    }
    // Spread what was added over `steps` calls of step().
    void spread(size_t steps) {
        size_t total = 0;
        for (int b = 0; b < kBlocks; ++b) total += lines[b];
        per = steps == 0 ? total : (total + steps - 1) / steps;
    }
    inline void step() {
        for (size_t k = 0; k < per; ++k) {
            while (block < kBlocks && cur >= lines[block]) {  // past an empty or finished block
                ++block;
                cur = 0;
            }
            if (block == kBlocks) return;
            _mm_prefetch(p[block] + 64 * cur++, _MM_HINT_T1);
        }
    }
};

// How many rows ahead a one-row-of-X (memory-bound) kernel prefetches 16-row
// tiles of rows of `row_bytes` code bytes: about 18 KiB ahead, in whole
// tiles, at least the next one. Short rows make short tiles, which the next
// tile alone does not cover for DRAM's latency: the W4A8 GEMVs of a
// d768 model (6 KiB tiles) ran ~5 % faster 3 tiles ahead than 1 (1 to 4
// tiles measured; AMD EPYC Zen 4, one thread, cold weights), while with 2 KiB rows
// (K = 4096: 32 KiB tiles) 2 and 3 tiles ahead ran 20-30 % slower than 1.
inline size_t prefetch_ahead(size_t row_bytes) {
    const size_t tile = 16 * row_bytes;
    const size_t tiles = tile == 0 ? 0 : (size_t(18) * 1024 + tile / 2) / tile;
    return 16 * (tiles > 1 ? tiles : 1);
}

}  // namespace avx512
}  // namespace qk
