// AArch64 Advanced SIMD GEMM kernels: Y[M, N] = X[M, K] · W[N, K]^T.
// Correctness first (tested under qemu); the structure mirrors the x86 ones.
//
//   gemv            mc <= 4 rows of X against R = 4 rows of W at a time,
//                   4 floats per vector, weights decoded in registers:
//                     f32/f16/bf16: load (+ fcvtl / shll #16),
//                     i8:  8 per step, sxtl, - zp (int16), sxtl, scvtf, * scale,
//                     i4:  16 per step (8 bytes), nibbles by and/shift (signed
//                          shifts for the symmetric format); vld2q splits X
//                          into the even/odd elements the low/high nibbles
//                          hold, so no weight shuffle is needed.
//                   Per-group scale / zero point are hoisted out of the k
//                   loop; decoded weights equal dequant_panel's bit for bit.
//   gemm_panel_f32  register-tiled dot-product kernel: MR = 4 rows of X x
//                   NR = 4 rows of P, 16 accumulators along K, horizontal
//                   sums at the end; no packing.
//   dequant_panel   row by row, group by group (vst2q re-interleaves int4).
// Tails are copied into zero-padded stack buffers and run through the same
// vector code (zero lanes contribute 0 * finite = 0); dequant_panel tails are
// scalar with the same single-multiplication formula.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cstring>

#include "../isa.h"

namespace qk {
namespace neon {

// Scale gi of a quantized weight as a float: f32 storage, or f16
// (WeightView::scales16, read directly: a branch per group and row that
// always goes the same way), widened exactly by fcvt.
static inline float scale_of(const WeightView& w, size_t gi) {
    if (!w.scales16) return w.scales[gi];
    __fp16 h;
    std::memcpy(&h, w.scales16 + gi, sizeof h);
    return float(h);
}

namespace {

static inline void copy_bytes(uint8_t* dst, const uint8_t* src, size_t n) {
    for (size_t i = 0; i < n; ++i) dst[i] = src[i];
}

// n <= 4 floats from src, zero filled.
static inline float32x4_t load_f32_tail(const float* src, size_t n) {
    float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (size_t i = 0; i < n; ++i) buf[i] = src[i];
    return vld1q_f32(buf);
}

// ---- float weight formats: 4 values of row at k ----------------------------
template <int F>
static inline float32x4_t load_wf(const uint8_t* row, size_t k) {
    if constexpr (F == static_cast<int>(WFormat::f32)) {
        return vld1q_f32(reinterpret_cast<const float*>(row) + k);
    } else if constexpr (F == static_cast<int>(WFormat::f16)) {
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row + 2 * k))));
    } else {
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row + 2 * k)), 16));
    }
}

template <int F>
static inline float32x4_t load_wf_tail(const uint8_t* row, size_t k, size_t n) {
    constexpr size_t esz = (F == static_cast<int>(WFormat::f32)) ? 4 : 2;
    alignas(16) uint8_t buf[16] = {};
    copy_bytes(buf, row + esz * k, esz * n);
    return load_wf<F>(buf, 0);
}

// Signed 16-bit values -> two float vectors, each * s.
static inline void s16_to_f32(int16x8_t q, float32x4_t s, float32x4_t& lo, float32x4_t& hi) {
    lo = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q))), s);
    hi = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(q))), s);
}

// 8 int8 weights -> (q - zp) * s as two vectors (elements 0..3, 4..7).
template <bool ASYM>
static inline void dec_i8(const int8_t* p, int16x8_t zp, float32x4_t s, float32x4_t& w0, float32x4_t& w1) {
    int16x8_t q = vmovl_s8(vld1_s8(p));
    if constexpr (ASYM) q = vsubq_s16(q, zp);
    s16_to_f32(q, s, w0, w1);
}

// 8 bytes of packed int4 -> (q - zp) * s for the low nibbles (elements
// 0, 2, .., 14: e0 = 0..6, e1 = 8..14) and the high nibbles (o0, o1).
template <bool ASYM>
static inline void dec_i4(const uint8_t* p, int16x8_t zp, float32x4_t s, float32x4_t& e0, float32x4_t& e1,
                          float32x4_t& o0, float32x4_t& o1) {
    const uint8x8_t b = vld1_u8(p);
    int16x8_t ql, qh;
    if constexpr (ASYM) {
        ql = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vand_u8(b, vdup_n_u8(15)))), zp);
        qh = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vshr_n_u8(b, 4))), zp);
    } else {
        const int8x8_t sb = vreinterpret_s8_u8(b);
        ql = vmovl_s8(vshr_n_s8(vshl_n_s8(sb, 4), 4));  // sign-extend the low nibble
        qh = vmovl_s8(vshr_n_s8(sb, 4));
    }
    s16_to_f32(ql, s, e0, e1);
    s16_to_f32(qh, s, o0, o1);
}

template <int MC, int R>
struct Rows {
    const float* x[MC];
    const uint8_t* w[R];
    Rows(const GemmArgs& a, size_t m0, size_t n) {
        for (int m = 0; m < MC; ++m) x[m] = a.x + (m0 + m) * a.ldx;
        for (int r = 0; r < R; ++r) w[r] = static_cast<const uint8_t*>(a.w.data) + (n + r) * a.w.row_bytes;
    }
};

template <int MC, int R>
static inline void store_tile(const GemmArgs& a, size_t m0, size_t n, float32x4_t (&acc)[MC][R]) {
    for (int m = 0; m < MC; ++m) {
        float* y = a.y + (m0 + m) * a.ldy + n;
        for (int r = 0; r < R; ++r) {
            float v = vaddvq_f32(acc[m][r]);
            if (a.bias) v += a.bias[n + r];
            y[r] = v;
        }
    }
}

// ---- gemv tiles ------------------------------------------------------------
template <int F, int MC, int R, bool L1 = false>  // (L1: unused here, see gemm_dispatch.inc)
static void gemv_float_tile(const GemmArgs& a, size_t m0, size_t n) {
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K;
    float32x4_t acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = vdupq_n_f32(0.0f);
    size_t k = 0;
    for (; k + 4 <= K; k += 4) {
        float32x4_t xv[MC];
        for (int m = 0; m < MC; ++m) xv[m] = vld1q_f32(rw.x[m] + k);
        for (int r = 0; r < R; ++r) {
            const float32x4_t wv = load_wf<F>(rw.w[r], k);
            for (int m = 0; m < MC; ++m) acc[m][r] = vfmaq_f32(acc[m][r], xv[m], wv);
        }
    }
    if (k < K) {
        float32x4_t xv[MC];
        for (int m = 0; m < MC; ++m) xv[m] = load_f32_tail(rw.x[m] + k, K - k);
        for (int r = 0; r < R; ++r) {
            const float32x4_t wv = load_wf_tail<F>(rw.w[r], k, K - k);
            for (int m = 0; m < MC; ++m) acc[m][r] = vfmaq_f32(acc[m][r], xv[m], wv);
        }
    }
    store_tile<MC, R>(a, m0, n, acc);
}

template <bool ASYM, int MC, int R>
static void gemv_i8_tile(const GemmArgs& a, size_t m0, size_t n) {
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K, G = a.w.group, ngr = K / G, gpr = scale_stride(a.w, K);  // groups here, scale row stride
    const int8_t* zps = static_cast<const int8_t*>(a.w.zps);
    float32x4_t acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = vdupq_n_f32(0.0f);
    for (size_t g = 0; g < ngr; ++g) {
        float32x4_t s[R];
        int16x8_t z[R];
        for (int r = 0; r < R; ++r) {
            const size_t gi = (n + r) * gpr + g;
            s[r] = vdupq_n_f32(scale_of(a.w, gi));
            z[r] = vdupq_n_s16(ASYM ? zps[gi] : 0);
        }
        const size_t kend = (g + 1) * G;
        for (size_t k = g * G; k < kend; k += 8) {
            const size_t cnt = (kend - k < 8) ? kend - k : 8;
            float32x4_t x0[MC], x1[MC];
            for (int m = 0; m < MC; ++m) {
                if (cnt == 8) {
                    x0[m] = vld1q_f32(rw.x[m] + k);
                    x1[m] = vld1q_f32(rw.x[m] + k + 4);
                } else {
                    x0[m] = load_f32_tail(rw.x[m] + k, cnt < 4 ? cnt : 4);
                    x1[m] = load_f32_tail(rw.x[m] + k + 4, cnt > 4 ? cnt - 4 : 0);
                }
            }
            for (int r = 0; r < R; ++r) {
                alignas(8) int8_t buf[8] = {};
                const int8_t* src = reinterpret_cast<const int8_t*>(rw.w[r]) + k;
                if (cnt < 8) {
                    copy_bytes(reinterpret_cast<uint8_t*>(buf), reinterpret_cast<const uint8_t*>(src), cnt);
                    src = buf;
                }
                float32x4_t w0, w1;
                dec_i8<ASYM>(src, z[r], s[r], w0, w1);
                for (int m = 0; m < MC; ++m) {
                    acc[m][r] = vfmaq_f32(acc[m][r], x0[m], w0);
                    acc[m][r] = vfmaq_f32(acc[m][r], x1[m], w1);
                }
            }
        }
    }
    store_tile<MC, R>(a, m0, n, acc);
}

template <bool ASYM, int MC, int R>
static void gemv_i4_tile(const GemmArgs& a, size_t m0, size_t n) {
    const Rows<MC, R> rw(a, m0, n);
    const size_t K = a.K, G = a.w.group, ngr = K / G, gpr = scale_stride(a.w, K);  // groups here, scale row stride
    const uint8_t* zps = static_cast<const uint8_t*>(a.w.zps);
    float32x4_t acc[MC][R];
    for (int m = 0; m < MC; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = vdupq_n_f32(0.0f);
    for (size_t g = 0; g < ngr; ++g) {
        float32x4_t s[R];
        int16x8_t z[R];
        for (int r = 0; r < R; ++r) {
            const size_t gi = (n + r) * gpr + g;
            s[r] = vdupq_n_f32(scale_of(a.w, gi));
            z[r] = vdupq_n_s16(ASYM ? zps[gi] : 0);
        }
        const size_t kend = (g + 1) * G;
        for (size_t k = g * G; k < kend; k += 16) {
            const size_t cnt = (kend - k < 16) ? kend - k : 16;  // even
            // vld2q: val[0] = even elements, val[1] = odd elements.
            float32x4x2_t xa[MC], xb[MC];
            for (int m = 0; m < MC; ++m) {
                if (cnt == 16) {
                    xa[m] = vld2q_f32(rw.x[m] + k);
                    xb[m] = vld2q_f32(rw.x[m] + k + 8);
                } else {
                    float buf[16] = {};
                    for (size_t i = 0; i < cnt; ++i) buf[i] = rw.x[m][k + i];
                    xa[m] = vld2q_f32(buf);
                    xb[m] = vld2q_f32(buf + 8);
                }
            }
            for (int r = 0; r < R; ++r) {
                alignas(8) uint8_t buf[8] = {};
                const uint8_t* src = rw.w[r] + k / 2;
                if (cnt < 16) {
                    copy_bytes(buf, src, cnt / 2);
                    src = buf;
                }
                float32x4_t e0, e1, o0, o1;
                dec_i4<ASYM>(src, z[r], s[r], e0, e1, o0, o1);
                for (int m = 0; m < MC; ++m) {
                    acc[m][r] = vfmaq_f32(acc[m][r], xa[m].val[0], e0);
                    acc[m][r] = vfmaq_f32(acc[m][r], xa[m].val[1], o0);
                    acc[m][r] = vfmaq_f32(acc[m][r], xb[m].val[0], e1);
                    acc[m][r] = vfmaq_f32(acc[m][r], xb[m].val[1], o1);
                }
            }
        }
    }
    store_tile<MC, R>(a, m0, n, acc);
}

// ---- gemm_panel_f32 tiles --------------------------------------------------
template <int MR, int NR>
static void panel_tile(const float* x, size_t ldx, const float* p, size_t ldp, size_t kc, float* y,
                       size_t ldy, bool accumulate) {
    float32x4_t acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] = vdupq_n_f32(0.0f);
    size_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        float32x4_t xv[MR];
        for (int i = 0; i < MR; ++i) xv[i] = vld1q_f32(x + i * ldx + k);
        for (int j = 0; j < NR; ++j) {
            const float32x4_t pv = vld1q_f32(p + j * ldp + k);
            for (int i = 0; i < MR; ++i) acc[i][j] = vfmaq_f32(acc[i][j], xv[i], pv);
        }
    }
    if (k < kc) {
        float32x4_t xv[MR];
        for (int i = 0; i < MR; ++i) xv[i] = load_f32_tail(x + i * ldx + k, kc - k);
        for (int j = 0; j < NR; ++j) {
            const float32x4_t pv = load_f32_tail(p + j * ldp + k, kc - k);
            for (int i = 0; i < MR; ++i) acc[i][j] = vfmaq_f32(acc[i][j], xv[i], pv);
        }
    }
    for (int i = 0; i < MR; ++i) {
        float* yr = y + i * ldy;
        for (int j = 0; j < NR; ++j) {
            const float s = vaddvq_f32(acc[i][j]);
            yr[j] = accumulate ? yr[j] + s : s;
        }
    }
}

constexpr int PMR = 4;
constexpr int PNR = 4;

template <int MR>
static void panel_rows(const float* x, size_t ldx, const float* p, size_t ldp, size_t nr, size_t kc,
                       float* y, size_t ldy, bool acc) {
    size_t j = 0;
    for (; j + PNR <= nr; j += PNR) panel_tile<MR, PNR>(x, ldx, p + j * ldp, ldp, kc, y + j, ldy, acc);
    switch (nr - j) {
        case 1: panel_tile<MR, 1>(x, ldx, p + j * ldp, ldp, kc, y + j, ldy, acc); break;
        case 2: panel_tile<MR, 2>(x, ldx, p + j * ldp, ldp, kc, y + j, ldy, acc); break;
        case 3: panel_tile<MR, 3>(x, ldx, p + j * ldp, ldp, kc, y + j, ldy, acc); break;
        default: break;
    }
}

// ---- dequant_panel rows ----------------------------------------------------
template <int F>
static void conv_row(const uint8_t* row, size_t k0, size_t kc, float* out) {
    size_t k = 0;
    for (; k + 4 <= kc; k += 4) vst1q_f32(out + k, load_wf<F>(row, k0 + k));
    if (k < kc) {
        float buf[4];
        vst1q_f32(buf, load_wf_tail<F>(row, k0 + k, kc - k));
        for (size_t i = 0; i < kc - k; ++i) out[k + i] = buf[i];
    }
}

template <bool ASYM>
static void deq_i8_row(const int8_t* q, size_t ngroups, size_t G, const float* sc, const int8_t* zp,
                       float* out) {
    for (size_t g = 0; g < ngroups; ++g) {
        const float sf = sc[g];
        const int32_t zi = ASYM ? zp[g] : 0;
        const float32x4_t s = vdupq_n_f32(sf);
        const int16x8_t z = vdupq_n_s16(static_cast<int16_t>(zi));
        const int8_t* qg = q + g * G;
        float* og = out + g * G;
        size_t k = 0;
        for (; k + 8 <= G; k += 8) {
            float32x4_t w0, w1;
            dec_i8<ASYM>(qg + k, z, s, w0, w1);
            vst1q_f32(og + k, w0);
            vst1q_f32(og + k + 4, w1);
        }
        for (; k < G; ++k) og[k] = static_cast<float>(qg[k] - zi) * sf;
    }
}

template <bool ASYM>
static void deq_i4_row(const uint8_t* packed, size_t ngroups, size_t G, const float* sc, const uint8_t* zp,
                       float* out) {
    for (size_t g = 0; g < ngroups; ++g) {
        const float sf = sc[g];
        const int32_t zi = ASYM ? zp[g] : 0;
        const float32x4_t s = vdupq_n_f32(sf);
        const int16x8_t z = vdupq_n_s16(static_cast<int16_t>(zi));
        const uint8_t* pg = packed + g * (G / 2);
        float* og = out + g * G;
        size_t k = 0;
        for (; k + 16 <= G; k += 16) {
            float32x4_t e0, e1, o0, o1;
            dec_i4<ASYM>(pg + k / 2, z, s, e0, e1, o0, o1);
            float32x4x2_t v0 = {{e0, o0}}, v1 = {{e1, o1}};
            vst2q_f32(og + k, v0);  // interleaves back into k order
            vst2q_f32(og + k + 8, v1);
        }
        for (; k < G; k += 2) {
            const uint8_t b = pg[k / 2];
            int32_t lo = b & 15, hi = b >> 4;
            if (!ASYM) {
                lo = (lo ^ 8) - 8;
                hi = (hi ^ 8) - 8;
            }
            og[k] = static_cast<float>(lo - zi) * sf;
            og[k + 1] = static_cast<float>(hi - zi) * sf;
        }
    }
}

#include "../gemm_dispatch.inc"

}  // namespace

void gemv(const GemmArgs& a, size_t m0, size_t mc, size_t n0, size_t n1) {
    gemv_dispatch(a, m0, mc, n0, n1);
}

void gemm_panel_f32(const float* x, size_t ldx, size_t M, const float* p, size_t ldp, size_t nr,
                    size_t kc, float* y, size_t ldy, bool accumulate) {
    for (size_t j = 0; j < nr; j += PNR) {
        const size_t nj = (nr - j < PNR) ? nr - j : PNR;
        const float* pj = p + j * ldp;
        size_t i = 0;
        for (; i + PMR <= M; i += PMR) panel_rows<PMR>(x + i * ldx, ldx, pj, ldp, nj, kc, y + i * ldy + j, ldy, accumulate);
        switch (M - i) {
            case 1: panel_rows<1>(x + i * ldx, ldx, pj, ldp, nj, kc, y + i * ldy + j, ldy, accumulate); break;
            case 2: panel_rows<2>(x + i * ldx, ldx, pj, ldp, nj, kc, y + i * ldy + j, ldy, accumulate); break;
            case 3: panel_rows<3>(x + i * ldx, ldx, pj, ldp, nj, kc, y + i * ldy + j, ldy, accumulate); break;
            default: break;
        }
    }
}

void dequant_panel(const WeightView& w, size_t n0, size_t nr, size_t k0, size_t kc, float* p, size_t ldp) {
    dequant_rows(w, n0, nr, k0, kc, p, ldp, [](size_t) {});
}

}  // namespace neon
}  // namespace qk

#endif  // __aarch64__
