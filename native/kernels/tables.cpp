// One Kernels table per ISA, built from the functions of its namespace.
// Compiled without ISA flags: it only takes addresses.
#include <cstdint>

#include "isa.h"
#if defined(__x86_64__) || defined(_M_X64)
#include "x86/gemm_amx_bf16.h"
#include "x86/gemm_amx_i8x.h"
#include "x86/gemv_avx512_linear.h"
#include "x86/w4a8_avx2_rows.h"
#include "x86/w4a8_avx512_rows.h"
#include "x86/w4a8_amx.h"
#include "x86/w8a8_amx.h"
#include "x86/w8a8_avx512_packed.h"
#endif

namespace qk {

// table: the variable's suffix; ns: the namespace of the ISA's own functions.
#define QK_TABLE(table, ns, isa_value, isa_name, gemv, i4_gemv_max_m, i8_gemv_max_m, w8a8, packed_min_m,      \
                 pack_a, w4a8, w4a8_rows, rows_min_m, dq_split, panel_dq, panel_dq_i8, panel_dq_i4,         \
                 i8x_split, gemm_i8x, norm_rows, rope_rows, chunk_x)                                        \
    const Kernels kernels_##table = {                                                              \
        isa_value,         isa_name,         ns::f16_to_f32,     ns::bf16_to_f32,                \
        ns::minmax,        ns::absmax,       ns::quantize,       ns::dequantize_i8,              \
        ns::dequantize_i4, ns::pack_i4,      ns::unpack_i4,      ns::pack_i2,                    \
        ns::unpack_i2,     gemv,             ns::gemm_panel_f32, dq_split,                       \
        panel_dq,          panel_dq_i8,      panel_dq_i4,                                        \
        ns::dequant_panel,                                                                         \
        i4_gemv_max_m,     i8_gemv_max_m,    i8x_split,          gemm_i8x,                        \
        w8a8,              packed_min_m,     pack_a,             w4a8,                            \
        w4a8_rows,         rows_min_m,       chunk_x,                                             \
        ns::attn_rows,     ns::silu_mul,     ns::gelu_tanh,    norm_rows,                         \
        rope_rows,         ns::dgemm_nt_sub,                                                      \
    };

QK_TABLE(ref, ref, Isa::scalar, "scalar", ref::gemv, 4, 16, ref::gemm_w8a8, SIZE_MAX, ref::w8a8_pack_a, ref::gemm_w4a8,
         ref::gemm_w4a8, SIZE_MAX, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
         ref::norm_rows, ref::rope_rows, ref::w4a8_chunk_x)
#if defined(__x86_64__) || defined(_M_X64)
// AVX2: W4A8 with lanes over 8 weight rows from M = avx2::kW4A8RowsMinM
// (5, as on AVX-512), bit-identical to the row-layout kernel.
QK_TABLE(avx2, avx2, Isa::avx2, "avx2", avx2::gemv, 4, 16, avx2::gemm_w8a8, SIZE_MAX, ref::w8a8_pack_a, avx2::gemm_w4a8,
         avx2::gemm_w4a8_rows, avx2::kW4A8RowsMinM, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
         avx2::norm_rows, avx2::rope_rows, avx2::w4a8_chunk_x)
// The AVX-512 and AMX tables take AVX2's w4a8_chunk_x: it moves and sums
// bytes, 128 per chunk in four 256-bit shuffles (no 512-bit version).
// AVX-512: gemv reading f32 weights a row at a time at M = 1
// (gemv_avx512_linear.h); VNNI outer-product kernel over packed activations from M = 7
// rows (the others never read them: their packer is the ref one, unused);
// W4A8 with lanes over weight rows from M = kW4A8RowsMinM, bit-identical to
// the row-layout kernel (as on AVX2; scalar and NEON have one W4A8 kernel
// for every M). int4
// with f32 activations stays on gemv up to M = 9 (one thread, Zen 4, N x K
// from 2048 x 768 to 11008 x 4096: gemv 47-53 GFLOP/s at M = 5-12, the
// panel path 22-28 at M = 5, 35-44 at 8, 46-55 at 10); AVX2's panel path
// is level with its gemv from M = 5 (37 against 36 at 4096 x 4096), so 4.
QK_TABLE(avx512, avx512, Isa::avx512, "avx512", avx512::gemv_linear_m1, 9, 16, avx512::gemm_w8a8, avx512::kW8A8PackedMinM,
         avx512::w8a8_pack_a, avx512::gemm_w4a8, avx512::gemm_w4a8_rows, avx512::kW4A8RowsMinM,
         nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, avx512::norm_rows, avx512::rope_rows, avx2::w4a8_chunk_x)
// AMX: the AVX-512 table with the W8A8 GEMM on AMX-INT8 tiles from
// amx::kW8A8MinM rows (packed activations from there on; the AVX-512
// kernels below it and for the last N % 16 columns), int8 per-channel
// weights with f32 activations in exact int8 digits on AMX-INT8 tiles
// (gemm_i8x; the driver picks its rows, gemm_ops.cpp), and the other int8 /
// int4 panels with f32 activations (prefill) on split-bf16 AMX-BF16 tiles;
// other int8 layouts leave gemv from M = 8 (one thread, int8 per channel, 768 x 768 to
// 4096 x 4096, GFLOP/s gemv / tiles: M = 5 57-79 / 71-82, M = 8 84-100 /
// 88-123, M = 12 88-106 / 121-175, M = 16 88-98 / 143-213); int4 stays on
// gemv to M = 9 (M = 8: 48-56 / 44-47). W4A8 takes the rows kernel from
// M = kW4A8RowsMinMAmx (10) here, not 5 (w4a8_avx512_rows.h).
QK_TABLE(amx, avx512, Isa::amx, "amx", avx512::gemv, 9, 7, amx::gemm_w8a8, amx::kW8A8MinM, avx512::w8a8_pack_a, avx512::gemm_w4a8,
         amx::gemm_w4a8_rows, avx512::kW4A8RowsMinMAmx, amx::dq_split_x,
         amx::gemm_panel_dq, amx::gemm_panel_dq_i8, amx::gemm_panel_dq_i4, amx::i8x_split, amx::gemm_i8x,
         avx512::norm_rows, avx512::rope_rows, avx2::w4a8_chunk_x)
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
QK_TABLE(neon, neon, Isa::neon, "neon", neon::gemv, 4, 16, neon::gemm_w8a8, SIZE_MAX, ref::w8a8_pack_a, neon::gemm_w4a8,
         neon::gemm_w4a8, SIZE_MAX, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
         ref::norm_rows, ref::rope_rows, neon::w4a8_chunk_x)
#endif

}  // namespace qk
