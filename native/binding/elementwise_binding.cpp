// N-API glue for the element-wise activation ops (synchronous: each is a
// short pass over one activation tensor).
#include <napi.h>

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

}  // namespace

void register_elementwise(Napi::Env env, Napi::Object exports) {
    exports.Set("siluMul", Napi::Function::New(env, SiluMul, "siluMul"));
}

}  // namespace qkb
