// N-API glue for W4A8 (int4 weights, int8 activations per block of 32),
// sync and Promise.
#include <algorithm>
#include <napi.h>

#include <string>
#include <vector>

#include "args.h"
#include "glue.h"
#include "../ops/w4a8_ops.h"
#include "bindings.h"

namespace qkb {

namespace {

// gemmW4A8(x, M, K, w, N, groupSize, scales, zeroPoints, bias, y); scales: Float32Array or Uint16Array of f16 bits
//   w: Uint8Array [N, K/2] packed int4 (two's complement without zero
//   points, unsigned with them); K and groupSize even, groupSize divides K.
//   -> index of the first NaN/Inf of x, or -1.
struct W4A8Call {
    qk::WeightView w;
    size_t N, K, M;
    const float* x;
    const float* bias;
    float* y;
    size_t bad = SIZE_MAX;
    void run() { bad = qk::gemm_w4a8(w, N, K, x, M, bias, y); }
    Napi::Value result(Napi::Env env) const { return Napi::Number::New(env, bad == SIZE_MAX ? -1.0 : double(bad)); }
};

W4A8Call parse_w4a8(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    W4A8Call c{};
    c.M = size_arg(info, 1, fn, "M");
    c.K = size_arg(info, 2, fn, "K");
    c.N = size_arg(info, 4, fn, "N");
    if (c.K % 2 != 0) throw_range(env, fn, "K", "must be even for packed int4 rows");
    const size_t G = size_arg(info, 5, fn, "groupSize");
    if (c.K > 0 && (G == 0 || G % 2 != 0)) throw_range(env, fn, "groupSize", "must be even");
    c.x = static_cast<const float*>(typed_arg(info, 0, fn, "x", napi_float32_array, mul_checked(env, fn, c.M, c.K)).data);
    c.w.fmt = qk::WFormat::i4;
    c.w.data = typed_arg(info, 3, fn, "w", napi_uint8_array, mul_checked(env, fn, c.N, c.K / 2)).data;
    c.w.row_bytes = c.K / 2;
    c.w.group = c.K > 0 ? std::min(G, c.K) : 2;  // G > K: one group of K
    // ceil(K / G) per row (a shorter last group when G does not divide K); K = 0: scales unread
    const size_t ns = c.K > 0 ? mul_checked(env, fn, c.N, (c.K + G - 1) / G) : SIZE_MAX;
    scales_arg(info, 6, fn, ns, c.w);
    c.w.zps = typed_arg(info, 7, fn, "zeroPoints", napi_uint8_array, ns, true).data;
    c.bias = static_cast<const float*>(typed_arg(info, 8, fn, "bias", napi_float32_array, c.N, true).data);
    c.y = static_cast<float*>(typed_arg(info, 9, fn, "y", napi_float32_array, mul_checked(env, fn, c.M, c.N)).data);
    return c;
}

Napi::Value GemmW4A8(const Napi::CallbackInfo& info) {
    return guarded(info, "gemmW4A8", [&]() -> Napi::Value {
        W4A8Call c = parse_w4a8(info, "gemmW4A8");
        c.run();
        return c.result(info.Env());
    });
}

class W4A8Worker : public PromiseWorker {
public:
    W4A8Worker(Napi::Env env, const Napi::CallbackInfo& info, const W4A8Call& c)
        : PromiseWorker(env, info, 10, "gemmW4A8Async"), c_(c) {}

private:
    void Run() override { c_.run(); }
    Napi::Value Result() override { return c_.result(Env()); }
    W4A8Call c_;
};

Napi::Value GemmW4A8Async(const Napi::CallbackInfo& info) {
    return guarded(info, "gemmW4A8Async", [&]() -> Napi::Value {
        const W4A8Call c = parse_w4a8(info, "gemmW4A8Async");
        auto* w = new W4A8Worker(info.Env(), info, c);
        Napi::Promise p = w->Promise();
        w->Queue();
        return p;
    });
}

// gemmW4A8Multi(x, M, K, ws, Ns, groupSizes, scales, zeroPoints, biases, ys):
//   several products of one x [M, K] (arrays of P <= 4 entries, each as
//   gemmW4A8's), x quantized once when the group sizes agree.
//   -> index of the first NaN/Inf of x, or -1.
struct W4A8MultiCall {
    std::vector<qk::W4A8Product> ps;
    size_t K, M;
    const float* x;
    size_t bad = SIZE_MAX;
    void run() { bad = qk::gemm_w4a8_multi(ps.data(), ps.size(), K, x, M); }
    Napi::Value result(Napi::Env env) const { return Napi::Number::New(env, bad == SIZE_MAX ? -1.0 : double(bad)); }
};

W4A8MultiCall parse_w4a8_multi(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    W4A8MultiCall c{};
    c.M = size_arg(info, 1, fn, "M");
    c.K = size_arg(info, 2, fn, "K");
    if (c.K % 2 != 0) throw_range(env, fn, "K", "must be even for packed int4 rows");
    Napi::Array ws = array_arg(info, 3, fn, "ws", SIZE_MAX);
    const size_t P = ws.Length();
    if (P == 0 || P > qk::kW4A8MaxProducts) throw_range(env, fn, "ws", "must hold 1 to " + std::to_string(qk::kW4A8MaxProducts) + " weights");
    Napi::Array Ns = array_arg(info, 4, fn, "Ns", P), Gs = array_arg(info, 5, fn, "groupSizes", P);
    Napi::Array scales = array_arg(info, 6, fn, "scales", P), zps = array_arg(info, 7, fn, "zeroPoints", P);
    Napi::Array biases = array_arg(info, 8, fn, "biases", P), ys = array_arg(info, 9, fn, "ys", P);
    c.x = static_cast<const float*>(typed_arg(info, 0, fn, "x", napi_float32_array, mul_checked(env, fn, c.M, c.K)).data);
    c.ps.resize(P);
    for (size_t p = 0; p < P; ++p) {
        const uint32_t i = uint32_t(p);
        const std::string at = "[" + std::to_string(p) + "]";
        qk::W4A8Product& d = c.ps[p];
        d.N = size_value(env, Ns.Get(i), fn, "Ns" + at);
        const size_t G = size_value(env, Gs.Get(i), fn, "groupSizes" + at);
        if (c.K > 0 && (G == 0 || G % 2 != 0)) throw_range(env, fn, "groupSizes" + at, "must be even");
        d.w.fmt = qk::WFormat::i4;
        d.w.data = typed_value(env, ws.Get(i), fn, "ws" + at, napi_uint8_array, mul_checked(env, fn, d.N, c.K / 2)).data;
        d.w.row_bytes = c.K / 2;
        d.w.group = c.K > 0 ? std::min(G, c.K) : 2;
        const size_t ns = c.K > 0 ? mul_checked(env, fn, d.N, (c.K + G - 1) / G) : SIZE_MAX;
        scales_value(env, scales.Get(i), fn, "scales" + at, ns, d.w);
        d.w.zps = typed_value(env, zps.Get(i), fn, "zeroPoints" + at, napi_uint8_array, ns, true).data;
        d.bias = static_cast<const float*>(typed_value(env, biases.Get(i), fn, "biases" + at, napi_float32_array, d.N, true).data);
        d.y = static_cast<float*>(typed_value(env, ys.Get(i), fn, "ys" + at, napi_float32_array, mul_checked(env, fn, c.M, d.N)).data);
    }
    return c;
}

Napi::Value GemmW4A8Multi(const Napi::CallbackInfo& info) {
    return guarded(info, "gemmW4A8Multi", [&]() -> Napi::Value {
        W4A8MultiCall c = parse_w4a8_multi(info, "gemmW4A8Multi");
        c.run();
        return c.result(info.Env());
    });
}

class W4A8MultiWorker : public PromiseWorker {
public:
    W4A8MultiWorker(Napi::Env env, const Napi::CallbackInfo& info, W4A8MultiCall c)
        : PromiseWorker(env, info, 10, "gemmW4A8MultiAsync"), c_(std::move(c)) {}

private:
    void Run() override { c_.run(); }
    Napi::Value Result() override { return c_.result(Env()); }
    W4A8MultiCall c_;
};

Napi::Value GemmW4A8MultiAsync(const Napi::CallbackInfo& info) {
    return guarded(info, "gemmW4A8MultiAsync", [&]() -> Napi::Value {
        auto* w = new W4A8MultiWorker(info.Env(), info, parse_w4a8_multi(info, "gemmW4A8MultiAsync"));
        Napi::Promise p = w->Promise();
        w->Queue();
        return p;
    });
}

}  // namespace

void register_w4a8(Napi::Env env, Napi::Object exports) {
    exports.Set("gemmW4A8", Napi::Function::New(env, GemmW4A8, "gemmW4A8"));
    exports.Set("gemmW4A8Async", Napi::Function::New(env, GemmW4A8Async, "gemmW4A8Async"));
    exports.Set("gemmW4A8Multi", Napi::Function::New(env, GemmW4A8Multi, "gemmW4A8Multi"));
    exports.Set("gemmW4A8MultiAsync", Napi::Function::New(env, GemmW4A8MultiAsync, "gemmW4A8MultiAsync"));
}

}  // namespace qkb
