// AVX2 W4A8 kernel over the stored row layout (Kernels::gemm_w4a8; the
// spec is ref/w4a8_ref.cpp, the layout and the offset formula are on
// W4A8Args). The driver runs it for M < kW4A8RowsMinM (decode); from there
// w4a8_avx2_rows.cpp (lanes over weight rows) takes over. Both follow the
// per-output float sequence written at the top of w4a8_avx512_rows.cpp
// (block b, in k order, into chain b % 4 as fma((float) D, s * sx, chain),
// a group's offset fnma(s z', tg, chain) right after its last block;
// y = (c0 + c1) + (c2 + c3) + bias), so the two give the same bits and a
// row's result never depends on M.
//
// One step is 32 bytes of each of 4 weight rows: 64 values, one half h of
// a 128-value chunk c, i.e. the two activation blocks 4 c + 2 h (bytes
// 0-15) and 4 c + 2 h + 1 (bytes 16-31). Their low nibbles are the even
// values, whose activations are the 32 bytes at xc + 128 c + 32 h, and their
// high nibbles the odd ones, at xc + 128 c + 64 + 32 h. Per row r of the 4
// and row of X:
//   v = bytes ^ 0x88 (symmetric: nibble ^ 8 = q + 8 in 0..15, unsigned)
//   p_r = maddubs(v & 0x0F, x_even) + maddubs((v >> 4) & 0x0F, x_odd)
// vpmaddubsw multiplies unsigned by signed bytes and adds adjacent pairs
// WITH signed saturation; here the unsigned operand is at most 15 and
// |x| <= 128, so a pair sum is at most 2 * 15 * 128 = 3840 in magnitude: no
// saturation. int16 lane j of p_r (within a 128-bit lane) sums 4 values of
// that lane's block. Then
//   D = madd(hadd16(hadd16(p_0, p_1), hadd16(p_2, p_3)), 1)
// adds them up: the second hadd16 holds sums of 16 values (<= 30720 <
// 32767, exact in int16) and the madd sums the last pairs in int32, so
// 128-bit lane e of D is [D(row 0), .., D(row 3)] of block 4 c + 2 h + e,
// exact. One conversion, multiply, fma (and fnma at group ends) per step
// then serve 2 blocks x 4 rows: accumulator h holds chains 2 h (low lane)
// and 2 h + 1 (high lane) of the 4 rows, so a 4 x 4 tile needs only 8 ymm
// accumulators.
//
// Tiles: 4 weight rows (at the end of [n0, n1) the missing ones repeat row
// n and are not stored) x MC <= 4 activation rows, the weight codes and
// group scales prefetched linearly two tiles ahead into L2 (one stream per
// tile instead of 4 interleaved ones; see gemm_avx512.cpp).
// K tail (K % 32 == 0 on this path): the last chunk holds 1, 2 or 3
// blocks; a whole 32-byte half is loaded as usual, a lone block with a
// 128-bit load (upper half zero; only with G = 32, since K % G == 0), so no
// weight byte past the row is read. Its missing block adds D = 0 times lane
// scale 0 (sxl is 0 past K) and tg = 0: fma(0, 0, c) and fnma(x, 0, c)
// are c exactly (a chain is never -0: it starts at +0).
// Group sizes other than 32, 64 and multiples of 128 take the ref path.
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#include <cstring>

#include <cstddef>
#include <cstdint>

#include "../isa.h"

namespace qk {
namespace avx2 {

namespace {

// How the group scales map onto the blocks of a chunk.
enum class GKind { g32, g64, g128 };

// The first cnt (1..4) values at p as floats, the other lanes 0; reads
// nothing past p + cnt (p may be the last scales of the buffer).
static inline __m128 load4(const float* p, size_t cnt) {
    if (cnt == 4) return _mm_loadu_ps(p);
    if (cnt == 2) return _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));  // (unaligned)
    if (cnt == 1) return _mm_load_ss(p);
    return _mm_setr_ps(p[0], p[1], p[2], 0.0f);
}
static inline __m128 load4(const uint16_t* p, size_t cnt) {
    uint64_t v = 0;
    std::memcpy(&v, p, 2 * cnt);
    return _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<long long>(v)));  // exact widening (F16C)
}
static inline __m128 load4(const uint8_t* p, size_t cnt) {
    uint32_t v = 0;
    std::memcpy(&v, p, cnt);
    return _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(int(v))));
}

static inline __m256 pair(__m128 lo, __m128 hi) { return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1); }

// Per-group values of 4 rows (row r at p[r], groups [i0, i0 + cnt)) in the
// lanes of the two halves of a chunk: out[h] 128-bit lane e = the 4 rows'
// values for block 4 c + 2 h + e: group i0 + 2 h + e (g32), i0 + h (g64),
// i0 (g128). Groups past cnt give 0.
// FULL: cnt is the whole 4 (g32), 2 (g64) or 1 (g128) groups of a chunk.
template <GKind GK, bool FULL, typename T>
static inline void chunk_lanes(const T* const* p, size_t i0, size_t cnt, __m256 (&out)[2]) {
    if (FULL) cnt = GK == GKind::g32 ? 4 : GK == GKind::g64 ? 2 : 1;  // a constant: no copy through a buffer
    __m128 r0 = load4(p[0] + i0, cnt), r1 = load4(p[1] + i0, cnt), r2 = load4(p[2] + i0, cnt), r3 = load4(p[3] + i0, cnt);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_j = value j of the 4 rows
    if (GK == GKind::g32) {
        out[0] = pair(r0, r1);
        out[1] = pair(r2, r3);
    } else if (GK == GKind::g64) {
        out[0] = pair(r0, r0);
        out[1] = pair(r1, r1);
    } else {
        out[0] = out[1] = pair(r0, r0);
    }
}

// Linear L2 prefetch of the tile two tiles ahead (as in w4a8_avx512.cpp):
// its R rows of codes are one contiguous block (R lines per chunk, as many
// as the chunk consumes), and so are its R rows of group scales (R * 512 / G
// bytes per chunk).
template <int R, typename S>
struct Prefetcher {
    const char* w;
    const char* s;
    Prefetcher(const void* next_codes, const S* next_scales)
        : w(static_cast<const char*>(next_codes)), s(reinterpret_cast<const char*>(next_scales)) {}
    // sf: the tile's scales consumed before this chunk.
    inline void step(size_t sf) {
        for (int r = 0; r < R; ++r) _mm_prefetch(w + 64 * r, _MM_HINT_T1);
        w += 64 * R;
        _mm_prefetch(s + sizeof(S) * sf, _MM_HINT_T1);
    }
};

// Operands of one tile: 4 weight rows, MC activation rows; S: the scales'
// storage (float, or uint16_t f16 bits).
template <int MC, typename S>
struct TileRows {
    const uint8_t* w[4];
    const S* s[4];
    const uint8_t* z[4];
    const int8_t* xc[MC];
    const float* sxl[MC];
    const float* tg[MC];
};

// The tg lanes of half h of chunk c for one row of X: tg[m, g] in the lanes
// of a block that ends group g, else 0 (g32: every block, PIECE: only the
// low one exists; g64: the high block; g128: the caller's group g, high
// block, when it ends there).
template <GKind GK, bool PIECE>
static inline __m256 tg_lanes(const float* tg, size_t c, size_t h, size_t g) {
    if (GK == GKind::g32) {
        const float* p = tg + 4 * c + 2 * h;
        if (PIECE) return _mm256_zextps128_ps256(_mm_broadcast_ss(p));
        return pair(_mm_broadcast_ss(p), _mm_broadcast_ss(p + 1));
    } else if (GK == GKind::g64) {
        return pair(_mm_setzero_ps(), _mm_broadcast_ss(tg + 2 * c + h));
    } else {
        return pair(_mm_setzero_ps(), _mm_broadcast_ss(tg + g));
    }
}

// acc[h][i] (chains 2 h and 2 h + 1 of the 4 rows) += blocks 4 c + 2 h and
// 4 c + 2 h + 1 (PIECE: only the first, 16 bytes), then the offsets of
// groups ending there (OFF; g128: group g).
// The 32 bytes of a weight row at w (PIECE: 16, the upper half zero) as
// low and high nibbles, one per byte, flipped to q + 8 when symmetric.
template <bool ASYM, bool PIECE>
static inline void nibbles(const uint8_t* w, __m256i& lo, __m256i& hi) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    __m256i v;
    if (PIECE) v = _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    else v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    if (!ASYM) v = _mm256_xor_si256(v, _mm256_set1_epi8(char(0x88)));
    lo = _mm256_and_si256(v, low);
    hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
}

template <GKind GK, bool ASYM, bool PIECE, bool OFF, int MC, typename S>
static inline void half_step(__m256 (&acc)[2][MC], const TileRows<MC, S>& t, size_t c, size_t h, size_t g,
                             __m256 sw, __m256 sz) {
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t wo = 64 * c + 32 * h;   // weight byte offset in the row
    const size_t xo = 128 * c + 32 * h;  // even activations; the odd ones at + 64
    // Row i of X from q, its 4 weight rows' sums of 16 values (see the header).
    const auto finish = [&](int i, __m256i q) {
        const __m256i D = _mm256_madd_epi16(q, ones);  // lane (e, r): block 4 c + 2 h + e of row r
        const __m256 F = _mm256_mul_ps(sw, _mm256_loadu_ps(t.sxl[i] + 16 * c + 8 * h));
        acc[h][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(D), F, acc[h][i]);
        if (OFF) acc[h][i] = _mm256_fnmadd_ps(sz, tg_lanes<GK, PIECE>(t.tg[i], c, h, g), acc[h][i]);
    };
    if constexpr (MC <= 2) {
        // Two weight rows at a time (their nibbles, then the rows of X):
        // M = 2 at K = 11008 ran ~5 % faster this way than with all 4 rows'
        // nibbles live at once, M = 4 ~5 % slower.
        __m256i hs[2][MC];
        for (int rp = 0; rp < 2; ++rp) {
            __m256i lo[2], hi[2];
            for (int k = 0; k < 2; ++k) {
                nibbles<ASYM, PIECE>(t.w[2 * rp + k] + wo, lo[k], hi[k]);
            }
            for (int i = 0; i < MC; ++i) {
                const __m256i xe = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.xc[i] + xo));
                const __m256i xd = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.xc[i] + xo + 64));
                // <= 3840 + 3840 in magnitude: exact in int16 (see the header)
                const __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(lo[0], xe), _mm256_maddubs_epi16(hi[0], xd));
                const __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(lo[1], xe), _mm256_maddubs_epi16(hi[1], xd));
                hs[rp][i] = _mm256_hadd_epi16(p0, p1);
            }
        }
        for (int i = 0; i < MC; ++i) finish(i, _mm256_hadd_epi16(hs[0][i], hs[1][i]));
    } else {
        __m256i lo[4], hi[4];
        for (int r = 0; r < 4; ++r) {
            nibbles<ASYM, PIECE>(t.w[r] + wo, lo[r], hi[r]);
        }
        for (int i = 0; i < MC; ++i) {
            const __m256i xe = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.xc[i] + xo));
            const __m256i xd = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.xc[i] + xo + 64));
            __m256i p[4];
            for (int r = 0; r < 4; ++r)  // <= 3840 + 3840 in magnitude: exact in int16 (see the header)
                p[r] = _mm256_add_epi16(_mm256_maddubs_epi16(lo[r], xe), _mm256_maddubs_epi16(hi[r], xd));
            finish(i, _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3])));
        }
    }
}

// Weight rows [n, n + nr) (nr <= 4) x MC activation rows from m0; ASYM:
// unsigned nibbles with zero points.
template <GKind GK, bool ASYM, int MC, typename S>
void tile(const W4A8Args& a, size_t m0, size_t n, size_t nr) {
    const size_t K = a.K, G = a.w.group, gs = scale_stride(a.w, K);  // scale row stride
    const size_t nb = K / 32, chunks = (K + 127) / 128;
    const S* scales;
    if constexpr (sizeof(S) == 2) scales = a.w.scales16;
    else scales = a.w.scales;
    TileRows<MC, S> t;
    for (int r = 0; r < 4; ++r) {
        const size_t row = n + (size_t(r) < nr ? r : 0);
        t.w[r] = static_cast<const uint8_t*>(a.w.data) + row * a.w.row_bytes;
        t.s[r] = scales + row * gs;
        t.z[r] = ASYM ? static_cast<const uint8_t*>(a.w.zps) + row * gs : nullptr;
    }
    for (int i = 0; i < MC; ++i) {
        t.xc[i] = a.xc + (m0 + i) * a.ldx;
        t.sxl[i] = a.sxl + (m0 + i) * a.ldsxl;
        t.tg[i] = a.tg + (m0 + i) * a.ldtg;
    }
    __m256 acc[2][MC];
    for (int h = 0; h < 2; ++h)
        for (int i = 0; i < MC; ++i) acc[h][i] = _mm256_setzero_ps();
    Prefetcher<4, S> pf(static_cast<const uint8_t*>(a.w.data) + (n + 8) * a.w.row_bytes, scales + (n + 8) * gs);

    // G % 128 == 0: the group of chunk c and its chunks left, without a division per chunk.
    const size_t cpg = G >= 128 ? G / 128 : 1;
    size_t g128 = 0, left = cpg;
    __m256 sw[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, sz[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t c = 0; c < chunks; ++c) {
        const size_t nq = nb - 4 * c < 4 ? nb - 4 * c : 4;  // blocks in this chunk
        if (nr == 4) pf.step(GK == GKind::g32 ? 16 * c : GK == GKind::g64 ? 8 * c : 4 * g128);
        if (GK != GKind::g128 || left == cpg) {
            // this chunk's groups: [i0, i0 + cnt)
            const size_t i0 = GK == GKind::g32 ? 4 * c : GK == GKind::g64 ? 2 * c : g128;
            const size_t cnt = GK == GKind::g32 ? nq : GK == GKind::g64 ? (nq + 1) / 2 : 1;
            if (nq == 4) chunk_lanes<GK, true>(t.s, i0, cnt, sw);
            else chunk_lanes<GK, false>(t.s, i0, cnt, sw);
            if (ASYM) {
                __m256 zl[2];
                if (nq == 4) chunk_lanes<GK, true>(t.z, i0, cnt, zl);
                else chunk_lanes<GK, false>(t.z, i0, cnt, zl);
                sz[0] = _mm256_mul_ps(sw[0], zl[0]);
                sz[1] = _mm256_mul_ps(sw[1], zl[1]);
            } else {
                sz[0] = _mm256_mul_ps(sw[0], _mm256_set1_ps(8.0f));
                sz[1] = _mm256_mul_ps(sw[1], _mm256_set1_ps(8.0f));
            }
        }
        constexpr bool kOff = GK != GKind::g128;  // g32, g64: a group ends in every half
        if (nq >= 2) half_step<GK, ASYM, false, kOff>(acc, t, c, 0, g128, sw[0], sz[0]);
        else half_step<GK, ASYM, true, kOff>(acc, t, c, 0, g128, sw[0], sz[0]);  // (g32 only)
        if (nq == 4) {
            if (GK == GKind::g128 && left == 1) half_step<GK, ASYM, false, true>(acc, t, c, 1, g128, sw[1], sz[1]);
            else half_step<GK, ASYM, false, kOff>(acc, t, c, 1, g128, sw[1], sz[1]);
        } else if (nq == 3) {
            half_step<GK, ASYM, true, kOff>(acc, t, c, 1, g128, sw[1], sz[1]);  // (g32 only)
        }
        if (GK == GKind::g128 && --left == 0) {
            left = cpg;
            ++g128;
        }
    }
    // y = (chain 0 + chain 1) + (chain 2 + chain 3) (+ bias), 4 rows at a time
    alignas(16) float bias4[4] = {};
    if (a.bias)
        for (size_t r = 0; r < nr; ++r) bias4[r] = a.bias[n + r];
    for (int i = 0; i < MC; ++i) {
        const __m128 s01 = _mm_add_ps(_mm256_castps256_ps128(acc[0][i]), _mm256_extractf128_ps(acc[0][i], 1));
        const __m128 s23 = _mm_add_ps(_mm256_castps256_ps128(acc[1][i]), _mm256_extractf128_ps(acc[1][i], 1));
        __m128 v = _mm_add_ps(s01, s23);
        if (a.bias) v = _mm_add_ps(v, _mm_load_ps(bias4));
        float* y = a.y + (m0 + i) * a.ldy + n;
        if (nr == 4) {
            _mm_storeu_ps(y, v);
        } else {
            alignas(16) float out[4];
            _mm_store_ps(out, v);
            for (size_t r = 0; r < nr; ++r) y[r] = out[r];
        }
    }
}

template <GKind GK, bool ASYM, int MC, typename S>
void rows(const W4A8Args& a, size_t m0, size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; n += 4) tile<GK, ASYM, MC, S>(a, m0, n, n1 - n < 4 ? n1 - n : 4);
}

template <GKind GK, bool ASYM, typename S>
void run(const W4A8Args& a, size_t n0, size_t n1) {
    size_t m = 0;
    for (; m + 4 <= a.M; m += 4) rows<GK, ASYM, 4, S>(a, m, n0, n1);
    switch (a.M - m) {
        case 3: rows<GK, ASYM, 3, S>(a, m, n0, n1); break;
        case 2: rows<GK, ASYM, 2, S>(a, m, n0, n1); break;
        case 1: rows<GK, ASYM, 1, S>(a, m, n0, n1); break;
        default: break;
    }
}

template <GKind GK>
void run_g(const W4A8Args& a, size_t n0, size_t n1) {
    if (a.w.scales16) {
        if (a.w.zps) run<GK, true, uint16_t>(a, n0, n1);
        else run<GK, false, uint16_t>(a, n0, n1);
    } else {
        if (a.w.zps) run<GK, true, float>(a, n0, n1);
        else run<GK, false, float>(a, n0, n1);
    }
}

}  // namespace

void gemm_w4a8(const W4A8Args& a, size_t n0, size_t n1) {
    const size_t G = a.w.group;
    if (a.K % G != 0) ref::gemm_w4a8(a, n0, n1);  // a shorter last group: the reference takes it
    else if (G == 32) run_g<GKind::g32>(a, n0, n1);
    else if (G == 64) run_g<GKind::g64>(a, n0, n1);
    else if (G % 128 == 0) run_g<GKind::g128>(a, n0, n1);
    else ref::gemm_w4a8(a, n0, n1);
}

// Kernels::w4a8_chunk_x. Per chunk, four 32-byte vectors v_b (block b):
// vpshufb puts each 16-byte lane's 8 even bytes before its 8 odd ones,
// vpermq (0xD8) gathers the vector's 16 even bytes into its low half and
// its 16 odd ones into the high half, and two lane permutes per pair of
// vectors write the 64 even and the 64 odd bytes. Block sums: vpsadbw of
// v ^ 0x80 (the bytes as unsigned q + 128) against 0 gives four sums of 8,
// added, minus 32 * 128. The driver ran this part (with the block sums
// for tg) as plain loops: ~40 % of a W4A8 row quantization's instructions.
void w4a8_chunk_x(const int8_t* q, size_t chunks, int8_t* xc, int32_t* bsum) {
    const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                           0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const __m256i bias = _mm256_set1_epi8(char(0x80));
    for (size_t c = 0; c < chunks; ++c) {
        __m256i v[4];
        for (int b = 0; b < 4; ++b) {
            const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 128 * c + 32 * b));
            const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(raw, bias), _mm256_setzero_si256());
            const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            bsum[4 * c + b] = int32_t(_mm_cvtsi128_si64(_mm_add_epi64(h, _mm_unpackhi_epi64(h, h)))) - 32 * 128;
            v[b] = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(raw, split), 0xD8);
        }
        __m256i* dst = reinterpret_cast<__m256i*>(xc + 128 * c);
        _mm256_storeu_si256(dst, _mm256_permute2x128_si256(v[0], v[1], 0x20));
        _mm256_storeu_si256(dst + 1, _mm256_permute2x128_si256(v[2], v[3], 0x20));
        _mm256_storeu_si256(dst + 2, _mm256_permute2x128_si256(v[0], v[1], 0x31));
        _mm256_storeu_si256(dst + 3, _mm256_permute2x128_si256(v[2], v[3], 0x31));
    }
}

}  // namespace avx2
}  // namespace qk

#endif  // x86-64
