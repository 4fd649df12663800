#include "quantize_ops.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <vector>

#include "../dispatch.h"
#include "../threadpool.h"
#include "op_util.h"

namespace qk {

using ops::min_sz;
using ops::record_bad;

namespace {

// Rows handed to one task: enough work to amortise scheduling (~64K values).
size_t rows_per_task(size_t K) {
    const size_t target = 65536;
    return std::max<size_t>(1, target / std::max<size_t>(K, 1));
}

// f32 view of one source row: the row itself for f32, else converted into scratch.
const float* row_f32(const void* src, SrcType st, size_t row, size_t K, std::vector<float>& scratch) {
    if (st == SrcType::f32) return static_cast<const float*>(src) + row * K;
    scratch.resize(K);
    const uint16_t* s = static_cast<const uint16_t*>(src) + row * K;
    if (st == SrcType::f16) kernels().f16_to_f32(s, scratch.data(), K);
    else kernels().bf16_to_f32(s, scratch.data(), K);
    return scratch.data();
}

// Software prefetch of the source rows ahead of the compute. A row is read
// once from memory (min/max) and then quantized from L1, so without help the
// memory system idles while a row is quantized; a burst of one row's 256
// prefetches before each row stalls on the line-fill buffers before any
// compute starts. So the prefetches are pumped a few lines at a time between
// sliced kernel calls, keeping the cursor one row ahead.
struct Prefetcher {
    const char* base;
    size_t next, end;  // byte cursor and limit
    void pump(size_t lines) {
        for (; lines && next < end; --lines, next += 64) __builtin_prefetch(base + next, 0, 3);
    }
};

int32_t load_zp(const void* zps, int bits, size_t i) {
    if (!zps) return 0;
    return bits == 8 ? int32_t(static_cast<const int8_t*>(zps)[i]) : int32_t(static_cast<const uint8_t*>(zps)[i]);
}

void store_zp(void* zps, int bits, size_t i, int32_t v) {
    if (!zps) return;
    if (bits == 8) static_cast<int8_t*>(zps)[i] = static_cast<int8_t>(v);
    else static_cast<uint8_t*>(zps)[i] = static_cast<uint8_t>(v);
}


}  // namespace

void code_range(const QuantSpec& s, int32_t* qmin, int32_t* qmax) {
    if (s.bits == 8) { *qmin = s.asymmetric ? -128 : -127; *qmax = 127; }
    else if (s.bits == 4) { *qmin = s.asymmetric ? 0 : -8; *qmax = s.asymmetric ? 15 : 7; }
    else { *qmin = 0; *qmax = 3; }
}

size_t groups_per_row(const QuantSpec& s, size_t K) {
    return s.gran == Granularity::group ? (K + s.group - 1) / s.group : 1;
}

size_t packed_row_bytes(int bits, size_t K) {
    return bits == 8 ? K : bits == 4 ? (K + 1) / 2 : (K + 3) / 4;
}

void choose_params(const QuantSpec& s, float mn, float mx, float* scale, int32_t* zp) {
    int32_t qmin, qmax;
    code_range(s, &qmin, &qmax);
    float sc;
    if (mn == mx) {
        sc = mn == 0.0f ? 1.0f : std::fabs(mn);
    } else if (!s.asymmetric) {
        sc = absmax_scale(std::max(std::fabs(mn), std::fabs(mx)), qmax);
    } else {
        const double lo = std::min(double(mn), 0.0), hi = std::max(double(mx), 0.0);
        sc = float((hi - lo) / double(qmax - qmin));
    }
    if (sc == 0.0f) sc = FLT_TRUE_MIN;
    *scale = sc;
    if (!s.asymmetric) { *zp = 0; return; }
    const float lo = std::min(mn, 0.0f);
    float z = std::nearbyint(float(qmin) - lo / sc);
    z = std::min(std::max(z, float(qmin)), float(qmax));
    *zp = int32_t(z);
}

size_t quantize(const void* src, SrcType st, size_t rows, size_t K, const QuantSpec& s, void* codes,
                float* scales, void* zps) {
    if (rows == 0 || K == 0) return SIZE_MAX;
    const Kernels& k = kernels();
    int32_t qmin, qmax;
    code_range(s, &qmin, &qmax);
    const size_t ng = groups_per_row(s, K);
    // nf whole groups of G, then (K % G != 0) a last group of `tail` values.
    const size_t G = ng == 1 ? K : s.group;
    const size_t nf = K / G, tail = K - nf * G;
    const size_t rpt = rows_per_task(K);
    const size_t tasks = (rows + rpt - 1) / rpt;
    std::atomic<size_t> bad{SIZE_MAX};

    // Per-tensor: one range over every row first.
    float t_scale = 0.0f;
    int32_t t_zp = 0;
    if (s.gran == Granularity::tensor) {
        std::vector<float> tmn(tasks, 0.0f), tmx(tasks, 0.0f);
        parallel_for(tasks, [&](size_t t, size_t) {
            thread_local std::vector<float> scratch;
            float mn = 0, mx = 0;
            for (size_t r = t * rpt; r < std::min(rows, (t + 1) * rpt); ++r) {
                float a, b;
                const size_t e = k.minmax(row_f32(src, st, r, K, scratch), 1, K, &a, &b);
                if (e != SIZE_MAX) { record_bad(bad, r * K + e); return; }
                if (r == t * rpt) { mn = a; mx = b; }
                else { mn = std::min(mn, a); mx = std::max(mx, b); }
            }
            tmn[t] = mn;
            tmx[t] = mx;
        });
        if (bad.load() != SIZE_MAX) return bad.load();
        const float mn = *std::min_element(tmn.begin(), tmn.end());
        const float mx = *std::max_element(tmx.begin(), tmx.end());
        choose_params(s, mn, mx, &t_scale, &t_zp);
        scales[0] = t_scale;
        store_zp(s.asymmetric ? zps : nullptr, s.bits, 0, t_zp);
    }

    const size_t row_bytes = packed_row_bytes(s.bits, K);
    parallel_for(tasks, [&](size_t t, size_t) {
        thread_local std::vector<float> scratch;
        thread_local std::vector<float> mn, mx, sc;
        thread_local std::vector<int32_t> zp;
        thread_local std::vector<int8_t> q;
        mn.resize(ng); mx.resize(ng); sc.resize(ng); zp.resize(ng);
        if (s.bits != 8) q.resize(K);
        const size_t r_end = std::min(rows, (t + 1) * rpt);
        // Slices per row (min/max, quantize) and the prefetch cursor: one
        // row ahead, within this task's rows (one thread: also the next
        // task's first row, which this thread runs next). Measured on a
        // 4096x4096 f32 tensor, one thread (AVX-512): a burst per row
        // ~2.1-2.3 us/row, these slices ~1.0-1.4 us/row. Slicing changes
        // no result (min/max combine exactly, quantize is per element).
        const size_t src_rb = K * (st == SrcType::f32 ? 4 : 2);
        const size_t S1 = std::min<size_t>(2, ng == 1 ? 2 : ng), S2 = std::min<size_t>(4, ng == 1 ? 4 : ng);
        Prefetcher pf{static_cast<const char*>(src), (t * rpt + 1) * src_rb,
                      std::min(rows, r_end + (threads() == 1 ? 1 : 0)) * src_rb};
        for (size_t r = t * rpt; r < r_end; ++r) {
            if (bad.load(std::memory_order_relaxed) != SIZE_MAX) return;
            const size_t want = (r + 2) * src_rb;
            const size_t lines = want > pf.next ? (want - pf.next + 63) / 64 : 0;
            const size_t per = (lines + S1 + S2 - 1) / (S1 + S2);
            const float* x = row_f32(src, st, r, K, scratch);
            if (s.gran == Granularity::tensor) {
                for (size_t g = 0; g < ng; ++g) { sc[g] = t_scale; zp[g] = t_zp; }
                pf.pump(per * S1);
            } else {
                // Min/max in S1 slices (whole groups, or parts of the one
                // group: min and max combine exactly).
                for (size_t c = 0; c < S1; ++c) {
                    if (ng == 1) {
                        const size_t b = K * c / S1, e = K * (c + 1) / S1;
                        float a0 = 0, b0 = 0;
                        const size_t err = e > b ? k.minmax(x + b, 1, e - b, &a0, &b0) : SIZE_MAX;
                        if (err != SIZE_MAX) { record_bad(bad, r * K + b + err); return; }
                        if (e > b) {
                            if (b == 0) { mn[0] = a0; mx[0] = b0; }
                            else { mn[0] = std::min(mn[0], a0); mx[0] = std::max(mx[0], b0); }
                        }
                    } else {
                        const size_t gb = nf * c / S1, ge = nf * (c + 1) / S1;
                        const size_t err = ge > gb ? k.minmax(x + gb * G, ge - gb, G, mn.data() + gb, mx.data() + gb) : SIZE_MAX;
                        if (err != SIZE_MAX) { record_bad(bad, r * K + gb * G + err); return; }
                    }
                    pf.pump(per);
                }
                if (tail) {
                    const size_t err = k.minmax(x + nf * G, 1, tail, mn.data() + nf, mx.data() + nf);
                    if (err != SIZE_MAX) { record_bad(bad, r * K + nf * G + err); return; }
                }
                for (size_t g = 0; g < ng; ++g) {
                    choose_params(s, mn[g], mx[g], &sc[g], &zp[g]);
                    scales[r * ng + g] = sc[g];
                    if (s.asymmetric) store_zp(zps, s.bits, r * ng + g, zp[g]);
                }
            }
            const int32_t* zpp = s.asymmetric ? zp.data() : nullptr;
            int8_t* qrow = s.bits == 8 ? static_cast<int8_t*>(codes) + r * K : q.data();
            // Quantize in S2 slices (element-wise: the slicing changes nothing).
            for (size_t c = 0; c < S2; ++c) {
                if (ng == 1) {
                    const size_t b = K * c / S2, e = K * (c + 1) / S2;
                    if (e > b) k.quantize(x + b, 1, e - b, sc.data(), zpp, qmin, qmax, qrow + b);
                } else {
                    const size_t gb = nf * c / S2, ge = nf * (c + 1) / S2;
                    if (ge > gb)
                        k.quantize(x + gb * G, ge - gb, G, sc.data() + gb, zpp ? zpp + gb : nullptr, qmin, qmax,
                                   qrow + gb * G);
                }
                pf.pump(per);
            }
            if (tail) k.quantize(x + nf * G, 1, tail, sc.data() + nf, zpp ? zpp + nf : nullptr, qmin, qmax, qrow + nf * G);
            if (s.bits != 8) {
                uint8_t* out = static_cast<uint8_t*>(codes) + r * row_bytes;
                if (s.bits == 4) k.pack_i4(q.data(), K, out);
                else k.pack_i2(q.data(), K, out);
            }
        }
    });
    return bad.load();
}

void dequantize(const void* codes, size_t rows, size_t K, const QuantSpec& s, const float* scales,
                const void* zps, float* out) {
    if (rows == 0 || K == 0) return;
    const Kernels& k = kernels();
    const size_t ng = groups_per_row(s, K);
    const size_t G = ng == 1 ? K : s.group;
    const size_t nf = K / G, tail = K - nf * G;  // whole groups, then a shorter last one
    const size_t rpt = rows_per_task(K);
    const size_t tasks = (rows + rpt - 1) / rpt;
    const size_t row_bytes = packed_row_bytes(s.bits, K);
    parallel_for(tasks, [&](size_t t, size_t) {
        thread_local std::vector<float> sc;
        thread_local std::vector<int32_t> zp;
        thread_local std::vector<int8_t> q;
        sc.resize(ng); zp.resize(ng);
        for (size_t r = t * rpt; r < std::min(rows, (t + 1) * rpt); ++r) {
            for (size_t g = 0; g < ng; ++g) {
                const size_t i = s.gran == Granularity::tensor ? 0 : r * ng + g;
                sc[g] = scales[i];
                zp[g] = s.asymmetric ? load_zp(zps, s.bits, i) : 0;
            }
            const int32_t* zpp = s.asymmetric ? zp.data() : nullptr;
            float* y = out + r * K;
            const int32_t* zpt = zpp ? zpp + nf : nullptr;  // the last, shorter group's
            if (s.bits == 8) {
                const int8_t* q8 = static_cast<const int8_t*>(codes) + r * K;
                k.dequantize_i8(q8, nf, G, sc.data(), zpp, y);
                if (tail) k.dequantize_i8(q8 + nf * G, 1, tail, sc.data() + nf, zpt, y + nf * G);
            } else if (s.bits == 4 && K % 2 == 0 && G % 2 == 0) {
                const uint8_t* p = static_cast<const uint8_t*>(codes) + r * row_bytes;
                k.dequantize_i4(p, nf, G, sc.data(), zpp, !s.asymmetric, y);
                if (tail) k.dequantize_i4(p + nf * G / 2, 1, tail, sc.data() + nf, zpt, !s.asymmetric, y + nf * G);
            } else {
                // int2, or int4 whose groups do not start on byte boundaries.
                q.resize(K);
                const uint8_t* p = static_cast<const uint8_t*>(codes) + r * row_bytes;
                if (s.bits == 4) k.unpack_i4(p, K, !s.asymmetric, q.data());
                else k.unpack_i2(p, K, q.data());
                k.dequantize_i8(q.data(), nf, G, sc.data(), zpp, y);
                if (tail) k.dequantize_i8(q.data() + nf * G, 1, tail, sc.data() + nf, zpt, y + nf * G);
            }
        }
    });
}

void pack_rows(int bits, const int8_t* q, size_t rows, size_t K, uint8_t* out) {
    const Kernels& k = kernels();
    const size_t rb = packed_row_bytes(bits, K);
    for (size_t r = 0; r < rows; ++r) {
        if (bits == 4) k.pack_i4(q + r * K, K, out + r * rb);
        else k.pack_i2(q + r * K, K, out + r * rb);
    }
}

void unpack_rows(int bits, bool is_signed, const uint8_t* packed, size_t rows, size_t K, int8_t* out) {
    const Kernels& k = kernels();
    const size_t rb = packed_row_bytes(bits, K);
    for (size_t r = 0; r < rows; ++r) {
        if (bits == 4) k.unpack_i4(packed + r * rb, K, is_signed, out + r * K);
        else k.unpack_i2(packed + r * rb, K, out + r * K);
    }
}

void convert_to_f32(SrcType st, const uint16_t* src, size_t n, float* out) {
    const Kernels& k = kernels();
    const size_t chunk = 1 << 16;
    const size_t tasks = (n + chunk - 1) / chunk;
    parallel_for(tasks, [&](size_t t, size_t) {
        const size_t b = t * chunk, e = std::min(n, b + chunk);
        if (st == SrcType::f16) k.f16_to_f32(src + b, out + b, e - b);
        else k.bf16_to_f32(src + b, out + b, e - b);
    });
}

float stream_read(const float* x, size_t n) {
    const Kernels& k = kernels();
    const size_t chunk = size_t(1) << 20;  // 4 MB per task
    const size_t tasks = (n + chunk - 1) / chunk;
    std::vector<float> part(tasks, 0.0f);
    parallel_for(tasks, [&](size_t t, size_t) {
        const size_t b = t * chunk, e = std::min(n, b + chunk);
        k.absmax(x + b, 1, e - b, &part[t]);
    });
    float m = 0.0f;
    for (float v : part) m = std::max(m, v);
    return m;
}

}  // namespace qk
