// N-API glue for the element-wise activation ops (synchronous: each is a
// short pass over one activation tensor).
#include <napi.h>

#include <cmath>

#include "args.h"
#include "glue.h"
#include "../ops/elementwise_ops.h"
#include "bindings.h"

namespace qkb {

namespace {

// siluMul(g: Float32Array, u: Float32Array of the same length): g = silu(g) * u.
Napi::Value SiluMul(const Napi::CallbackInfo& info) {
    const char* fn = "siluMul";
    return guarded(info, fn, [&]() -> Napi::Value {
        View g = typed_arg(info, 0, fn, "g", napi_float32_array, SIZE_MAX);
        View u = typed_arg(info, 1, fn, "u", napi_float32_array, g.length);
        qk::silu_mul(static_cast<float*>(g.data), static_cast<const float*>(u.data), g.length);
        return info.Env().Undefined();
    });
}

// rmsNorm(x: Float32Array [rows * D], w: Float32Array [D], out: Float32Array
// [rows * D] (may be x), D, eps): out = RMSNorm(x) * w per row of D values.
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
    const char* fn = "rmsNorm";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        const size_t D = size_arg(info, 3, fn, "D");
        if (D == 0) throw_range(env, fn, "D", "must be >= 1");
        View x = typed_arg(info, 0, fn, "x", napi_float32_array, SIZE_MAX);
        if (x.length % D != 0) throw_range(env, fn, "x", "must hold whole rows of D values");
        View w = typed_arg(info, 1, fn, "w", napi_float32_array, D);
        View out = typed_arg(info, 2, fn, "out", napi_float32_array, x.length);
        if (!info[4].IsNumber()) throw_type(env, fn, "eps", "must be a number");
        const double eps = info[4].As<Napi::Number>().DoubleValue();
        if (!std::isfinite(eps)) throw_range(env, fn, "eps", "must be finite");
        qk::rms_norm(static_cast<const float*>(x.data), static_cast<const float*>(w.data), static_cast<float*>(out.data), x.length / D, D, eps);
        return env.Undefined();
    });
}

}  // namespace

void register_elementwise(Napi::Env env, Napi::Object exports) {
    exports.Set("siluMul", Napi::Function::New(env, SiluMul, "siluMul"));
    exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm, "rmsNorm"));
}

}  // namespace qkb
