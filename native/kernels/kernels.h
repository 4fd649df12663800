// The kernel contract: every ISA (ref = scalar spec, avx2, avx512, neon)
// provides a function with each of these signatures, and dispatch.cpp picks
// one set at load time into a single Kernels table. Only the files under
// kernels/ are compiled with ISA flags; everything else calls through the
// table and never uses #ifdef on an ISA.
//
// Conventions
//   - Weights are W[N, K] row-major (one output channel per row), activations
//     X[M, K] row-major, outputs Y[M, N]; Y = X · W^T (+ bias).
//   - "Group" means G consecutive values along K inside one row. Per-channel
//     quantization is a single group of G = K per row; per-tensor quantization
//     is expressed by the caller as per-channel with the same parameters in
//     every row.
//   - Sub-byte packing is along K, two int4 per byte with the even element in
//     the low nibble (ONNX order); int2: element 4i+j in bits 2j..2j+1.
//     Signed int4 (symmetric) is stored as the two's-complement low nibble
//     (-8..7 -> 0x8..0x7); unsigned int4 (asymmetric) as 0..15.
//     A row of K int4 values occupies ceil(K/2) bytes (an odd K leaves the
//     last high nibble 0).
//   - Quantize and dequantize, pack and unpack are bit-exact across ISAs
//     (the element formulas use one IEEE division / multiplication each).
//     GEMM results differ between ISAs only by float summation order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace qk {

// amx: the avx512 kernels, with AMX-INT8 tiles for W8A8 (Sapphire Rapids and
// later); numbered after the others, so capping at avx512 leaves it out.
enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3, neon_dot = 4, amx = 5 };

// Storage format of a weight matrix in GEMM.
enum class WFormat : int { f32 = 0, f16 = 1, bf16 = 2, i8 = 3, i4 = 4 };

// A weight matrix W[N, K] as the GEMM kernels see it.
struct WeightView {
    WFormat fmt;
    const void* data;      // row n starts at (const uint8_t*)data + n * row_bytes
    size_t row_bytes;      // f32: 4K, f16/bf16: 2K, i8: K, i4: ceil(K/2)
    const float* scales;   // i8/i4: [N, gstride]; unused for float formats
    const void* zps;       // i8 asym: int8_t [N, gstride]; i4 asym: uint8_t [N, gstride] (0..15); nullptr = symmetric
    size_t group;          // G (divides K, even for i4); per-channel: G = K
    // Scale (and zero-point) entries per row of W; 0 means K / G. A weight
    // whose last group is shorter (K % G != 0) is stored with ceil(K / G)
    // entries per row; the GEMM driver runs it as two views over the same
    // rows, [0, K1) with groups of G and [K1, K) as one group, both with
    // gstride = ceil(K / G). Kernels only ever see G dividing their K.
    size_t gstride = 0;
    // i8/i4 scales stored as f16 bits [N, gstride] instead of `scales` (half
    // the bytes: int4 g32 reads 0.5625 bytes per weight instead of 0.625).
    // Read directly by every gemv and W4A8 kernel, each scale widened
    // exactly (F16C on x86, fcvt on ARM, scale_at in the reference); for the
    // panel path (dequant_panel), the driver widens a task's rows of scales
    // into an f32 block and hands the kernel a view rebased to the task's
    // first row (rebase_rows).
    const uint16_t* scales16 = nullptr;
};

// Scale i of a quantized weight, from f32 or f16 storage (f16 widened
// exactly, as F16C and NEON's fcvt do). The reference kernels read scales
// through it; the SIMD ones convert with F16C or fcvt.
inline float scale_at(const WeightView& w, size_t i) {
    if (!w.scales16) return w.scales[i];
    const uint32_t h = w.scales16[i], e = (h >> 10) & 0x1f, m = h & 0x3ff;
    // scales are finite and > 0: a normal (e > 0) or a subnormal (e == 0) f16
    uint32_t bits;
    if (e != 0) {
        bits = ((e + 112) << 23) | (m << 13);
    } else {
        int shift = 0;
        uint32_t mm = m;
        while (!(mm & 0x400)) { mm <<= 1; ++shift; }
        bits = (uint32_t(113 - shift) << 23) | ((mm & 0x3ff) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// Address of scale i (f32 or f16 storage), for prefetches.
inline const char* scale_addr(const WeightView& w, size_t i) {
    return w.scales16 ? reinterpret_cast<const char*>(w.scales16 + i) : reinterpret_cast<const char*>(w.scales + i);
}

// The rows [n0, n0 + nr) of a w with f16 scales as a view of nr rows
// starting at row 0, its scales `widened` (the f32 block of those rows,
// [nr, gstride]). The caller offsets its own row-indexed arrays (y, bias) by n0.
inline WeightView rebase_rows(const WeightView& w, size_t n0, size_t gstride, const float* widened) {
    WeightView v = w;
    v.data = static_cast<const uint8_t*>(w.data) + n0 * w.row_bytes;
    v.scales = widened;
    v.scales16 = nullptr;
    v.zps = w.zps ? static_cast<const void*>(static_cast<const uint8_t*>(w.zps) + n0 * gstride) : nullptr;
    return v;
}

// Scale entries per row of w for a kernel call over K columns.
inline size_t scale_stride(const WeightView& w, size_t K) { return w.gstride ? w.gstride : K / w.group; }

// For a quantized w over K columns whose group G does not divide K: k1, the
// columns of whole groups, and the view of the last, shorter group (columns
// [k1, K) of every row, one group of K - k1, gstride = ceil(K / G)). The
// GEMM drivers run the two parts as two products.
inline WeightView last_group_view(const WeightView& w, size_t K, size_t* k1) {
    const size_t ng = (K + w.group - 1) / w.group;
    *k1 = (ng - 1) * w.group;
    WeightView t = w;
    t.group = K - *k1;
    t.gstride = ng;
    t.data = static_cast<const uint8_t*>(w.data) + (w.fmt == WFormat::i4 ? *k1 / 2 : *k1);
    t.scales = w.scales ? w.scales + (ng - 1) : nullptr;
    t.scales16 = w.scales16 ? w.scales16 + (ng - 1) : nullptr;
    t.zps = w.zps ? static_cast<const void*>(static_cast<const uint8_t*>(w.zps) + (ng - 1)) : nullptr;
    return t;
}

// Arguments of one GEMM call: Y[M, N] = X[M, K] · W[N, K]^T (+ bias[N]).
struct GemmArgs {
    const float* x;  size_t ldx;   // X[M, K], row stride ldx >= K (elements)
    size_t M, N, K;
    WeightView w;
    const float* bias;             // [N] or nullptr
    float* y;        size_t ldy;   // Y[M, N], row stride ldy >= N (elements)
    // Row-invariant mode (driver, gemm_ops.h): a row's result does not
    // depend on M. Every M takes the gemv path, whose tiles then give each
    // Y[m, n] one summation order whatever the rows they share (decode
    // rows), or, with invariant_panel, the panel path with K blocks that do
    // not depend on M (prompt rows: every Y[m, n] is one FMA chain per block).
    bool row_invariant = false;
    bool invariant_panel = false;
};

// Arguments of one W8A8 int8 GEMM call (Kernels::gemm_w8a8): int8 weight codes
// B[N, K] (symmetric, in [-127, 127]) times activation codes qx[M, K] (also in
// [-127, 127]) passed BIASED as unsigned bytes a = qx + 128 (1..255), the
// unsigned operand of VNNI's vpdpbusd; the other ISAs subtract the bias back
// (a ^ 0x80). The int32 sums are exact (no saturation, any order) as long as
// K * 127 * 127 < 2^31, i.e. K <= kW8A8MaxK.
//   acc[m, n] = sum_k qx[m, k] * B[n, k]
// Raw mode (c != nullptr): C[m, n] = acc (int32), the float fields are unused.
// Fused mode (c == nullptr): in exactly this order, in float,
//   v = ((float)acc * sa[m]) * sb[n];  if (accumulate) v = v + Y[m, n];
//   if (bias) v = v + bias[n];  Y[m, n] = v
// so every ISA returns bit-identical int32 sums and bit-identical floats.
//
// Packed activations (ap, optional): the same biased codes regrouped for an
// outer-product kernel whose vector lanes run over 16 rows of X. Rows come
// in blocks of 16; block b is Kq = ceil(K / 4) groups of 64 bytes, and byte
// j of row i in group q is a[16 b + i, 4 q + j]:
//   ap[b * 64 Kq + q * 64 + 4 i + j] = a[16 b + i, 4 q + j],
// with 0 for rows >= M and columns >= K (an unsigned 0 adds nothing to a
// sum, and the bias compensation covers the real K only). w8a8_pack_a in
// ops/w8a8_ops.h builds it. A kernel reads ap only when it is not nullptr
// and M >= Kernels::w8a8_packed_min_m; the result is the same either way.
struct W8A8Args {
    const uint8_t* a; size_t lda;  // biased activation codes [M, K], row stride lda
    const uint8_t* ap;             // the same, packed as above, or nullptr
    const float* sa;               // [M] activation scales (fused mode)
    size_t M, N, K;
    const int8_t* b; size_t ldb;   // weight codes [N, K], row stride ldb
    const float* sb;               // [N] weight scales (fused mode)
    const int32_t* b_rowsum;       // [N] sum_k B[n, k] (VNNI bias compensation)
    const float* bias;             // [N] or nullptr (fused mode)
    bool accumulate;               // fused mode: add the previous Y[m, n]
    float* y; size_t ldy;          // fused output [M, N]
    int32_t* c; size_t ldc;        // raw output [M, N], or nullptr for fused mode
};
constexpr size_t kW8A8MaxK = 133144;  // 133144 * 127 * 127 < 2^31 <= 133145 * 127 * 127

// Arguments of one W4A8 call (Kernels::gemm_w4a8): an int4 weight W[N, K]
// (WeightView with fmt i4, group G: two's-complement nibbles when zps is
// nullptr, else unsigned nibbles u with zero points z) times int8
// activation codes xq[M, K] in [-127, 127], quantized per BLOCK of 32
// consecutive values of a row (block b = values [32 b, 32 b + 32), the
// last one shorter when 32 does not divide K) with scale sx[m, b].
//
// Activation layout, per row (row stride ldx bytes, ldx >= 128 ceil(K/128)):
// chunks of 128 values, the even values first, then the odd ones,
//   xc[m ldx + 128 c + j]      = xq[m, 128 c + 2 j]       (j < 64)
//   xc[m ldx + 128 c + 64 + j] = xq[m, 128 c + 2 j + 1]
// and 0 past K. This is the order of the nibbles of 64 packed weight bytes
// (low nibble = even k), so a kernel splits a weight vector into its low
// and high nibbles and multiplies each against a contiguous load of xc.
//
// The spec (ref): a segment is the intersection of a weight group g and an
// activation block b; per output, in float, in k order,
//   y[m, n] = sum over segments of (s[n, g] * sx[m, b]) * (float) D,
//   D = sum_{k in segment} q[n, k] * xq[m, k]   (exact int32),
// where q is the signed nibble (symmetric) or u - z[n, g] (asymmetric);
// then y = y + bias[n] if bias.
//
// SIMD kernels take the ref path unless G % 32 == 0 and (G == 32, G == 64
// or G % 128 == 0). They take an unsigned weight operand u' = u
// (asymmetric) or nibble ^ 8 = q + 8 (symmetric) and remove the offset with
// the per-group activation sums tg:
//   y = sum (float) D' * (s[n, g] * sx[m, b]) - sum_g (s[n, g] * z'[n, g]) * tg[m, g]
// (z' = 8 if symmetric, else z), D' an exact int32 sum of 8 values per lane
// (NEON: rescaled per lane with sxl) or of a whole block (AVX-512 and AVX2:
// the four-chain order written in x86/w4a8_avx512_rows.cpp). They differ
// from the ref by float summation order only.
struct W4A8Args {
    const int8_t* xc; size_t ldx;  // activation codes, layout above
    const float* sx; size_t ldsx;  // [M, ceil(K/32)] block scales
    const float* sxl; size_t ldsxl;// [M, 16 ceil(K/128)] lane scales sxl[m, l] = sx[m, l / 4] (lane l =
                                   // values [8 l, 8 l + 8)), 0 past K; only read when K % 32 == 0
    const float* tg; size_t ldtg;  // [M, K/G] tg[m, g] = sum_{k in g} sx[m, k / 32] * xq[m, k]
    size_t M, N, K;
    WeightView w;                  // fmt i4, group G (even), K even; when G does not divide K the
                                   // last group is shorter (gstride = ceil(K / G)) and SIMD kernels
                                   // take the ref path (the driver splits such products instead)
    const float* bias;             // [N] or nullptr
    float* y; size_t ldy;          // [M, N]
};

// Keys per block of the attention key cache layout (see AttnRowsArgs).
constexpr size_t kAttnBlock = 64;

// Arguments of one Kernels::attn_rows call: causal attention of `rows`
// query vectors of one kv head over that head's cached keys and values.
//
// Key layout ("blocked, transposed"): positions in blocks of kAttnBlock;
// block b of this head is kt + b * kt_stride, a [hd][kAttnBlock] array whose
// element [i][jj] is dimension i of the key at position kAttnBlock * b + jj
// (so one dimension of 64 keys is one contiguous run, the lanes of the
// score vectors). Values are rows: position j at v + j * ldv, hd floats.
//
// The spec (ref), per row r independently, with lim = lim[r] >= 1 visible
// positions 0 .. lim - 1, all in f32:
//   m = -inf, l = 0, o[0 .. hd) = 0
//   for each block b with kAttnBlock * b < lim (nb = its visible keys):
//     s_jj = 0; for i in 0 .. hd: s_jj = fma(q[i], K[i][jj], s_jj); s_jj *= scale
//     mb = max_jj s_jj;  mn = (b == 0) ? mb : max(m, mb)
//     if b > 0: c = attn_exp(m - mn); l *= c; o[i] *= c
//     for jj in 0 .. nb, in order:
//       p = attn_exp(s_jj - mn); l += p; o[i] = fma(p, V[jj][i], o[i])
//     m = mn
//   out[i] = o[i] / l
// attn_exp is the f32 exponential spelled out in attn_exp.h; every
// ISA evaluates the same operations, so every ISA returns the reference's
// bits. A row's result depends only on its q, lim and the cache: not on
// the other rows of the call, nor on how a caller groups rows into calls
// (prefill and decode of the same position agree bit for bit).
struct AttnRowsArgs {
    const float* const* q;   // [rows] query vectors, hd floats each
    float* const* out;       // [rows] outputs, hd floats each
    const size_t* lim;       // [rows] visible positions, >= 1
    size_t rows;
    const float* kt; size_t kt_stride;  // key blocks (layout above), floats between blocks
    const float* v; size_t ldv;         // value rows
    size_t hd;
    float scale;
    float* scratch;          // attn_scratch_floats(rows, hd) floats
};
// Scratch floats attn_rows needs for `rows` rows of hd: per row o[hd], m, l,
// four rows of p for one block, and one block of value rows [kAttnBlock][hd]
// (where the AVX2 kernel copies them; see attn_avx2.cpp).
inline size_t attn_scratch_floats(size_t rows, size_t hd) { return rows * (hd + 2) + 4 * kAttnBlock + kAttnBlock * hd; }

// Bound of gemm_panel_dq's extra relative error (see there): three
// products of 16-bit splits, each within 2^-16 of its part.
constexpr double kPanelDqRelErr = 4.0 / 65536.0;

// X[M, K] split for Kernels::gemm_panel_dq, in tiles of 1 KiB: for each
// block of 16 rows (M rounded up; rows past M are zeros) and line s of 32
// values of k (zeros past K), 16 lines of 64 bytes, line q = the bf16 pairs
// (X[m, 32 s + 2 q], X[m, 32 s + 2 q + 1]) of the 16 rows m; the hi parts
// of every block, then the lo parts. 64-byte aligned.
struct SplitX {
    void* data = nullptr;
    size_t M = 0, K = 0;
    size_t rows() const { return (M + 15) / 16 * 16; }
    size_t lines() const { return (K + 31) / 32; }
    size_t bytes() const { return 2 * rows() * lines() * 64; }
};

// X[M, K] as exact int8 digits for Kernels::gemm_i8x. Row m (all finite)
// gets e_m = floor(log2 max_k |x[m, k]|) - 5 (0 for a zero row), so that
// u = x 2^-e_m has |u| < 64, and four signed digits per value, in order:
//   d_i = round_half_even(u_i), u_{i+1} = 128 (u_i - d_i)   (u_1 = u)
// (every step exact in f32; |d_i| <= 64), so x = 2^e (d_1 + d_2 2^-7 +
// d_3 2^-14 + d_4 2^-21) + r with |r| <= 2^-27 max|x_row|. A row holding
// inf or NaN is flagged in bad[m] and gets no digits (zeros). Layout: for
// each tile of 4 rows (rows past M are zeros) and step s of 64 values of k
// (zeros past K), 1 KiB: byte 64 q + 4 c + t = digit (c % 4) + 1 of row
// 4 tile + c / 4 at k = 64 s + 4 q + t (tdpbssd's B operand: the four
// digits of a row in adjacent columns). 64-byte aligned.
struct DigitX {
    void* data = nullptr;
    int32_t* exps = nullptr;  // [M]: e_m
    uint8_t* bad = nullptr;   // [M]: 1 = the row has inf or NaN
    size_t M = 0, K = 0;
    size_t tiles() const { return (M + 3) / 4; }
    size_t steps() const { return (K + 63) / 64; }
    size_t bytes() const { return tiles() * steps() * 1024; }
};
// Largest K for gemm_i8x: the digit sums stay exact in int32 (64 * 127 * K
// < 2^31) and their weighted sum exact in double.
constexpr size_t kI8xMaxK = 262144;
// Bound of gemm_i8x's error beyond the f32 rounding of its exact sum, as a
// fraction of max_k |x[m, k]| * sum_k |w[n, k]| (the digits' remainder).
constexpr double kI8xAbsErr = 1.0 / 134217728.0;  // 2^-27

// ---- norms and rotary embeddings (Kernels::norm_rows, Kernels::rope_rows)
enum class NormKind { rms, layer };

// Per row of D values, optionally after the residual add that precedes the
// norm in a pre-norm block:
//   with residual: x[i] = x[i] + residual[i]   (f32, written back into x)
//   rms:   ss = sum x^2;  inv = 1 / sqrt(ss / D + eps);  out = f32((x inv) w)
//   layer: mean = sum x / D;  v = sum (x - mean)^2;  inv = 1 / sqrt(v / D + eps)
//          y = (x - mean) inv;  y = y w (if w);  y = y + b (if b);  out = f32(y)
// Sums and products in double, each operation rounded on its own (no fused
// multiply-add, except for x * x, which is exact in double); a sum over i
// is eight partial sums (value i goes to partial i % 8, each in index
// order) added as ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)): one
// fixed order, so results depend neither on the ISA, nor on the thread
// count, nor on the rows around.
struct NormArgs {
    NormKind kind;
    float* x;               // [rows, D]
    const float* residual;  // [rows, D] or nullptr
    const float* w;         // [D]; required for rms, optional for layer
    const float* b;         // [D] or nullptr (layer only)
    float* out;             // [rows, D]; may be x (then the sum x + residual is not kept)
    size_t rows, D;
    double eps;
};

// Rotary embeddings in place on x [T, n_heads * stride] at positions
// pos0 .. pos0 + T - 1: per head, the first hd = 2 * half dimensions rotate
// in pairs (a, b) = (i, i + half) (rotate-half, HF Llama) or (2i, 2i + 1)
// (interleaved: llama2.c, GPT-J), by the angle of pair i at that position:
//   x[a] = f32(x0 c - x1 s),  x[b] = f32(x0 s + x1 c)   (double arithmetic,
//   each product and the sum rounded on their own)
// with c = cos[p * half + i], s = sin[p * half + i] (double tables, as
// lib/nn/rope.ts keeps them): the operations of its JavaScript loop.
struct RopeArgs {
    float* x;
    size_t T, n_heads, stride, half, pos0;
    const double* cos;
    const double* sin;
    bool interleaved;
};

struct Kernels {
    Isa isa;
    const char* name;

    // ---- conversions (exact) ---------------------------------------------
    // f16 -> f32 and bf16 -> f32 for n values (IEEE half incl. subnormals, inf, nan).
    void (*f16_to_f32)(const uint16_t* src, float* dst, size_t n);
    void (*bf16_to_f32)(const uint16_t* src, float* dst, size_t n);

    // ---- quantization element loops ------------------------------------
    // Per-group min and max of x[n_groups * G]: mn[g], mx[g].
    // Returns the index of the first NaN/Inf value, or SIZE_MAX if all finite
    // (mn/mx are then valid).
    size_t (*minmax)(const float* x, size_t n_groups, size_t G, float* mn, float* mx);

    // Per-group absolute maximum of x[n_groups * G]: amax[g]. Same return value as minmax.
    size_t (*absmax)(const float* x, size_t n_groups, size_t G, float* amax);

    // q[g*G + i] = clamp(round_half_even(x[g*G+i] / scale[g]) + zp[g], qmin, qmax)
    // zp == nullptr means 0. scale[g] is finite and > 0 (the caller guarantees it).
    void (*quantize)(const float* x, size_t n_groups, size_t G, const float* scale,
                     const int32_t* zp, int32_t qmin, int32_t qmax, int8_t* q);

    // y[g*G + i] = (float)(q[g*G+i] - zp[g]) * scale[g]   (zp == nullptr means 0)
    void (*dequantize_i8)(const int8_t* q, size_t n_groups, size_t G, const float* scale,
                          const int32_t* zp, float* y);

    // Same for a packed int4 row segment: n_groups*G values (G even) starting
    // at a byte boundary of `packed`. is_signed selects two's-complement
    // nibbles (symmetric) or unsigned 0..15 (asymmetric).
    void (*dequantize_i4)(const uint8_t* packed, size_t n_groups, size_t G, const float* scale,
                          const int32_t* zp, bool is_signed, float* y);

    // ---- sub-byte packing -----------------------------------------------
    // n values (each already in range: -8..7 or 0..15) -> ceil(n/2) bytes.
    void (*pack_i4)(const int8_t* q, size_t n, uint8_t* packed);
    // ceil(n/2) bytes -> n values; is_signed sign-extends each nibble.
    void (*unpack_i4)(const uint8_t* packed, size_t n, bool is_signed, int8_t* q);
    // n values in 0..3 -> ceil(n/4) bytes, element 4i+j in bits 2j..2j+1.
    void (*pack_i2)(const int8_t* q, size_t n, uint8_t* packed);
    void (*unpack_i2)(const uint8_t* packed, size_t n, int8_t* q);

    // ---- GEMM -----------------------------------------------------------
    // Small-M path (decode): for m in [m0, m0+mc) (mc <= 8) and n in [n0, n1),
    // Y[m, n] = sum_k X[m, k] * W[n, k] (+ bias[n]), every weight format,
    // weights dequantized in registers (never to memory). Contract: with
    // a.row_invariant, Y[m, n] does not depend on m0 or mc (the rows sharing
    // a tile), so the driver's row-invariant mode can run any M through it
    // (without it a kernel may pick a faster order for mc <= 2).
    void (*gemv)(const GemmArgs& a, size_t m0, size_t mc, size_t n0, size_t n1);

    // Large-M path (prefill), f32 micro-kernel over a panel P of nr rows of
    // already-f32 weights: for m in [0, M), j in [0, nr):
    //   Y[m, j] (accumulate ? += : =) sum_{k < kc} X[m, k] * P[j, k]
    // X has row stride ldx, P row stride ldp, Y row stride ldy (all in floats).
    void (*gemm_panel_f32)(const float* x, size_t ldx, size_t M, const float* p, size_t ldp,
                           size_t nr, size_t kc, float* y, size_t ldy, bool accumulate);
    // Split-bf16 panels for int8 and int4 weights (after dequant_panel),
    // amx table only (nullptr elsewhere; float weights never take them).
    // The driver splits X once per GEMM call with dq_split_x (layout on
    // SplitX; blocks [b0, b1) of 16 rows per call, so the pool can share
    // them out), then each task calls
    //   gemm_panel_dq: Y[m, j] (accumulate ? += : =) sum_{k < kc}
    //       X[m0 + m, k0 + k] * P[j, k]   for m < mc, j < nr
    // (m0 a multiple of 16, k0 of 32; y points at row m0). Precision: x and
    // p are each split into two bf16 and the lo * lo product dropped, so
    // |error| <= kPanelDqRelErr * sum_k |X P| on top of an f32 summation's
    // (tested), against the weights' own rounding of 2^-8 (int8) or more;
    // subnormal inputs count as 0 (the unit's DAZ). Y[m, j] depends on row m
    // of X only, not on M, m0 or mc.
    void (*dq_split_x)(const float* x, size_t ldx, size_t M, size_t K, const SplitX& xs, size_t b0, size_t b1);
    void (*gemm_panel_dq)(const SplitX& xs, size_t m0, size_t mc, size_t k0, const float* p, size_t ldp,
                          size_t nr, size_t kc, float* y, size_t ldy, bool accumulate);
    // The same for symmetric int8 weights with one scale per row (int8's
    // default, per channel), from the codes themselves (exact in bf16, so
    // no panel is decoded and x is the only split operand: two products per
    // value): Y[m, j] (+)= s[n0 + j] * sum_k X[m0 + m, k0 + k] *
    // q[n0 + j, k0 + k], with w's f32 scales at w.scales[n] (one per row).
    // Same error bound and row invariance.
    void (*gemm_panel_dq_i8)(const SplitX& xs, size_t m0, size_t mc, size_t k0, const WeightView& w, size_t n0,
                             size_t nr, size_t kc, float* y, size_t ldy, bool accumulate);
    // The same for int4 weights (any scheme, G a multiple of 32; gs scale
    // entries per row), decoded straight into the split operand through a
    // per-group table of the 16 values: bit-identical to dequant_panel then
    // gemm_panel_dq, without the f32 panel.
    void (*gemm_panel_dq_i4)(const SplitX& xs, size_t m0, size_t mc, size_t k0, const WeightView& w, size_t gs,
                             size_t n0, size_t nr, size_t kc, float* y, size_t ldy, bool accumulate);

    // Fill a panel for gemm_panel_f32: P[j, k] = W[n0 + j, k0 + k] as f32 for
    // j < nr, k < kc (dequantized for i8/i4, converted for f16/bf16, copied
    // for f32). k0 and kc are multiples of the group size G when W is
    // quantized, and even for i4.
    void (*dequant_panel)(const WeightView& w, size_t n0, size_t nr, size_t k0, size_t kc,
                          float* p, size_t ldp);
    // Largest M for which the GEMM driver runs int4 weights (f32
    // activations, not row-invariant) through gemv rather than the panel
    // path: where this ISA's panel kernel, whose vectors run over 16 rows of
    // X, overtakes gemv's re-decoding of the weights every 4 rows.
    size_t gemv_max_m_i4;
    // The same for int8 weights.
    size_t gemv_max_m_i8;

    // ---- int8 weights x f32 activations in exact int8 digits --------------
    // Symmetric int8 weights with one scale per row (per channel; f32 or f16
    // scales) and K <= kI8xMaxK, any M. i8x_split writes X's digits (DigitX)
    // once per call; then each task calls gemm_i8x for columns [n0, n1):
    //   Y[m, n] = f32( s[n] 2^e_m sum_k q[n, k] (d_1 + d_2 2^-7 + d_3 2^-14 +
    //             d_4 2^-21)[m, k] )  (+ bias[n], in f32)
    // the sum exact (int32 digit sums, added in double; the product with the
    // scale rounded in double, then to f32), so |Y - (X W^T + bias)| <=
    // 2^-23 (|X W^T| + |bias|) + kI8xAbsErr max_k |x[m, k]| sum_k |w[n, k]|
    // (tested against float64). Rows flagged
    // bad are not written. Y[m, n] depends on rows m of X and n of W only.
    // nullptr: the ISA has none (the reference is ref::gemm_i8x, the spec).
    void (*i8x_split)(const float* x, size_t ldx, size_t M, size_t K, const DigitX& dx);
    void (*gemm_i8x)(const DigitX& dx, const WeightView& w, size_t n0, size_t n1, const float* bias, float* y,
                     size_t ldy);

    // ---- W8A8 int8 GEMM (dynamic per-row activation quantization) ---------
    // For output columns n in [n0, n1) and every row m < M, the int32 sums
    // and (fused mode) the rescale documented on W8A8Args. Exact integer
    // arithmetic: results do not depend on the ISA or on how [0, N) is split.
    void (*gemm_w8a8)(const W8A8Args& a, size_t n0, size_t n1);
    // Smallest M for which gemm_w8a8 reads W8A8Args::ap (so the driver packs
    // the activations); SIZE_MAX for kernels that never do.
    size_t w8a8_packed_min_m;
    // One block of the packed layout (see W8A8Args): rows [0, rows) of
    // a (row stride lda, rows <= 16) -> ap[ceil(K / 4) * 64], rows >= rows
    // and columns >= K zero. Exact byte moves: identical on every ISA.
    void (*w8a8_pack_a)(const uint8_t* a, size_t lda, size_t rows, size_t K, uint8_t* ap);

    // ---- W4A8: int4 weights x int8 activations per block of 32 ----------
    // For output columns n in [n0, n1) and every row m < M, y[m, n] as
    // documented on W4A8Args.
    void (*gemm_w4a8)(const W4A8Args& a, size_t n0, size_t n1);
    // The same product by a kernel tiled for several rows of X, with the
    // same bits as gemm_w4a8 for every output (so the driver may switch by
    // M and a row's result still never depends on M), and the smallest M
    // from which it is the faster of the two (SIZE_MAX: it is gemm_w4a8
    // itself, as on ISAs without a separate one).
    void (*gemm_w4a8_rows)(const W4A8Args& a, size_t n0, size_t n1);
    size_t w4a8_rows_min_m;
    // The activation codes of one row in W4A8Args' chunked layout, for
    // `chunks` whole chunks of 128 values: q[128 chunks] (natural order)
    // -> xc[128 c + j] = q[128 c + 2 j], xc[128 c + 64 + j] = q[128 c + 2 j + 1]
    // (j < 64), and the exact sum of each block of 32, bsum[b] = q[32 b] +
    // .. + q[32 b + 31] (b < 4 chunks). Exact: identical on every ISA.
    void (*w4a8_chunk_x)(const int8_t* q, size_t chunks, int8_t* xc, int32_t* bsum);

    // ---- transformer glue -------------------------------------------------
    // Causal attention over a key/value cache, as specified on AttnRowsArgs
    // (bit-identical on every ISA).
    void (*attn_rows)(const AttnRowsArgs& a);
    // g[i] = (g[i] / (1 + attn_exp(-g[i]))) * u[i] for i < n, in f32: SwiGLU's
    // silu(gate) * up (bit-identical on every ISA).
    void (*silu_mul)(float* g, const float* u, size_t n);
    // GELU, tanh form ("gelu_new"), in place for i < n, in f32:
    //   y = fma(kGeluC, (x * x) * x, x);  x = x / (1 + attn_exp(kGeluK * y))
    // with kGeluC = 0.044715 and kGeluK = -2 sqrt(2 / pi): the identity
    // 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), which has no cancellation
    // (bit-identical on every ISA).
    void (*gelu_tanh)(float* x, size_t n);
    // The norms of rows r0 .. r1 - 1 (NormArgs; bit-identical on every ISA).
    void (*norm_rows)(const NormArgs& a, size_t r0, size_t r1);
    // Rotary embeddings of positions t0 .. t1 - 1 of the call (RopeArgs;
    // bit-identical on every ISA).
    void (*rope_rows)(const RopeArgs& a, size_t t0, size_t t1);

    // ---- float64 linear algebra (calibrated quantization) ----------------
    // The product under the blocked Cholesky factor and triangular inverse
    // of GPTQ's Hessian (ops/linalg_ops.cpp): for i < M, j < N,
    //   C[i, j] -= sum_{k < kc} A[i, k] * B[j, k]
    // A [M, kc] with row stride lda, B [N, kc] with row stride ldb (both
    // k-contiguous: the rows of one row-major matrix), C row stride ldc.
    // Summation order is the kernel's (SIMD variants agree with the
    // reference to rounding, not bit for bit).
    void (*dgemm_nt_sub)(const double* a, size_t lda, size_t M, const double* b, size_t ldb, size_t N,
                         size_t kc, double* c, size_t ldc);
};

// Per-ISA tables (defined in the kernel files; a table is only linked for
// the ISAs the build targets: ref always, x86 ones on x64, neon on arm64).
extern const Kernels kernels_ref;
#if defined(__x86_64__) || defined(_M_X64)
extern const Kernels kernels_avx2;
extern const Kernels kernels_avx512;
extern const Kernels kernels_amx;
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
extern const Kernels kernels_neon;
#endif

}  // namespace qk
