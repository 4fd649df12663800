// The N-API surface of quantkit: thin wrappers that check arguments and call
// the native ops. Output buffers are allocated by JavaScript and passed in, so
// every result lives in JS-owned memory and nothing native outlives a call.
// lib/binding.ts is the only module that loads this addon.
#include <napi.h>

#include <new>
#include <string>
#include <vector>

#include "../dispatch.h"
#include "../ops/gemm_ops.h"
#include "../ops/quantize_ops.h"
#include "../ops/w8a8_ops.h"
#include "../threadpool.h"
#include "args.h"

using namespace qkb;

namespace {

// Run `body`, turning C++ failures (out of memory, ...) into JS errors with a
// code instead of letting them terminate the process.
template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, const char* fn, F&& body) {
    try {
        return body();
    } catch (const Napi::Error&) {
        throw;
    } catch (const std::bad_alloc&) {
        Napi::Error e = Napi::Error::New(info.Env(), std::string(fn) + ": out of memory");
        e.Set("code", Napi::String::New(info.Env(), "ERR_NATIVE"));
        throw e;
    } catch (const std::exception& ex) {
        Napi::Error e = Napi::Error::New(info.Env(), std::string(fn) + ": " + ex.what());
        e.Set("code", Napi::String::New(info.Env(), "ERR_NATIVE"));
        throw e;
    }
}

Napi::Value Isa(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), qk::kernels().name);
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
    const qk::CpuFeatures& f = qk::cpu_features();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("avx2", f.avx2);
    o.Set("avx512", f.avx512);
    o.Set("neon", f.neon);
    o.Set("neonDot", f.neon_dot);
#if defined(__x86_64__) || defined(_M_X64)
    o.Set("arch", "x64");
#elif defined(__aarch64__)
    o.Set("arch", "arm64");
#else
    o.Set("arch", "other");
#endif
    return o;
}

// selectIsa(name): cap the active ISA at `name`; returns the ISA now active.
Napi::Value SelectIsa(const Napi::CallbackInfo& info) {
    if (!info[0].IsString()) throw_type(info.Env(), "selectIsa", "name", "must be a string");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    qk::Isa isa;
    if (!qk::parse_isa(name.c_str(), &isa))
        throw_range(info.Env(), "selectIsa", "name", "must be one of scalar, avx2, avx512, neon; got '" + name + "'");
    return Napi::String::New(info.Env(), qk::select_isa(isa).name);
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
    const int n = int_arg(info, 0, "setThreads", "n", 1, 1024);
    qk::set_threads(size_t(n));
    return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(qk::threads()));
}

qk::QuantSpec spec_args(const Napi::CallbackInfo& info, size_t i, const char* fn, size_t K) {
    qk::QuantSpec s;
    s.bits = int_arg(info, i, fn, "bits", 2, 8);
    if (s.bits != 8 && s.bits != 4 && s.bits != 2) throw_range(info.Env(), fn, "bits", "must be 8, 4 or 2");
    s.asymmetric = bool_arg(info, i + 1, fn, "asymmetric");
    s.gran = qk::Granularity(int_arg(info, i + 2, fn, "granularity", 0, 2));
    s.group = size_arg(info, i + 3, fn, "groupSize");
    if (s.bits == 2 && !s.asymmetric) throw_range(info.Env(), fn, "scheme", "must be asymmetric for 2 bits");
    if (s.gran == qk::Granularity::group) {
        if (s.group == 0 || K % s.group != 0)
            throw_range(info.Env(), fn, "groupSize", "must divide K = " + std::to_string(K));
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

// gemm(x, M, K, wFormat, w, N, groupSize, scales, zps, bias, y)
//   wFormat: 0 f32, 1 f16, 2 bf16, 3 i8, 4 i4. Y[M,N] = X[M,K] W[N,K]^T + bias.
qk::GemmArgs parse_gemm(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    const size_t M = size_arg(info, 1, fn, "M"), K = size_arg(info, 2, fn, "K");
    const int fmt = int_arg(info, 3, fn, "wFormat", 0, 4);
    const size_t N = size_arg(info, 5, fn, "N");
    View x = typed_arg(info, 0, fn, "x", napi_float32_array, mul_checked(env, fn, M, K));
    qk::GemmArgs a{};
    a.M = M; a.N = N; a.K = K;
    a.x = static_cast<const float*>(x.data); a.ldx = K;
    a.w.fmt = qk::WFormat(fmt);
    a.w.group = K;
    size_t row_bytes = 0;
    switch (a.w.fmt) {
        case qk::WFormat::f32: {
            View w = typed_arg(info, 4, fn, "w", napi_float32_array, mul_checked(env, fn, N, K));
            a.w.data = w.data; row_bytes = 4 * K; break;
        }
        case qk::WFormat::f16:
        case qk::WFormat::bf16: {
            View w = typed_arg(info, 4, fn, "w", napi_uint16_array, mul_checked(env, fn, N, K));
            a.w.data = w.data; row_bytes = 2 * K; break;
        }
        case qk::WFormat::i8:
        case qk::WFormat::i4: {
            const bool i4 = a.w.fmt == qk::WFormat::i4;
            row_bytes = i4 ? (K + 1) / 2 : K;
            View w = typed_arg(info, 4, fn, "w", i4 ? napi_uint8_array : napi_int8_array, mul_checked(env, fn, N, row_bytes));
            a.w.data = w.data;
            const size_t G = size_arg(info, 6, fn, "groupSize");
            if (K > 0 && (G == 0 || K % G != 0)) throw_range(env, fn, "groupSize", "must divide K = " + std::to_string(K));
            if (i4 && K > 0 && G % 2 != 0) throw_range(env, fn, "groupSize", "must be even for int4");
            a.w.group = K > 0 ? G : 1;
            const size_t ns = mul_checked(env, fn, N, K > 0 ? K / G : 0);
            a.w.scales = static_cast<const float*>(typed_arg(info, 7, fn, "scales", napi_float32_array, ns).data);
            a.w.zps = typed_arg(info, 8, fn, "zeroPoints", i4 ? napi_uint8_array : napi_int8_array, ns, true).data;
            break;
        }
    }
    a.w.row_bytes = row_bytes;
    a.bias = static_cast<const float*>(typed_arg(info, 9, fn, "bias", napi_float32_array, N, true).data);
    View y = typed_arg(info, 10, fn, "y", napi_float32_array, mul_checked(env, fn, M, N));
    a.y = static_cast<float*>(y.data); a.ldy = N;
    return a;
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
    return guarded(info, "gemm", [&]() -> Napi::Value {
        qk::gemm(parse_gemm(info, "gemm"));
        return info.Env().Undefined();
    });
}

// ---- Promise forms: the same work on a libuv worker thread ---------------
//
// The calling thread only checks arguments; Execute() touches C++ data only.
// Every JS object the work reads or writes is held by a reference until the
// promise settles, so the garbage collector cannot free a buffer under it.
class PromiseWorker : public Napi::AsyncWorker {
public:
    PromiseWorker(Napi::Env env, const Napi::CallbackInfo& info, size_t n_keep, const char* fn)
        : Napi::AsyncWorker(env, fn), deferred_(Napi::Promise::Deferred::New(env)), fn_(fn) {
        for (size_t i = 0; i < n_keep && i < info.Length(); ++i)
            if (info[i].IsObject()) keep_.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
    }
    Napi::Promise Promise() const { return deferred_.Promise(); }

protected:
    virtual void Run() = 0;
    virtual Napi::Value Result() { return Env().Undefined(); }

private:
    void Execute() override {
        try {
            Run();
        } catch (const std::bad_alloc&) {
            SetError(std::string(fn_) + ": out of memory");
        } catch (const std::exception& e) {
            SetError(std::string(fn_) + ": " + e.what());
        }
    }
    void OnOK() override {
        deferred_.Resolve(Result());
        keep_.clear();
    }
    void OnError(const Napi::Error& e) override {
        Napi::Error err = Napi::Error::New(Env(), e.Message());
        err.Set("code", Napi::String::New(Env(), "ERR_NATIVE"));
        deferred_.Reject(err.Value());
        keep_.clear();
    }

    Napi::Promise::Deferred deferred_;
    const char* fn_;
    std::vector<Napi::ObjectReference> keep_;
};

class GemmWorker : public PromiseWorker {
public:
    GemmWorker(Napi::Env env, const Napi::CallbackInfo& info, const qk::GemmArgs& a)
        : PromiseWorker(env, info, 11, "gemmAsync"), a_(a) {}

private:
    void Run() override { qk::gemm(a_); }
    qk::GemmArgs a_;
};

// gemmAsync(...same arguments as gemm) -> Promise<void>
Napi::Value GemmAsync(const Napi::CallbackInfo& info) {
    return guarded(info, "gemmAsync", [&]() -> Napi::Value {
        const qk::GemmArgs a = parse_gemm(info, "gemmAsync");
        auto* w = new GemmWorker(info.Env(), info, a);
        Napi::Promise p = w->Promise();
        w->Queue();
        return p;
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

// ---- W8A8 (dynamic int8 activations) and LLM.int8() ---------------------

// w8a8Rowsums(q: Int8Array, N, K, rowsum: Int32Array): once per weight.
// Rejects code -128 (the symmetric range is [-127, 127]; the AVX2 kernel's
// saturation-free formulation depends on it) and K beyond int32-exact sums.
Napi::Value W8A8Rowsums(const Napi::CallbackInfo& info) {
    const char* fn = "w8a8Rowsums";
    return guarded(info, fn, [&]() -> Napi::Value {
        const size_t N = size_arg(info, 1, fn, "N"), K = size_arg(info, 2, fn, "K");
        if (K > qk::kW8A8MaxK)
            throw_range(info.Env(), fn, "K", "must be <= " + std::to_string(qk::kW8A8MaxK) + " for exact int32 sums");
        View q = typed_arg(info, 0, fn, "q", napi_int8_array, mul_checked(info.Env(), fn, N, K));
        View rs = typed_arg(info, 3, fn, "rowsum", napi_int32_array, N);
        const int8_t* qp = static_cast<const int8_t*>(q.data);
        for (size_t i = 0; i < N * K; ++i)
            if (qp[i] == -128) throw_range(info.Env(), fn, "q", "holds -128 at index " + std::to_string(i) + "; W8A8 weights are symmetric int8 in [-127, 127]");
        qk::w8a8_rowsums(qp, N, K, static_cast<int32_t*>(rs.data));
        return info.Env().Undefined();
    });
}

// gemmW8A8(x, M, K, q, N, scale, rowsum, threshold, bias, y)
//   threshold < 0: plain W8A8; >= 0: LLM.int8() with that outlier threshold
//   (0 disables the decomposition, giving exactly W8A8).
//   -> [badIndex (-1 if x is finite), outlierColumns]
struct W8A8Call {
    qk::W8A8Weight w;
    const float* x;
    size_t M;
    float threshold;
    bool llm;
    const float* bias;
    float* y;
    size_t bad = SIZE_MAX, outliers = 0;
    void run() {
        if (llm) bad = qk::gemm_llm_int8(w, x, M, threshold, bias, y, &outliers);
        else bad = qk::gemm_w8a8(w, x, M, bias, y);
    }
    Napi::Value result(Napi::Env env) const {
        Napi::Array a = Napi::Array::New(env, 2);
        a.Set(uint32_t(0), Napi::Number::New(env, bad == SIZE_MAX ? -1.0 : double(bad)));
        a.Set(uint32_t(1), Napi::Number::New(env, double(outliers)));
        return a;
    }
};

W8A8Call parse_w8a8(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    W8A8Call c{};
    const size_t M = size_arg(info, 1, fn, "M"), K = size_arg(info, 2, fn, "K"), N = size_arg(info, 4, fn, "N");
    if (K > qk::kW8A8MaxK) throw_range(env, fn, "K", "must be <= " + std::to_string(qk::kW8A8MaxK));
    c.x = static_cast<const float*>(typed_arg(info, 0, fn, "x", napi_float32_array, mul_checked(env, fn, M, K)).data);
    c.w.q = static_cast<const int8_t*>(typed_arg(info, 3, fn, "q", napi_int8_array, mul_checked(env, fn, N, K)).data);
    c.w.scale = static_cast<const float*>(typed_arg(info, 5, fn, "scale", napi_float32_array, N).data);
    c.w.rowsum = static_cast<const int32_t*>(typed_arg(info, 6, fn, "rowsum", napi_int32_array, N).data);
    c.w.N = N;
    c.w.K = K;
    if (!info[7].IsNumber()) throw_type(env, fn, "threshold", "must be a number");
    const double t = info[7].As<Napi::Number>().DoubleValue();
    if (t != t) throw_range(env, fn, "threshold", "must not be NaN");
    c.llm = t >= 0;
    c.threshold = float(t);
    c.M = M;
    c.bias = static_cast<const float*>(typed_arg(info, 8, fn, "bias", napi_float32_array, N, true).data);
    c.y = static_cast<float*>(typed_arg(info, 9, fn, "y", napi_float32_array, mul_checked(env, fn, M, N)).data);
    return c;
}

Napi::Value GemmW8A8(const Napi::CallbackInfo& info) {
    return guarded(info, "gemmW8A8", [&]() -> Napi::Value {
        W8A8Call c = parse_w8a8(info, "gemmW8A8");
        c.run();
        return c.result(info.Env());
    });
}

class W8A8Worker : public PromiseWorker {
public:
    W8A8Worker(Napi::Env env, const Napi::CallbackInfo& info, const W8A8Call& c)
        : PromiseWorker(env, info, 10, "gemmW8A8Async"), c_(c) {}

private:
    void Run() override { c_.run(); }
    Napi::Value Result() override { return c_.result(Env()); }
    W8A8Call c_;
};

Napi::Value GemmW8A8Async(const Napi::CallbackInfo& info) {
    return guarded(info, "gemmW8A8Async", [&]() -> Napi::Value {
        const W8A8Call c = parse_w8a8(info, "gemmW8A8Async");
        auto* w = new W8A8Worker(info.Env(), info, c);
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("isa", Napi::Function::New(env, Isa, "isa"));
    exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures, "cpuFeatures"));
    exports.Set("selectIsa", Napi::Function::New(env, SelectIsa, "selectIsa"));
    exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
    exports.Set("getThreads", Napi::Function::New(env, GetThreads, "getThreads"));
    exports.Set("quantize", Napi::Function::New(env, Quantize, "quantize"));
    exports.Set("dequantize", Napi::Function::New(env, Dequantize, "dequantize"));
    exports.Set("packRows", Napi::Function::New(env, PackRows, "packRows"));
    exports.Set("unpackRows", Napi::Function::New(env, UnpackRows, "unpackRows"));
    exports.Set("toF32", Napi::Function::New(env, ToF32, "toF32"));
    exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
    exports.Set("gemmAsync", Napi::Function::New(env, GemmAsync, "gemmAsync"));
    exports.Set("quantizeAsync", Napi::Function::New(env, QuantizeAsync, "quantizeAsync"));
    exports.Set("w8a8Rowsums", Napi::Function::New(env, W8A8Rowsums, "w8a8Rowsums"));
    exports.Set("gemmW8A8", Napi::Function::New(env, GemmW8A8, "gemmW8A8"));
    exports.Set("gemmW8A8Async", Napi::Function::New(env, GemmW8A8Async, "gemmW8A8Async"));
    exports.Set("streamRead", Napi::Function::New(env, StreamRead, "streamRead"));
    return exports;
}

}  // namespace

NODE_API_MODULE(quantkit, Init)
