// AVX-512 VNNI W4A8 kernel with the vector lanes over 16 WEIGHT ROWS
// (Kernels::gemm_w4a8_rows; same contract and spec as gemm_w4a8, see
// W4A8Args in kernels.h and ref/w4a8_ref.cpp).
//
// Why a second kernel: w4a8_avx512.cpp reads the stored row layout, one
// weight row per zmm, so an int32 lane sums only 8 values and every row of
// X needs shuffles to gather block sums: it runs at ~75 GMAC/s on one Zen 4
// core whatever M is. Here lane j belongs to weight row n + j, so one lane
// sums a whole activation block (32 values, 8 vpdpbusd) before the
// rescale, and the activations come in as 4-byte broadcasts. The price is
// the interleave below, which does not pay for itself at M = 1 to 4.
//
// That needs the codes of 16 rows interleaved by 4 bytes. They are
// transposed per call into a per-thread panel (16 rows x K/2 bytes, 32 KB at
// K = 4096, in L1/L2) by one 16 x 16 transpose of 32-bit lanes per 64 bytes
// of each row, then every row of X runs over the panel:
//   panel[(4 b + t) * 64 + 4 j .. + 3] = bytes 16 b + 4 t .. + 3 of row n + j
// (block b of 32 values, piece t: values 32 b + 8 t .. + 7, low nibbles the
// even ones). With the chunked activation layout, the matching activations
// are 4 contiguous bytes: xc + 128 (b / 4) + 16 (b % 4) + 4 t (even values)
// and the same + 64 (odd values).
//
// Per output (row m of X, weight row n), in this order and nothing else, so
// the result does not depend on M, on the rows of X computed together, on
// the rows of W sharing a panel, or on how [0, N) is split into tasks:
//   acc[0..3] = 0  (four chains: block b goes to chain b % 4)
//   for each block b in k order (group g = b / (G / 32)):
//     D = exact int32 sum over b of u'[n, k] * xq[m, k]
//     acc[b % 4] = fma((float) D, s[n, g] * sx[m, b], acc[b % 4])
//     if b is the last block of g:
//       acc[b % 4] = fnma(s[n, g] * z'[n, g], tg[m, g], acc[b % 4])
//   y = (acc[0] + acc[1]) + (acc[2] + acc[3]) (+ bias[n])
// with u' and z' as on W4A8Args (nibble ^ 8 and 8, or u and z). This is the
// ref's segment sum to float rounding, as every SIMD kernel is; and
// w4a8_avx512.cpp (M < kW4A8RowsMinM) follows the same sequence, so the
// two give the same bits and a row's result never depends on M.
#include "gcc_avx512_warnings.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../isa.h"
#include "avx512_prefetch.h"
#include "avx512_transpose.h"
#include "w4a8_avx512_rows.h"
#include "w4a8_avx512_scales.h"

namespace qk {
namespace avx512 {

namespace {

// The panel of rows [n, n + nr) (nr <= 16), chunk c (64 bytes of each row)
// at panel[16 c ..] interleaved: panel[16 c + 4 q + t] lane j = bytes
// 16 q + 4 t .. + 3 of row n + j's chunk; rows past nr and bytes past the
// row are 0 (their lanes are never stored). The codes stay as stored:
// Outputs::block flips symmetric ones to q + 8 in the same instruction that
// masks out a nibble.
void fill_panel(const W4A8Args& a, size_t n, size_t nr, __m512i* panel) {
    const size_t rb = a.w.row_bytes;
    for (size_t c = 0; c < (a.K + 127) / 128; ++c) {
        // Bytes of each row from this chunk on: of the K values, not of the
        // row stride (a view of a row's last group starts mid-row with the
        // stride of the whole row; reading up to the stride would run past
        // the buffer).
        const size_t left = a.K / 2 - 64 * c;
        const uint8_t* base = static_cast<const uint8_t*>(a.w.data) + n * rb + 64 * c;
        __m512i r[16];
        if (left >= 64) {
            for (size_t j = 0; j < 16; ++j) r[j] = j < nr ? _mm512_loadu_si512(base + j * rb) : _mm512_setzero_si512();
        } else {
            const __mmask64 mk = (__mmask64(1) << left) - 1;
            for (size_t j = 0; j < 16; ++j) r[j] = j < nr ? _mm512_maskz_loadu_epi8(mk, base + j * rb) : _mm512_setzero_si512();
        }
        transpose16(r);
        for (size_t j = 0; j < 16; ++j) _mm512_store_si512(panel + 16 * c + j, r[j]);
    }
}

// The outputs of MC rows of X from m0 and the 16 weight rows from n (nr
// of them real): the accumulators and the per-block step of the header's
// sequence, fed with the 4 code vectors of each block in k order.
template <int MC>
struct Outputs {
    const W4A8Args& a;
    const float* sw;
    const float* sz;
    size_t bpg;       // activation blocks per group
    size_t g = 0;     // the group of the next block
    size_t left;      // its blocks not yet added
    __m512i flip;     // 0x88 per byte (symmetric: nibble ^ 8 = q + 8) or 0
    const int8_t* xc[MC];
    const float* sx[MC];
    const float* tg[MC];
    __m512 acc[MC][4];  // chain Q: the blocks b with b % 4 == Q

    Outputs(const W4A8Args& args, const float* s, const float* s_z, size_t m0)
        : a(args), sw(s), sz(s_z), bpg(args.w.group / 32), left(bpg),
          flip(_mm512_set1_epi8(args.w.zps ? 0 : char(0x88))) {
        for (int i = 0; i < MC; ++i) {
            xc[i] = a.xc + (m0 + i) * a.ldx;
            sx[i] = a.sx + (m0 + i) * a.ldsx;
            tg[i] = a.tg + (m0 + i) * a.ldtg;
            for (int q = 0; q < 4; ++q) acc[i][q] = _mm512_setzero_ps();
        }
    }

    // The blocks of chunk c (nq of them, 4 but at the end of K) from its
    // codes v[16] (block 4 c + q: v[4 q .. 4 q + 3]).
    inline void chunk(const __m512i* v, size_t c, size_t nq) {
        block<0>(v, 4 * c);
        if (nq > 1) block<1>(v + 4, 4 * c + 1);
        if (nq > 2) block<2>(v + 8, 4 * c + 2);
        if (nq > 3) block<3>(v + 12, 4 * c + 3);
    }

    // Block b = 4 c + Q (the next one in k order) from its codes v[0..3] (pieces t).
    template <int Q>
    inline void block(const __m512i* v, size_t b) {
        const __m512i low = _mm512_set1_epi8(0x0F);
        // With 1-2 rows of X the 8 vpdpbusd of a block would be one
        // dependent chain: two chains, added at the end (exact in int32).
        constexpr int C = MC <= 2 ? 2 : 1;
        __m512i d[C][MC];
        for (int h = 0; h < C; ++h)
            for (int i = 0; i < MC; ++i) d[h][i] = _mm512_setzero_si512();
        const size_t xo = 128 * (b / 4) + 16 * (b % 4);
        for (size_t t = 0; t < 4; ++t) {
            // (v ^ flip) & 0x0F in one ternary-logic op (0x28: (A ^ B) & C)
            const __m512i lo = _mm512_ternarylogic_epi32(v[t], flip, low, 0x28);
            const __m512i hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v[t], 4), flip, low, 0x28);
            for (int i = 0; i < MC; ++i) {
                int32_t xe, xd;  // 4 even values, 4 odd values
                __builtin_memcpy(&xe, xc[i] + xo + 4 * t, 4);
                __builtin_memcpy(&xd, xc[i] + xo + 64 + 4 * t, 4);
                __m512i& dd = d[t % C][i];
                dd = _mm512_dpbusd_epi32(dd, lo, _mm512_set1_epi32(xe));
                dd = _mm512_dpbusd_epi32(dd, hi, _mm512_set1_epi32(xd));
            }
        }
        if constexpr (C == 2)
            for (int i = 0; i < MC; ++i) d[0][i] = _mm512_add_epi32(d[0][i], d[1][i]);
        const __m512 swg = _mm512_load_ps(sw + 16 * g);
        for (int i = 0; i < MC; ++i)
            acc[i][Q] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[0][i]), _mm512_mul_ps(swg, _mm512_set1_ps(sx[i][b])), acc[i][Q]);
        if (--left == 0) {  // the last block of group g: its offset
            const __m512 szg = _mm512_load_ps(sz + 16 * g);
            for (int i = 0; i < MC; ++i) acc[i][Q] = _mm512_fnmadd_ps(szg, _mm512_set1_ps(tg[i][g]), acc[i][Q]);
            ++g;
            left = bpg;
        }
    }

    void store(size_t m0, size_t n, size_t nr) const {
        const __mmask16 mk = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
        const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mk, a.bias + n) : _mm512_setzero_ps();
        for (int i = 0; i < MC; ++i) {
            const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]), _mm512_add_ps(acc[i][2], acc[i][3]));
            const __m512 v = a.bias ? _mm512_add_ps(sum, bias) : sum;
            _mm512_mask_storeu_ps(a.y + (m0 + i) * a.ldy + n, mk, v);
        }
    }
};

// MC rows of X over the stored panel (several passes share it), a step of
// the next tile's prefetch per chunk.
template <int MC>
void rows_panel(const W4A8Args& a, const __m512i* panel, const float* sw, const float* sz, size_t m0, size_t n,
                size_t nr, SpreadAhead& next) {
    Outputs<MC> o(a, sw, sz, m0);
    const size_t nb = a.K / 32;
    for (size_t c = 0; c < (a.K + 127) / 128; ++c) {
        next.step();
        o.chunk(panel + 16 * c, c, nb - 4 * c < 4 ? nb - 4 * c : 4);
    }
    o.store(m0, n, nr);
}

struct alignas(64) Line {
    uint8_t b[64];
};

constexpr int kMC = 4;  // rows of X per pass: 4 x 4 accumulators, 4 block sums, 2 code vectors in registers

template <typename S>
void run(const W4A8Args& a, const S* scales, size_t n0, size_t n1) {
    const size_t K = a.K, ng = K / a.w.group, gs = scale_stride(a.w, K), chunks = (K + 127) / 128;
    // Per-thread scratch of 64-byte lines, reused across calls (grows to the
    // largest K seen): 16 s and 16 s z' per group, then the panel.
    const size_t lines = 2 * ng + 16 * chunks;
    thread_local std::vector<Line> scratch;
    if (scratch.size() < lines) scratch.resize(lines);
    float* sw = reinterpret_cast<float*>(scratch.data());
    float* sz = sw + 16 * ng;
    __m512i* panel = reinterpret_cast<__m512i*>(scratch.data() + 2 * ng);
    for (size_t n = n0; n < n1; n += 16) {
        const size_t nr = n1 - n < 16 ? n1 - n : 16;
        // The next tile's codes, scales and zero points (16 rows of each,
        // three contiguous blocks), prefetched a few lines per chunk over
        // all of this tile's passes of X: fill_panel and fill_scales read
        // 16 rows at once, which the hardware prefetchers do not follow.
        // Measured (AMD EPYC Zen 5, one thread, cold weights, the 12 d768
        // layers' shapes): left to demand misses, fill_scales took 20 % of
        // the time at M = 8; with the codes prefetched in one burst in
        // fill_panel (and the scales in one at the tile's start), the
        // layers took 1.05x (M = 16), 1.1x (M = 8) and 1.06x (M = 5) the
        // time of this spread.
        SpreadAhead next;  // in the order the next tile's fills read them
        next.add(scales, gs * sizeof(S), n, a.N);
        if (a.w.zps) next.add(a.w.zps, gs, n, a.N);
        next.add(a.w.data, a.w.row_bytes, n, a.N);
        next.spread(chunks * ((a.M + kMC - 1) / kMC));
        fill_scales(a, scales, n, nr, ng, gs, sw, sz);
        fill_panel(a, n, nr, panel);
        size_t m = 0;
        for (; m + kMC <= a.M; m += kMC) rows_panel<kMC>(a, panel, sw, sz, m, n, nr, next);
        switch (a.M - m) {
            case 3: rows_panel<3>(a, panel, sw, sz, m, n, nr, next); break;
            case 2: rows_panel<2>(a, panel, sw, sz, m, n, nr, next); break;
            case 1: rows_panel<1>(a, panel, sw, sz, m, n, nr, next); break;
            default: break;
        }
    }
}

}  // namespace

void gemm_w4a8_rows(const W4A8Args& a, size_t n0, size_t n1) {
    const size_t G = a.w.group;
    // The cases of gemm_w4a8 (w4a8_avx512.cpp), so that the two give the
    // same bits for every group size; a shorter last group, or G = 48 or 96,
    // take the reference in both.
    if (a.K % G != 0 || !(G == 32 || G == 64 || G % 128 == 0)) ref::gemm_w4a8(a, n0, n1);
    else if (a.w.scales16) run(a, a.w.scales16, n0, n1);
    else run(a, a.w.scales, n0, n1);
}

}  // namespace avx512
}  // namespace qk
