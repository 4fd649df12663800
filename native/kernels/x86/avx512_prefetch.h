// Linear L2 prefetch of the next tile's weights, shared by the AVX-512 W4A8
// kernel files (include only from files compiled with AVX-512 flags).
// A tile reads 16 weight rows at once; 16 interleaved streams are followed
// badly by the hardware prefetchers (one row of X through such a tile ran at
// half speed from DRAM), so the tile after it, one contiguous block, is
// prefetched as one stream, a slice per chunk of the tile being read.
#pragma once

#include <immintrin.h>

#include <cstddef>

namespace qk {
namespace avx512 {

// The next tile of a weight buffer: rows [n + 16, n + 32) (fewer at the end
// of the N rows), `stride` bytes apart, as one contiguous block.
struct NextTile {
    const char* p = nullptr;
    size_t bytes = 0;  // 0 at the last tile: nothing to prefetch
    NextTile(const void* data, size_t stride, size_t n, size_t N) {
        if (n + 16 >= N) return;
        p = static_cast<const char*>(data) + (n + 16) * stride;
        bytes = (N - n - 16 < 16 ? N - n - 16 : 16) * stride;
    }
    // Bytes [step c, step (c + 1)) of the block, step a multiple of 64.
    inline void slice(size_t c, size_t step) const {
        for (size_t o = step * c; o < step * (c + 1) && o < bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T1);
    }
};

}  // namespace avx512
}  // namespace qk
