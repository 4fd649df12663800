// N-API glue for the f32-activation GEMM (every weight format), sync and Promise.
#include <algorithm>
#include <napi.h>

#include <string>

#include "args.h"
#include "glue.h"
#include "../ops/gemm_ops.h"
#include "bindings.h"

namespace qkb {

namespace {

// gemm(x, M, K, wFormat, w, N, groupSize, scales, zps, bias, y, rowInvariant = 0)
//   wFormat: 0 f32, 1 f16, 2 bf16, 3 i8, 4 i4. Y[M,N] = X[M,K] W[N,K]^T + bias.
//   scales (i8, i4): Float32Array, or Uint16Array of f16 bits.
//   rowInvariant: 0 off; 1 a row's result does not depend on M, small-M
//   kernel at every M; 2 the same with the large-M kernel (GemmArgs).
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
            if (K > 0 && G == 0) throw_range(env, fn, "groupSize", "must be >= 1");
            if (i4 && K > 0 && G % 2 != 0) throw_range(env, fn, "groupSize", "must be even for int4");
            if (i4 && K > 0 && K % G != 0 && K % 2 != 0) throw_range(env, fn, "K", "must be even for int4 with a shorter last group");
            // G > K: one group of K per row.
            a.w.group = K > 0 ? std::min(G, K) : 1;
            // K = 0: no weights, so scales are never read; a weight quantized
            // per channel or per tensor still carries one per row, accept any
            // count (y is just the bias, as for float weights). Otherwise
            // ceil(K / G) per row: the last group is shorter when G does not divide K.
            const size_t ns = K > 0 ? mul_checked(env, fn, N, (K + G - 1) / G) : SIZE_MAX;
            scales_arg(info, 7, fn, ns, a.w);
            a.w.zps = typed_arg(info, 8, fn, "zeroPoints", i4 ? napi_uint8_array : napi_int8_array, ns, true).data;
            break;
        }
    }
    a.w.row_bytes = row_bytes;
    a.bias = static_cast<const float*>(typed_arg(info, 9, fn, "bias", napi_float32_array, N, true).data);
    View y = typed_arg(info, 10, fn, "y", napi_float32_array, mul_checked(env, fn, M, N));
    a.y = static_cast<float*>(y.data); a.ldy = N;
    if (info.Length() > 11 && !info[11].IsUndefined()) {
        const int mode = int_arg(info, 11, fn, "rowInvariant", 0, 2);
        a.row_invariant = mode != 0;
        a.invariant_panel = mode == 2;
    }
    return a;
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
    return guarded(info, "gemm", [&]() -> Napi::Value {
        qk::gemm(parse_gemm(info, "gemm"));
        return info.Env().Undefined();
    });
}

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

}  // namespace

void register_gemm(Napi::Env env, Napi::Object exports) {
    exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
    exports.Set("gemmAsync", Napi::Function::New(env, GemmAsync, "gemmAsync"));
}

}  // namespace qkb
