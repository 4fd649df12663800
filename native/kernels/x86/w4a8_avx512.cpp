// AVX-512 VNNI W4A8 kernel over the stored row layout (Kernels::gemm_w4a8;
// the spec is ref/w4a8_ref.cpp, the layout and the offset formula are on
// W4A8Args). The driver runs it for M < kW4A8RowsMinM (decode); from there
// w4a8_avx512_rows.cpp takes over. Both give the SAME BITS for every
// output: this kernel follows the sequence written at the top of
// w4a8_avx512_rows.cpp (block b, in k order, into chain b % 4 as
// fma((float) D, s * sx, chain), a group's offset fnma(s z', tg, chain)
// right after its last block; y = (c0 + c1) + (c2 + c3) + bias), so which
// of the two runs a row, whatever M, never changes it (batch invariance
// needs no special mode for W4A8).
//
// One step is a 64-byte chunk of each of 4 weight rows: 128 values, whose
// low nibbles are the even values and high nibbles the odd ones, exactly the
// two 64-byte halves of the activation chunk. Per row of X:
//   v = bytes ^ 0x88 (symmetric: nibble ^ 8 = q + 8 in 0..15, unsigned)
//   d_r = vpdpbusd(vpdpbusd(0, v & 0x0F, x_even), (v >> 4) & 0x0F, x_odd)
// so int32 lane l of d_r holds 8 values of block l / 4 of row r. Two rounds
// of unpack-and-add turn d_0..d_3 into one vector whose 128-bit lane q holds
// the exact block sums D of block 4 c + q for the 4 rows: lane (q, r) is
// chain q of row r, so one conversion, one multiply (s * sx), one fma and
// one fnma (the offset, 0 where no group ends) per chunk serve 4 blocks of
// 4 rows. Tiles are 16 weight rows (4 quads); a later tile (the next one,
// or ~18 KiB ahead for short rows: prefetch_ahead) is prefetched linearly
// into L2 as the tile is read.
#include "gcc_avx512_warnings.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../isa.h"
#include "avx512_prefetch.h"

namespace qk {
namespace avx512 {

namespace {

// How the group scales map onto the blocks of a chunk.
enum class GKind { g32, g64, g128 };

// Lanes (q, r) (index 4 q + r) of a zmm from 4 rows of per-group values
// (row r at p[r], values [i0, i0 + cnt)): value p[r][g(4 c + q)], with
// g(b) = b (g32), b / 2 (g64) or the chunk's single group (g128; cnt = 1).
// Rows r >= nr and blocks past the row's end give 0. Whole chunks (mk =
// 0xF) take plain loads: masked ones cost ~7 % of the M = 1 time on Zen 4.
inline __m128 load4(const float* p, __mmask8 mk) { return mk == 0xF ? _mm_loadu_ps(p) : _mm_maskz_loadu_ps(mk, p); }
inline __m128 load4(const uint16_t* p, __mmask8 mk) { return _mm_cvtph_ps(mk == 0xF ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)) : _mm_maskz_loadu_epi16(mk, p)); }
inline __m128 load4(const uint8_t* p, __mmask8 mk) {
    if (mk != 0xF) return _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, p)));
    int32_t v4;
    std::memcpy(&v4, p, 4);
    return _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(v4)));
}

template <GKind GK, typename T>
inline __m512 chunk_lanes(const T* const* p, size_t nr, size_t i0, size_t cnt) {
    const __mmask8 mk = __mmask8((1u << cnt) - 1);
    __m512 v;  // 128-bit lane r = row r's values
    if (nr == 4) {
        v = _mm512_castps128_ps512(load4(p[0] + i0, mk));
        v = _mm512_insertf32x4(v, load4(p[1] + i0, mk), 1);
        v = _mm512_insertf32x4(v, load4(p[2] + i0, mk), 2);
        v = _mm512_insertf32x4(v, load4(p[3] + i0, mk), 3);
    } else {
        v = _mm512_setzero_ps();
        if (nr > 0) v = _mm512_insertf32x4(v, load4(p[0] + i0, mk), 0);
        if (nr > 1) v = _mm512_insertf32x4(v, load4(p[1] + i0, mk), 1);
        if (nr > 2) v = _mm512_insertf32x4(v, load4(p[2] + i0, mk), 2);
    }
    // lane 4 q + r <- 4 r + j(q), j = q (g32), q / 2 (g64), 0 (g128)
    __m512i idx;
    if (GK == GKind::g32) idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    else if (GK == GKind::g64) idx = _mm512_set_epi32(13, 9, 5, 1, 13, 9, 5, 1, 12, 8, 4, 0, 12, 8, 4, 0);
    else idx = _mm512_set_epi32(12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(idx, v);
}

// 128-bit lane Q of v.
template <int Q>
inline __m128 lane(__m512 v) {
    return Q == 0 ? _mm512_castps512_ps128(v) : _mm512_extractf32x4_ps(v, Q);
}

// The activation sums tg of the groups that end at the blocks of chunk c,
// in lanes (q, r): tg[m, g] in the 4 lanes of block 4 c + q when that block
// is the last of group g, else 0 (whose fnma, -(s z' * 0) + acc, is
// exactly acc). g128: `end` says whether block 4 c + 3 ends group g.
template <GKind GK>
inline __m512 chunk_tg(const float* tg, size_t c, size_t nq, size_t g, bool end) {
    if (GK == GKind::g32) {
        const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        const __m128 t = nq == 4 ? _mm_loadu_ps(tg + 4 * c) : _mm_maskz_loadu_ps(__mmask8((1u << nq) - 1), tg + 4 * c);
        return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(t));
    } else if (GK == GKind::g64) {
        const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        const __m128 t2 = nq == 4 ? _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(tg + 2 * c))) : _mm_maskz_loadu_ps(__mmask8((1u << (nq / 2)) - 1), tg + 2 * c);
        const __m512 t = _mm512_castps128_ps512(t2);
        return _mm512_maskz_permutexvar_ps(__mmask16(0xF0F0), idx, t);  // blocks 1 and 3
    } else {
        return end ? _mm512_maskz_mov_ps(__mmask16(0xF000), _mm512_set1_ps(tg[g])) : _mm512_setzero_ps();
    }
}

// Weight rows [n, n + nr) (nr <= 4 NQ: NQ quads of 4 rows, NQ = 4 but at
// the end of a task) x MC rows of X from m0; ASYM: unsigned nibbles with
// zero points; S: the scales' storage (float, or uint16_t f16). Lane (q, r)
// of a quad's accumulator is chain q of row r (the header's sequence: block
// 4 c + q goes to chain q). NQ is a constant so that the accumulators stay
// in registers.
template <GKind GK, bool ASYM, int MC, int NQ, typename S>
void tile(const W4A8Args& a, size_t m0, size_t n, size_t nr) {
    const size_t K = a.K, G = a.w.group, gs = scale_stride(a.w, K);  // scale row stride
    const size_t nb = K / 32, chunks = (K + 127) / 128, rb = a.w.row_bytes;
    const size_t cpg = G >= 128 ? G / 128 : 1;  // g128: chunks per group
    const S* scales;
    if constexpr (sizeof(S) == 2) scales = a.w.scales16;
    else scales = a.w.scales;
    const uint8_t* w[4 * NQ];
    const S* s[4 * NQ];
    const uint8_t* z[4 * NQ];
    for (size_t r = 0; r < 4 * NQ; ++r) {
        const size_t row = n + (r < nr ? r : 0);
        w[r] = static_cast<const uint8_t*>(a.w.data) + row * rb;
        s[r] = scales + row * gs;
        z[r] = ASYM ? static_cast<const uint8_t*>(a.w.zps) + row * gs : nullptr;
    }
    const int8_t* xc[MC];
    const float* sxl[MC];
    const float* tg[MC];
    for (int i = 0; i < MC; ++i) {
        xc[i] = a.xc + (m0 + i) * a.ldx;
        sxl[i] = a.sxl + (m0 + i) * a.ldsxl;
        tg[i] = a.tg + (m0 + i) * a.ldtg;
    }
    __m512 acc[NQ][MC];
    for (int u = 0; u < NQ; ++u)
        for (int i = 0; i < MC; ++i) acc[u][i] = _mm512_setzero_ps();
    const __m512i flip = _mm512_set1_epi8(ASYM ? 0 : char(0x88));
    const __m512i low = _mm512_set1_epi8(0x0F);
    // A later tile's codes and scales (two contiguous blocks; 1 to a few
    // tiles ahead, prefetch_ahead) are prefetched as this tile is read
    // (NextTile): codes 16 lines per chunk, the scales spread evenly over
    // the chunks.
    const size_t ahead = prefetch_ahead(rb);
    const NextTile next(a.w.data, rb, n, a.N, ahead), next_s(scales, gs * sizeof(S), n, a.N, ahead);
    const size_t s_step = (next_s.bytes / chunks + 63) / 64 * 64;

    size_t g128 = 0, left128 = cpg;  // g128: the chunk's group, and its chunks left
    for (size_t c = 0; c < chunks; ++c) {
        const size_t nq = nb - 4 * c < 4 ? nb - 4 * c : 4;  // blocks in this chunk
        const __mmask64 bytes = nq == 4 ? ~__mmask64(0) : (__mmask64(1) << (16 * nq)) - 1;
        next.slice(c, 1024);
        next_s.slice(c, s_step);
        size_t i0, cnt;  // this chunk's groups: [i0, i0 + cnt)
        if (GK == GKind::g32) i0 = 4 * c, cnt = nq;
        else if (GK == GKind::g64) i0 = 2 * c, cnt = (nq + 1) / 2;
        else i0 = g128, cnt = 1;
        // g128: whether block 4 c + 3 ends a group (g32: every block; g64: odd ones)
        bool end3 = true;
        if (GK == GKind::g128 && (end3 = --left128 == 0)) left128 = cpg;
        const __mmask16 valid = __mmask16((1u << (4 * nq)) - 1);  // the lanes of real blocks
        __m512 tgl[MC];
        for (int i = 0; i < MC; ++i) tgl[i] = chunk_tg<GK>(tg[i], c, nq, g128, end3);
#pragma GCC unroll 4
        for (int u = 0; u < NQ; ++u) {
            const size_t r4 = nr - 4 * u < 4 ? nr - 4 * u : 4;  // this quad's rows (>= 1)
            __m512i lo[4], hi[4];
            for (size_t r = 0; r < 4; ++r) {
                const __m512i v = r < r4 ? _mm512_maskz_loadu_epi8(bytes, w[4 * u + r] + 64 * c) : _mm512_setzero_si512();
                // (v ^ flip) & 0x0F in one ternary-logic op (0x28: (A ^ B) & C)
                lo[r] = _mm512_ternarylogic_epi32(v, flip, low, 0x28);
                hi[r] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 4), flip, low, 0x28);
            }
            // s and s z' in lanes (q, r) for this chunk's blocks
            const __m512 sw = chunk_lanes<GK>(s + 4 * u, r4, i0, cnt);
            const __m512 sz = _mm512_mul_ps(sw, ASYM ? chunk_lanes<GK>(z + 4 * u, r4, i0, cnt) : _mm512_set1_ps(8.0f));
            for (int i = 0; i < MC; ++i) {
                const __m512i xe = _mm512_loadu_si512(xc[i] + 128 * c), xo = _mm512_loadu_si512(xc[i] + 128 * c + 64);
                __m512i d[4];
                for (size_t r = 0; r < 4; ++r)
                    d[r] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], xe), hi[r], xo);
                // 128-bit lane q: [D(row 0), D(row 1), D(row 2), D(row 3)] of block 4 c + q (exact)
                const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(d[0], d[1]), _mm512_unpackhi_epi32(d[0], d[1]));
                const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(d[2], d[3]), _mm512_unpackhi_epi32(d[2], d[3]));
                const __m512i D = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
                const __m512 P = _mm512_cvtepi32_ps(D);
                // s * sx (sxl lane 4 q + r = sx of block 4 c + q)
                const __m512 F = _mm512_mul_ps(sw, _mm512_loadu_ps(sxl[i] + 16 * c));
                // chain q of each row: block 4 c + q, then its group's offset if it ends one
                acc[u][i] = _mm512_mask3_fmadd_ps(P, F, acc[u][i], valid);
                acc[u][i] = _mm512_mask3_fnmadd_ps(sz, tgl[i], acc[u][i], valid);
            }
        }
        if (GK == GKind::g128 && end3) ++g128;
    }
    for (int u = 0; u < NQ; ++u) {
        const size_t r4 = nr - 4 * u < 4 ? nr - 4 * u : 4;
        const __mmask8 mk = __mmask8((1u << r4) - 1);
        const __m128 bias = a.bias ? _mm_maskz_loadu_ps(mk, a.bias + n + 4 * u) : _mm_setzero_ps();
        for (int i = 0; i < MC; ++i) {
            const __m512 v = acc[u][i];  // y[r] = (chain 0 + chain 1) + (chain 2 + chain 3)
            const __m128 sum = _mm_add_ps(_mm_add_ps(lane<0>(v), lane<1>(v)), _mm_add_ps(lane<2>(v), lane<3>(v)));
            _mm_mask_storeu_ps(a.y + (m0 + i) * a.ldy + n + 4 * u, mk, a.bias ? _mm_add_ps(sum, bias) : sum);
        }
    }
}

template <GKind GK, bool ASYM, int MC, typename S>
void rows(const W4A8Args& a, size_t m0, size_t n0, size_t n1) {
    size_t n = n0;
    for (; n + 16 <= n1; n += 16) tile<GK, ASYM, MC, 4, S>(a, m0, n, 16);
    for (; n < n1; n += 4) tile<GK, ASYM, MC, 1, S>(a, m0, n, n1 - n < 4 ? n1 - n : 4);
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

}  // namespace avx512
}  // namespace qk
