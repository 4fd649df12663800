// N-API glue for the float64 linear algebra of calibrated quantization.
#include <napi.h>

#include "../ops/linalg_ops.h"
#include "args.h"
#include "bindings.h"
#include "glue.h"

namespace qkb {

namespace {

// cholInverseUpper(h: Float64Array [K*K], K) -> boolean: h becomes U with
// H^-1 = U^T U (see linalg_ops.h); false when H is not positive definite.
Napi::Value CholInverseUpper(const Napi::CallbackInfo& info) {
    const char* fn = "cholInverseUpper";
    return guarded(info, fn, [&]() -> Napi::Value {
        const size_t K = size_arg(info, 1, fn, "K");
        View h = typed_arg(info, 0, fn, "h", napi_float64_array, mul_checked(info.Env(), fn, K, K));
        return Napi::Boolean::New(info.Env(), qk::chol_inverse_upper(static_cast<double*>(h.data), K));
    });
}

}  // namespace

void register_linalg(Napi::Env env, Napi::Object exports) {
    exports.Set("cholInverseUpper", Napi::Function::New(env, CholInverseUpper, "cholInverseUpper"));
}

}  // namespace qkb
