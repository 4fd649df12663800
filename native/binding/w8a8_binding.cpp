// N-API glue for dynamic W8A8 and LLM.int8(), sync and Promise.
#include <napi.h>

#include <string>
#include <vector>

#include "args.h"
#include "glue.h"
#include "../ops/w8a8_ops.h"
#include "bindings.h"

namespace qkb {

namespace {

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

// gemmW8A8(x, M, K, q, N, scale, rowsum, threshold, bias, y, perRow = false)
//   threshold < 0: plain W8A8; >= 0: LLM.int8() with that outlier threshold
//   (0 disables the decomposition, giving exactly W8A8); perRow: LLM.int8()
//   with each row's own outlier columns (row-invariant, gemm_llm_int8_rows).
//   -> [badIndex (-1 if x is finite), outlierColumns (per row: the most of any row)]
struct W8A8Call {
    qk::W8A8Weight w;
    const float* x;
    size_t M;
    float threshold;
    bool llm;
    bool per_row;
    const float* bias;
    float* y;
    size_t bad = SIZE_MAX, outliers = 0;
    void run() {
        if (llm && per_row) bad = qk::gemm_llm_int8_rows(w, x, M, threshold, bias, y, &outliers);
        else if (llm) bad = qk::gemm_llm_int8(w, x, M, threshold, bias, y, &outliers);
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
    c.per_row = info.Length() > 10 && !info[10].IsUndefined() && bool_arg(info, 10, fn, "perRow");
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

// gemmW8A8Multi(x, M, K, qs, Ns, scales, rowsums, biases, ys): several
//   dynamic W8A8 products of one x [M, K] (arrays of P <= 4 entries, each
//   as gemmW8A8's), x quantized once. -> index of the first NaN/Inf of x, or -1.
struct W8A8MultiCall {
    std::vector<qk::W8A8Product> ps;
    size_t M;
    const float* x;
    size_t bad = SIZE_MAX;
    void run() { bad = qk::gemm_w8a8_multi(ps.data(), ps.size(), x, M); }
    Napi::Value result(Napi::Env env) const { return Napi::Number::New(env, bad == SIZE_MAX ? -1.0 : double(bad)); }
};

W8A8MultiCall parse_w8a8_multi(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    W8A8MultiCall c{};
    c.M = size_arg(info, 1, fn, "M");
    const size_t K = size_arg(info, 2, fn, "K");
    if (K > qk::kW8A8MaxK) throw_range(env, fn, "K", "must be <= " + std::to_string(qk::kW8A8MaxK));
    Napi::Array qs = array_arg(info, 3, fn, "qs", SIZE_MAX);
    const size_t P = qs.Length();
    if (P == 0 || P > qk::kW8A8MaxProducts) throw_range(env, fn, "qs", "must hold 1 to " + std::to_string(qk::kW8A8MaxProducts) + " weights");
    Napi::Array Ns = array_arg(info, 4, fn, "Ns", P), scales = array_arg(info, 5, fn, "scales", P);
    Napi::Array rowsums = array_arg(info, 6, fn, "rowsums", P), biases = array_arg(info, 7, fn, "biases", P);
    Napi::Array ys = array_arg(info, 8, fn, "ys", P);
    c.x = static_cast<const float*>(typed_arg(info, 0, fn, "x", napi_float32_array, mul_checked(env, fn, c.M, K)).data);
    c.ps.resize(P);
    for (size_t p = 0; p < P; ++p) {
        const uint32_t i = uint32_t(p);
        const std::string at = "[" + std::to_string(p) + "]";
        qk::W8A8Product& d = c.ps[p];
        const size_t N = size_value(env, Ns.Get(i), fn, "Ns" + at);
        d.w.N = N;
        d.w.K = K;
        d.w.q = static_cast<const int8_t*>(typed_value(env, qs.Get(i), fn, "qs" + at, napi_int8_array, mul_checked(env, fn, N, K)).data);
        d.w.scale = static_cast<const float*>(typed_value(env, scales.Get(i), fn, "scales" + at, napi_float32_array, N).data);
        d.w.rowsum = static_cast<const int32_t*>(typed_value(env, rowsums.Get(i), fn, "rowsums" + at, napi_int32_array, N).data);
        d.bias = static_cast<const float*>(typed_value(env, biases.Get(i), fn, "biases" + at, napi_float32_array, N, true).data);
        d.y = static_cast<float*>(typed_value(env, ys.Get(i), fn, "ys" + at, napi_float32_array, mul_checked(env, fn, c.M, N)).data);
    }
    return c;
}

Napi::Value GemmW8A8Multi(const Napi::CallbackInfo& info) {
    return guarded(info, "gemmW8A8Multi", [&]() -> Napi::Value {
        W8A8MultiCall c = parse_w8a8_multi(info, "gemmW8A8Multi");
        c.run();
        return c.result(info.Env());
    });
}

class W8A8MultiWorker : public PromiseWorker {
public:
    W8A8MultiWorker(Napi::Env env, const Napi::CallbackInfo& info, W8A8MultiCall c)
        : PromiseWorker(env, info, 9, "gemmW8A8MultiAsync"), c_(std::move(c)) {}

private:
    void Run() override { c_.run(); }
    Napi::Value Result() override { return c_.result(Env()); }
    W8A8MultiCall c_;
};

Napi::Value GemmW8A8MultiAsync(const Napi::CallbackInfo& info) {
    return guarded(info, "gemmW8A8MultiAsync", [&]() -> Napi::Value {
        auto* w = new W8A8MultiWorker(info.Env(), info, parse_w8a8_multi(info, "gemmW8A8MultiAsync"));
        Napi::Promise p = w->Promise();
        w->Queue();
        return p;
    });
}

}  // namespace

void register_w8a8(Napi::Env env, Napi::Object exports) {
    exports.Set("w8a8Rowsums", Napi::Function::New(env, W8A8Rowsums, "w8a8Rowsums"));
    exports.Set("gemmW8A8", Napi::Function::New(env, GemmW8A8, "gemmW8A8"));
    exports.Set("gemmW8A8Async", Napi::Function::New(env, GemmW8A8Async, "gemmW8A8Async"));
    exports.Set("gemmW8A8Multi", Napi::Function::New(env, GemmW8A8Multi, "gemmW8A8Multi"));
    exports.Set("gemmW8A8MultiAsync", Napi::Function::New(env, GemmW8A8MultiAsync, "gemmW8A8MultiAsync"));
}

}  // namespace qkb
