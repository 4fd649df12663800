// N-API glue for quantization: quantize (sync and Promise), dequantize,
// sub-byte packing, f16/bf16 conversion, and the bandwidth probe. Output
// buffers are allocated by JavaScript and passed in.
#include <napi.h>

#include <string>

#include "args.h"
#include "glue.h"
#include "../ops/quantize_ops.h"
#include "bindings.h"

namespace qkb {

namespace {

qk::QuantSpec spec_args(const Napi::CallbackInfo& info, size_t i, const char* fn, size_t K) {
    qk::QuantSpec s;
    s.bits = int_arg(info, i, fn, "bits", 2, 8);
    if (s.bits != 8 && s.bits != 4 && s.bits != 2) throw_range(info.Env(), fn, "bits", "must be 8, 4 or 2");
    s.asymmetric = bool_arg(info, i + 1, fn, "asymmetric");
    s.gran = qk::Granularity(int_arg(info, i + 2, fn, "granularity", 0, 2));
    s.group = size_arg(info, i + 3, fn, "groupSize");
    if (s.bits == 2 && !s.asymmetric) throw_range(info.Env(), fn, "scheme", "must be asymmetric for 2 bits");
    if (s.gran == qk::Granularity::group) {
        if (s.group == 0) throw_range(info.Env(), fn, "groupSize", "must be >= 1");
        if (s.bits != 8 && s.group % 2 != 0) throw_range(info.Env(), fn, "groupSize", "must be even");
    }
    return s;
}

size_t scale_count(const qk::QuantSpec& s, size_t rows, size_t K) {
    return s.gran == qk::Granularity::tensor ? 1 : rows * qk::groups_per_row(s, K);
}

// quantize(src, srcType, rows, K, bits, asymmetric, granularity, groupSize, codes, scales, zps)
//   -> -1, or the flat index of the first NaN/Inf in src.
struct QuantizeCall {
    const void* src;
    qk::SrcType st;
    size_t rows, K;
    qk::QuantSpec spec;
    void* codes;
    float* scales;
    void* zps;
    size_t run() const { return qk::quantize(src, st, rows, K, spec, codes, scales, zps); }
};

QuantizeCall parse_quantize(const Napi::CallbackInfo& info, const char* fn) {
    const int st = int_arg(info, 1, fn, "srcType", 0, 2);
    const size_t rows = size_arg(info, 2, fn, "rows"), K = size_arg(info, 3, fn, "K");
    const size_t n = mul_checked(info.Env(), fn, rows, K);
    const qk::QuantSpec s = spec_args(info, 4, fn, K);
    View src = typed_arg(info, 0, fn, "src", st == 0 ? napi_float32_array : napi_uint16_array, n);
    const size_t code_bytes = mul_checked(info.Env(), fn, rows, qk::packed_row_bytes(s.bits, K));
    View codes = typed_arg(info, 8, fn, "codes", s.bits == 8 ? napi_int8_array : napi_uint8_array, code_bytes);
    const size_t ns = scale_count(s, rows, K);
    View scales = typed_arg(info, 9, fn, "scales", napi_float32_array, ns);
    View zps;
    if (s.asymmetric) zps = typed_arg(info, 10, fn, "zeroPoints", s.bits == 8 ? napi_int8_array : napi_uint8_array, ns);
    return {src.data, qk::SrcType(st), rows, K, s, codes.data, static_cast<float*>(scales.data), zps.data};
}

Napi::Value Quantize(const Napi::CallbackInfo& info) {
    return guarded(info, "quantize", [&]() -> Napi::Value {
        const size_t bad = parse_quantize(info, "quantize").run();
        return Napi::Number::New(info.Env(), bad == SIZE_MAX ? -1.0 : double(bad));
    });
}

// dequantize(codes, rows, K, bits, asymmetric, granularity, groupSize, scales, zps, out)
Napi::Value Dequantize(const Napi::CallbackInfo& info) {
    const char* fn = "dequantize";
    return guarded(info, fn, [&]() -> Napi::Value {
        const size_t rows = size_arg(info, 1, fn, "rows"), K = size_arg(info, 2, fn, "K");
        const size_t n = mul_checked(info.Env(), fn, rows, K);
        const qk::QuantSpec s = spec_args(info, 3, fn, K);
        const size_t code_bytes = mul_checked(info.Env(), fn, rows, qk::packed_row_bytes(s.bits, K));
        View codes = typed_arg(info, 0, fn, "codes", s.bits == 8 ? napi_int8_array : napi_uint8_array, code_bytes);
        const size_t ns = scale_count(s, rows, K);
        View scales = typed_arg(info, 7, fn, "scales", napi_float32_array, ns);
        View zps;
        if (s.asymmetric) zps = typed_arg(info, 8, fn, "zeroPoints", s.bits == 8 ? napi_int8_array : napi_uint8_array, ns);
        View out = typed_arg(info, 9, fn, "out", napi_float32_array, n);
        qk::dequantize(codes.data, rows, K, s, static_cast<const float*>(scales.data), zps.data,
                       static_cast<float*>(out.data));
        return info.Env().Undefined();
    });
}

// packRows(bits, values: Int8Array, rows, K, out: Uint8Array). Values must be in
// range for the bit width (checked here: a packed nibble cannot hold more).
Napi::Value PackRows(const Napi::CallbackInfo& info) {
    const char* fn = "pack";
    return guarded(info, fn, [&]() -> Napi::Value {
        const int bits = int_arg(info, 0, fn, "bits", 2, 4);
        if (bits == 3) throw_range(info.Env(), fn, "bits", "must be 4 or 2");
        const size_t rows = size_arg(info, 2, fn, "rows"), K = size_arg(info, 3, fn, "K");
        const size_t n = mul_checked(info.Env(), fn, rows, K);
        View q = typed_arg(info, 1, fn, "values", napi_int8_array, n);
        View out = typed_arg(info, 4, fn, "out", napi_uint8_array, mul_checked(info.Env(), fn, rows, qk::packed_row_bytes(bits, K)));
        qk::pack_rows(bits, static_cast<const int8_t*>(q.data), rows, K, static_cast<uint8_t*>(out.data));
        return info.Env().Undefined();
    });
}

// unpackRows(bits, signed, packed: Uint8Array, rows, K, out: Int8Array)
Napi::Value UnpackRows(const Napi::CallbackInfo& info) {
    const char* fn = "unpack";
    return guarded(info, fn, [&]() -> Napi::Value {
        const int bits = int_arg(info, 0, fn, "bits", 2, 4);
        if (bits == 3) throw_range(info.Env(), fn, "bits", "must be 4 or 2");
        const bool is_signed = bool_arg(info, 1, fn, "signed");
        const size_t rows = size_arg(info, 3, fn, "rows"), K = size_arg(info, 4, fn, "K");
        const size_t n = mul_checked(info.Env(), fn, rows, K);
        View p = typed_arg(info, 2, fn, "packed", napi_uint8_array, mul_checked(info.Env(), fn, rows, qk::packed_row_bytes(bits, K)));
        View out = typed_arg(info, 5, fn, "out", napi_int8_array, n);
        qk::unpack_rows(bits, is_signed, static_cast<const uint8_t*>(p.data), rows, K, static_cast<int8_t*>(out.data));
        return info.Env().Undefined();
    });
}

// toF32(srcType 1=f16|2=bf16, src: Uint16Array, out: Float32Array)
Napi::Value ToF32(const Napi::CallbackInfo& info) {
    const char* fn = "toFloat32";
    return guarded(info, fn, [&]() -> Napi::Value {
        const int st = int_arg(info, 0, fn, "srcType", 1, 2);
        View src = typed_arg(info, 1, fn, "src", napi_uint16_array, SIZE_MAX);
        View out = typed_arg(info, 2, fn, "out", napi_float32_array, src.length);
        qk::convert_to_f32(qk::SrcType(st), static_cast<const uint16_t*>(src.data), src.length,
                           static_cast<float*>(out.data));
        return info.Env().Undefined();
    });
}

class QuantizeWorker : public PromiseWorker {
public:
    QuantizeWorker(Napi::Env env, const Napi::CallbackInfo& info, const QuantizeCall& c)
        : PromiseWorker(env, info, 11, "quantizeAsync"), c_(c) {}

private:
    void Run() override { bad_ = c_.run(); }
    Napi::Value Result() override { return Napi::Number::New(Env(), bad_ == SIZE_MAX ? -1.0 : double(bad_)); }
    QuantizeCall c_;
    size_t bad_ = SIZE_MAX;
};

// quantizeAsync(...same arguments as quantize) -> Promise<number>
Napi::Value QuantizeAsync(const Napi::CallbackInfo& info) {
    return guarded(info, "quantizeAsync", [&]() -> Napi::Value {
        const QuantizeCall c = parse_quantize(info, "quantizeAsync");
        auto* w = new QuantizeWorker(info.Env(), info, c);
        Napi::Promise p = w->Promise();
        w->Queue();
        return p;
    });
}

// streamRead(buf: Float32Array) -> absmax of buf. A read of every byte with the
// active ISA's widest loads on the thread pool: the benchmark's measure of
// DRAM read bandwidth (the kernels' reads are compared against it).
Napi::Value StreamRead(const Napi::CallbackInfo& info) {
    const char* fn = "streamRead";
    return guarded(info, fn, [&]() -> Napi::Value {
        View buf = typed_arg(info, 0, fn, "buf", napi_float32_array, SIZE_MAX);
        return Napi::Number::New(info.Env(), double(qk::stream_read(static_cast<const float*>(buf.data), buf.length)));
    });
}

}  // namespace

void register_quantize(Napi::Env env, Napi::Object exports) {
    exports.Set("quantize", Napi::Function::New(env, Quantize, "quantize"));
    exports.Set("quantizeAsync", Napi::Function::New(env, QuantizeAsync, "quantizeAsync"));
    exports.Set("dequantize", Napi::Function::New(env, Dequantize, "dequantize"));
    exports.Set("packRows", Napi::Function::New(env, PackRows, "packRows"));
    exports.Set("unpackRows", Napi::Function::New(env, UnpackRows, "unpackRows"));
    exports.Set("toF32", Napi::Function::New(env, ToF32, "toF32"));
    exports.Set("streamRead", Napi::Function::New(env, StreamRead, "streamRead"));
}

}  // namespace qkb
