// Quantization drivers: choose scales and zero points (scalar, shared by all
// ISAs so parameters are bit-identical everywhere), then run the active
// ISA's element loops over rows in parallel.
//
// A tensor is seen as rows x K (K = last dimension). Granularity:
//   tensor  - one (scale, zp) for everything
//   channel - one per row
//   group   - one per G consecutive values of a row; when G does not divide
//             K the last group of each row is shorter (K % G values)
#pragma once

#include <cfloat>
#include <cstddef>
#include <cstdint>

#include "../kernels/kernels.h"

namespace qk {

enum class Granularity : int { tensor = 0, channel = 1, group = 2 };
enum class SrcType : int { f32 = 0, f16 = 1, bf16 = 2 };

struct QuantSpec {
    int bits;          // 8, 4 or 2
    bool asymmetric;   // zero-point scheme (required for 2 bits)
    Granularity gran;
    size_t group;      // G for Granularity::group
};

// Integer range of the codes: int8 sym [-127,127], asym [-128,127];
// int4 sym [-8,7], asym [0,15]; int2 asym [0,3].
void code_range(const QuantSpec& s, int32_t* qmin, int32_t* qmax);

// Number of (scale, zp) pairs per row: ceil(K / G) for groups (tensor: 1 shared by all rows).
size_t groups_per_row(const QuantSpec& s, size_t K);

// Bytes of one packed row of codes: K (8 bits), ceil(K/2) (4), ceil(K/4) (2).
size_t packed_row_bytes(int bits, size_t K);

// The scale and zero point of one block with finite min mn and max mx.
// Symmetric: scale = absmax / qmax; asymmetric: the range is widened to
// include 0, scale = (hi - lo) / (qmax - qmin), zp = clamp(rne(qmin - lo/scale)).
// A constant block (mn == mx == c) gets scale |c| (1 when c == 0) so it
// dequantizes exactly; a scale that underflows to 0 becomes the smallest
// subnormal float.
void choose_params(const QuantSpec& s, float mn, float mx, float* scale, int32_t* zp);

// choose_params' symmetric scale of a block whose absolute maximum is amax
// (finite, >= 0), i.e. of (mn, mx) = (-amax, amax), inline for the
// per-block loops of dynamic activation quantization (choose_params uses it
// too, so the two cannot drift apart).
inline float absmax_scale(float amax, int32_t qmax) {
    float sc = amax == 0.0f ? 1.0f : float(double(amax) / double(qmax));
    if (sc == 0.0f) sc = FLT_TRUE_MIN;
    return sc;
}

// Quantize src[rows, K] (f32/f16/bf16 bits) into
//   codes: int8 [rows, K] (8 bits) or packed bytes [rows, packed_row_bytes]
//   scales: [rows, groups_per_row] (tensor: [1])
//   zps: same shape as scales, int8 (8 bits) or uint8 (4/2 bits); nullptr when symmetric.
// Returns SIZE_MAX, or the flat index of the first NaN/Inf (nothing useful written then).
size_t quantize(const void* src, SrcType st, size_t rows, size_t K, const QuantSpec& s,
                void* codes, float* scales, void* zps);

// out[rows, K] f32 = dequantized codes (same layouts as quantize).
void dequantize(const void* codes, size_t rows, size_t K, const QuantSpec& s, const float* scales,
                const void* zps, float* out);

// Row-wise packing of rows x K codes (each row starts on a byte boundary).
void pack_rows(int bits, const int8_t* q, size_t rows, size_t K, uint8_t* out);
void unpack_rows(int bits, bool is_signed, const uint8_t* packed, size_t rows, size_t K, int8_t* out);

// f16/bf16 bits -> f32.
void convert_to_f32(SrcType st, const uint16_t* src, size_t n, float* out);

// Absolute maximum of x[n] read on the thread pool with the active ISA
// (a streaming read, used to measure memory bandwidth). NaN-free input assumed.
float stream_read(const float* x, size_t n);

}  // namespace qk
