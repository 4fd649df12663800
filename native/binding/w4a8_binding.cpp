// N-API glue for W4A8 (int4 weights, int8 activations per block of 32),
// sync and Promise.
#include <algorithm>
#include <napi.h>

#include <string>

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

}  // namespace

void register_w4a8(Napi::Env env, Napi::Object exports) {
    exports.Set("gemmW4A8", Napi::Function::New(env, GemmW4A8, "gemmW4A8"));
    exports.Set("gemmW4A8Async", Napi::Function::New(env, GemmW4A8Async, "gemmW4A8Async"));
}

}  // namespace qkb
