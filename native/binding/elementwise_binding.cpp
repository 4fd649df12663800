// N-API glue for the element-wise ops (synchronous: each is a short pass
// over one activation tensor).
#include <napi.h>

#include <cmath>

#include "args.h"
#include "glue.h"
#include "../ops/elementwise_ops.h"
#include "bindings.h"

namespace qkb {

namespace {

// argmax(x: Float32Array, offset, n): the index (from offset) of the largest
// of x[offset .. offset + n), n >= 1 (elementwise_ops.h: first among equals,
// NaN never chosen, 0 when none is above -Infinity).
Napi::Value Argmax(const Napi::CallbackInfo& info) {
    const char* fn = "argmax";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        View x = typed_arg(info, 0, fn, "x", napi_float32_array, SIZE_MAX);
        const size_t offset = size_arg(info, 1, fn, "offset");
        const size_t n = size_arg(info, 2, fn, "n");
        if (n == 0) throw_range(env, fn, "n", "must be >= 1");
        if (offset > x.length || n > x.length - offset) throw_range(env, fn, "n", "runs past the end of 'x'");
        const size_t i = qk::argmax(static_cast<const float*>(x.data) + offset, n);
        return Napi::Number::New(env, double(i));
    });
}

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

// norm(kind: 0 rms | 1 layer, x: Float32Array [rows * D], residual:
// Float32Array [rows * D] | null, w: Float32Array [D] | null, b: Float32Array
// [D] | null, out: Float32Array [rows * D], D, eps): with residual,
// x += residual first (written back); then out = the norm of each row
// (elementwise_ops.h). rms needs w; b is for layer only.
Napi::Value Norm(const Napi::CallbackInfo& info) {
    const char* fn = "norm";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        qk::NormArgs a{};
        const size_t kind = size_arg(info, 0, fn, "kind");
        if (kind > 1) throw_range(env, fn, "kind", "must be 0 (rms) or 1 (layer)");
        a.kind = kind == 0 ? qk::NormKind::rms : qk::NormKind::layer;
        a.D = size_arg(info, 6, fn, "D");
        if (a.D == 0) throw_range(env, fn, "D", "must be >= 1");
        View x = typed_arg(info, 1, fn, "x", napi_float32_array, SIZE_MAX);
        if (x.length % a.D != 0) throw_range(env, fn, "x", "must hold whole rows of D values");
        View res = typed_arg(info, 2, fn, "residual", napi_float32_array, x.length, true);
        View w = typed_arg(info, 3, fn, "w", napi_float32_array, a.D, a.kind == qk::NormKind::layer);
        View b = typed_arg(info, 4, fn, "b", napi_float32_array, a.D, true);
        if (b.data && a.kind == qk::NormKind::rms) throw_range(env, fn, "b", "must be null for an RMS norm");
        View out = typed_arg(info, 5, fn, "out", napi_float32_array, x.length);
        if (!info[7].IsNumber()) throw_type(env, fn, "eps", "must be a number");
        a.eps = info[7].As<Napi::Number>().DoubleValue();
        if (!std::isfinite(a.eps)) throw_range(env, fn, "eps", "must be finite");
        a.x = static_cast<float*>(x.data);
        a.residual = static_cast<const float*>(res.data);
        a.w = static_cast<const float*>(w.data);
        a.b = static_cast<const float*>(b.data);
        a.out = static_cast<float*>(out.data);
        a.rows = x.length / a.D;
        qk::norm_rows(a);
        return env.Undefined();
    });
}

// rope(x: Float32Array [T * nHeads * stride], T, nHeads, stride, half, pos0,
// cos: Float64Array, sin: Float64Array (>= (pos0 + T) * half each),
// interleaved: boolean): rotary embeddings in place (elementwise_ops.h).
Napi::Value Rope(const Napi::CallbackInfo& info) {
    const char* fn = "rope";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        qk::RopeArgs a{};
        a.T = size_arg(info, 1, fn, "T");
        a.n_heads = size_arg(info, 2, fn, "nHeads");
        a.stride = size_arg(info, 3, fn, "stride");
        a.half = size_arg(info, 4, fn, "half");
        a.pos0 = size_arg(info, 5, fn, "pos0");
        if (2 * a.half > a.stride) throw_range(env, fn, "half", "must be at most stride / 2");
        const size_t n = mul_checked(env, fn, mul_checked(env, fn, a.T, a.n_heads), a.stride);
        a.x = static_cast<float*>(typed_arg(info, 0, fn, "x", napi_float32_array, n).data);
        const size_t tab = mul_checked(env, fn, a.pos0 + a.T, a.half);
        View c = typed_arg(info, 6, fn, "cos", napi_float64_array, SIZE_MAX);
        View s = typed_arg(info, 7, fn, "sin", napi_float64_array, SIZE_MAX);
        if (c.length < tab) throw_range(env, fn, "cos", "must hold at least (pos0 + T) * half values");
        if (s.length < tab) throw_range(env, fn, "sin", "must hold at least (pos0 + T) * half values");
        if (!info[8].IsBoolean()) throw_type(env, fn, "interleaved", "must be a boolean");
        a.cos = static_cast<const double*>(c.data);
        a.sin = static_cast<const double*>(s.data);
        a.interleaved = info[8].As<Napi::Boolean>().Value();
        qk::rope(a);
        return env.Undefined();
    });
}

// geluTanh(x: Float32Array): GELU (tanh form) in place.
Napi::Value GeluTanh(const Napi::CallbackInfo& info) {
    const char* fn = "geluTanh";
    return guarded(info, fn, [&]() -> Napi::Value {
        View x = typed_arg(info, 0, fn, "x", napi_float32_array, SIZE_MAX);
        qk::gelu_tanh(static_cast<float*>(x.data), x.length);
        return info.Env().Undefined();
    });
}

// addInPlace(x: Float32Array, y: Float32Array of the same length): x += y.
Napi::Value AddInPlace(const Napi::CallbackInfo& info) {
    const char* fn = "addInPlace";
    return guarded(info, fn, [&]() -> Napi::Value {
        View x = typed_arg(info, 0, fn, "x", napi_float32_array, SIZE_MAX);
        View y = typed_arg(info, 1, fn, "y", napi_float32_array, x.length);
        qk::add_inplace(static_cast<float*>(x.data), static_cast<const float*>(y.data), x.length);
        return info.Env().Undefined();
    });
}

}  // namespace

void register_elementwise(Napi::Env env, Napi::Object exports) {
    exports.Set("siluMul", Napi::Function::New(env, SiluMul, "siluMul"));
    exports.Set("argmax", Napi::Function::New(env, Argmax, "argmax"));
    exports.Set("norm", Napi::Function::New(env, Norm, "norm"));
    exports.Set("addInPlace", Napi::Function::New(env, AddInPlace, "addInPlace"));
    exports.Set("rope", Napi::Function::New(env, Rope, "rope"));
    exports.Set("geluTanh", Napi::Function::New(env, GeluTanh, "geluTanh"));
}

}  // namespace qkb
