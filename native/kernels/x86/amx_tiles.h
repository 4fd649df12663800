// Tile set-up shared by the AMX kernel files (included only by files
// compiled with the AMX flags; static inline, so no symbol leaves them).
// Every AMX kernel here uses all 8 tiles as 16 rows x 64 bytes, loads that
// configuration on the calling thread at the start of a call and releases
// the tiles on return, so a thread outside a kernel carries no AMX state.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace qk {
namespace amx {

// GCC's tile intrinsics are asm statements that do not tell the compiler
// which memory they read or write (ldtilecfg names 8 of its 64 bytes,
// tileloadd and tilestored none), so a compiler barrier forces the stores
// that fill a tile configuration or an operand buffer out before them, and
// keeps the loads of a buffer a tile was stored to after the store.
static inline void tile_memory_barrier() { __asm__ volatile("" ::: "memory"); }

// Fetches the line at p for writing (prefetchw). Every CPU with AMX has the
// instruction; the AMX kernels are built without -mprfchw, so it is written
// out rather than left to __builtin_prefetch (which would emit prefetcht0).
static inline void prefetch_for_write(const void* p) { __asm__ volatile("prefetchw %0" ::"m"(*static_cast<const char*>(p))); }

// The 64-byte tile configuration (palette 1).
struct alignas(64) TileConfig {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

// All 8 tiles as 16 rows x 64 bytes.
static inline void configure_tiles() {
    TileConfig c;
    std::memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; ++t) {
        c.colsb[t] = 64;
        c.rows[t] = 16;
    }
    tile_memory_barrier();
    _tile_loadconfig(&c);
}

// Zeroes C tile t (tmm0-3: the accumulators of both kernels).
static inline void zero_c(int t) {
    switch (t) {
        case 0: _tile_zero(0); break;
        case 1: _tile_zero(1); break;
        case 2: _tile_zero(2); break;
        default: _tile_zero(3); break;
    }
}

// Stores C tile t as 16 rows of 64 bytes (16 int32 or f32 each) at c.
static inline void store_c(int t, void* c) {
    switch (t) {
        case 0: _tile_stored(0, c, 64); break;
        case 1: _tile_stored(1, c, 64); break;
        case 2: _tile_stored(2, c, 64); break;
        default: _tile_stored(3, c, 64); break;
    }
}

}  // namespace amx
}  // namespace qk
