// N-API glue for the float64 linear algebra of calibrated quantization.
#include <napi.h>

#include <cmath>
#include <functional>
#include <utility>

#include "../dispatch.h"
#include "../ops/linalg_ops.h"
#include "args.h"
#include "bindings.h"
#include "glue.h"

namespace qkb {

namespace {

// Every function here has a blocking form and an Async one (same
// arguments, a Promise<boolean>): the arguments are checked on the JS
// thread, then `work` runs there or on a libuv worker thread, holding the
// argument arrays until it settles. Calibrated quantization's async form
// (quantizeModelAsync) keeps the event loop free this way.
using Work = std::function<bool()>;

class LinalgWorker : public PromiseWorker {
public:
    LinalgWorker(Napi::Env env, const Napi::CallbackInfo& info, const char* fn, Work work)
        : PromiseWorker(env, info, info.Length(), fn), work_(std::move(work)) {}

private:
    void Run() override { ok_ = work_(); }
    Napi::Value Result() override { return Napi::Boolean::New(Env(), ok_); }
    Work work_;
    bool ok_ = false;
};

template <bool Async>
Napi::Value finish(const Napi::CallbackInfo& info, const char* fn, Work work) {
    if constexpr (Async) {
        auto* w = new LinalgWorker(info.Env(), info, fn, std::move(work));
        Napi::Promise p = w->Promise();
        w->Queue();
        return p;
    } else {
        return Napi::Boolean::New(info.Env(), work());
    }
}

// cholInverseUpper(h: Float64Array [K*K], K) -> boolean: h becomes U with
// H^-1 = U^T U (see linalg_ops.h); false when H is not positive definite.
template <bool Async>
Napi::Value CholInverseUpper(const Napi::CallbackInfo& info) {
    const char* fn = Async ? "cholInverseUpperAsync" : "cholInverseUpper";
    return guarded(info, fn, [&]() -> Napi::Value {
        const size_t K = size_arg(info, 1, fn, "K");
        double* h = static_cast<double*>(typed_arg(info, 0, fn, "h", napi_float64_array, mul_checked(info.Env(), fn, K, K)).data);
        return finish<Async>(info, fn, [h, K] { return qk::chol_inverse_upper(qk::kernels(), h, K); });
    });
}

// A signed 32-bit integer argument.
int32_t int32_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
    Napi::Value v = info[i];
    if (!v.IsNumber()) throw_type(info.Env(), fn, name, "must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d == std::trunc(d)) || d < -2147483648.0 || d > 2147483647.0)
        throw_range(info.Env(), fn, name, "must be a 32-bit integer");
    return int32_t(d);
}

// The walk state of gptqWalk (its arguments but p0 and p1).
qk::GptqWalk parse_walk(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    qk::GptqWalk g{};
    g.N = size_arg(info, 1, fn, "N");
    g.K = size_arg(info, 2, fn, "K");
    const size_t NK = mul_checked(env, fn, g.N, g.K);
    g.w = static_cast<float*>(typed_arg(info, 0, fn, "w", napi_float32_array, NK).data);
    g.u = static_cast<const double*>(typed_arg(info, 3, fn, "u", napi_float64_array, mul_checked(env, fn, g.K, g.K)).data);
    g.col = static_cast<const int32_t*>(typed_arg(info, 4, fn, "col", napi_int32_array, g.K).data);
    g.G = size_arg(info, 7, fn, "G");
    if (g.G == 0) throw_range(env, fn, "G", "must be >= 1");
    g.ng = (g.K + g.G - 1) / g.G;
    g.scales = static_cast<const float*>(typed_arg(info, 5, fn, "scales", napi_float32_array, mul_checked(env, fn, g.N, g.ng)).data);
    g.zps = static_cast<const int32_t*>(typed_arg(info, 6, fn, "zps", napi_int32_array, g.N * g.ng).data);
    g.qmin = int32_arg(info, 8, fn, "qmin");
    g.qmax = int32_arg(info, 9, fn, "qmax");
    if (g.qmin < -128 || g.qmax > 127 || g.qmin > g.qmax) throw_range(env, fn, "qmin", "and qmax must satisfy -128 <= qmin <= qmax <= 127");
    g.codes = static_cast<int8_t*>(typed_arg(info, 10, fn, "codes", napi_int8_array, NK).data);
    g.b0 = size_arg(info, 12, fn, "b0");
    g.b1 = size_arg(info, 15, fn, "b1");
    if (!(g.b0 <= g.b1 && g.b1 <= g.K)) throw_range(env, fn, "b1", "must satisfy b0 <= b1 <= K");
    g.e = static_cast<float*>(typed_arg(info, 11, fn, "e", napi_float32_array, g.N * (g.b1 - g.b0)).data);
    return g;
}

// gptqWalk(w: Float32Array [N*K], N, K, u: Float64Array [K*K], col: Int32Array [K],
//          scales: Float32Array [N*ng], zps: Int32Array [N*ng], G, qmin, qmax,
//          codes: Int8Array [N*K], e: Float32Array [N*(b1-b0)], b0, p0, p1, b1):
// columns [p0, p1) of GPTQ's walk (qk::gptq_walk, linalg_ops.h).
template <bool Async>
Napi::Value GptqWalkFn(const Napi::CallbackInfo& info) {
    const char* fn = Async ? "gptqWalkAsync" : "gptqWalk";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        const qk::GptqWalk g = parse_walk(info, fn);
        const size_t p0 = size_arg(info, 13, fn, "p0"), p1 = size_arg(info, 14, fn, "p1");
        if (!(g.b0 <= p0 && p0 <= p1 && p1 <= g.b1)) throw_range(env, fn, "b1", "must satisfy b0 <= p0 <= p1 <= b1 <= K");
        // What the walk reads: in-range columns, nonzero pivots, usable scales of their groups.
        for (size_t p = p0; p < p1; ++p) {
            if (g.col[p] < 0 || size_t(g.col[p]) >= g.K) throw_range(env, fn, "col", "has a column outside [0, K)");
            if (!(g.u[p * g.K + p] != 0.0)) throw_range(env, fn, "u", "has a zero diagonal entry in the walked columns");
            const size_t grp = size_t(g.col[p]) / g.G;
            for (size_t n = 0; n < g.N; ++n) {
                const float s = g.scales[n * g.ng + grp];
                if (!(s > 0) || !std::isfinite(s)) throw_range(env, fn, "scales", "must be finite and > 0");
            }
        }
        return finish<Async>(info, fn, [g, p0, p1] {
            qk::gptq_walk(g, p0, p1);
            return true;
        });
    });
}

// gptqLazyUpdate(w: Float32Array [N*K], N, K, u: Float64Array [K*K], e: Float32Array [N*(b1-b0)], b0, b1):
// W[:, b1:] -= E · U[b0:b1, b1:] (qk::gptq_lazy_update).
template <bool Async>
Napi::Value GptqLazyUpdateFn(const Napi::CallbackInfo& info) {
    const char* fn = Async ? "gptqLazyUpdateAsync" : "gptqLazyUpdate";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        const size_t N = size_arg(info, 1, fn, "N"), K = size_arg(info, 2, fn, "K");
        float* w = static_cast<float*>(typed_arg(info, 0, fn, "w", napi_float32_array, mul_checked(env, fn, N, K)).data);
        const double* u = static_cast<const double*>(typed_arg(info, 3, fn, "u", napi_float64_array, mul_checked(env, fn, K, K)).data);
        const size_t b0 = size_arg(info, 5, fn, "b0"), b1 = size_arg(info, 6, fn, "b1");
        if (!(b0 <= b1 && b1 <= K)) throw_range(env, fn, "b1", "must satisfy b0 <= b1 <= K");
        const float* e = static_cast<const float*>(typed_arg(info, 4, fn, "e", napi_float32_array, N * (b1 - b0)).data);
        return finish<Async>(info, fn, [=] {
            qk::gptq_lazy_update(qk::kernels(), w, N, K, u, e, b0, b1);
            return true;
        });
    });
}

// The shared checks of the clipping-search helpers: x [N*L], groups of G,
// per-group arrays of N * ceil(L / G).
struct ClipShape {
    size_t N, L, G, groups;
};
ClipShape clip_shape(const Napi::CallbackInfo& info, const char* fn) {
    ClipShape c{};
    c.N = size_arg(info, 1, fn, "N");
    c.L = size_arg(info, 2, fn, "L");
    c.G = size_arg(info, 3, fn, "G");
    if (c.G == 0) throw_range(info.Env(), fn, "G", "must be >= 1");
    c.groups = mul_checked(info.Env(), fn, c.N, (c.L + c.G - 1) / c.G);
    return c;
}

// The arguments the group-fit helpers share: x [N*L], groups of G, scales
// and zps [N*ceil(L/G)], qmin, qmax, h [ldh*ldh] and k0 (k0 + L <= ldh).
struct GroupFitArgs {
    ClipShape c;
    const float* x;
    float* scales;
    const int32_t* zps;
    int32_t qmin, qmax;
    const double* h;
    size_t ldh, k0;
};
GroupFitArgs group_fit_args(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    GroupFitArgs g{};
    g.c = clip_shape(info, fn);
    g.x = static_cast<const float*>(typed_arg(info, 0, fn, "x", napi_float32_array, mul_checked(env, fn, g.c.N, g.c.L)).data);
    g.scales = static_cast<float*>(typed_arg(info, 4, fn, "scales", napi_float32_array, g.c.groups).data);
    g.zps = info[5].IsNull() ? nullptr : static_cast<const int32_t*>(typed_arg(info, 5, fn, "zps", napi_int32_array, g.c.groups).data);
    g.qmin = int32_arg(info, 6, fn, "qmin");
    g.qmax = int32_arg(info, 7, fn, "qmax");
    if (g.qmin < -128 || g.qmax > 127 || g.qmin > g.qmax) throw_range(env, fn, "qmin", "and qmax must satisfy -128 <= qmin <= qmax <= 127");
    g.ldh = size_arg(info, 9, fn, "ldh");
    g.k0 = size_arg(info, 10, fn, "k0");
    if (g.k0 > g.ldh || g.c.L > g.ldh - g.k0) throw_range(env, fn, "k0", "+ L must be <= ldh");
    g.h = static_cast<const double*>(typed_arg(info, 8, fn, "h", napi_float64_array, mul_checked(env, fn, g.ldh, g.ldh)).data);
    for (size_t i = 0; i < g.c.groups; ++i)
        if (!(g.scales[i] > 0) || !std::isfinite(g.scales[i])) throw_range(env, fn, "scales", "must be finite and > 0");
    return g;
}

// gptqGroupErrors(x: Float32Array [N*L], N, L, G, scales: Float32Array, zps: Int32Array | null,
//                 qmin, qmax, h: Float64Array [ldh*ldh], ldh, k0, out: Float64Array [N*ceil(L/G)])
template <bool Async>
Napi::Value GptqGroupErrorsFn(const Napi::CallbackInfo& info) {
    const char* fn = Async ? "gptqGroupErrorsAsync" : "gptqGroupErrors";
    return guarded(info, fn, [&]() -> Napi::Value {
        const GroupFitArgs g = group_fit_args(info, fn);
        double* out = static_cast<double*>(typed_arg(info, 11, fn, "out", napi_float64_array, g.c.groups).data);
        return finish<Async>(info, fn, [=] {
            qk::gptq_group_errors(qk::kernels(), g.x, g.c.N, g.c.L, g.c.G, g.scales, g.zps, g.qmin, g.qmax, g.h, g.ldh, g.k0, out);
            return true;
        });
    });
}

// gptqGroupRefit(x, N, L, G, scales (updated), zps, qmin, qmax, h, ldh, k0, rounds,
//                err: Float64Array [N*ceil(L/G)] (updated))
template <bool Async>
Napi::Value GptqGroupRefitFn(const Napi::CallbackInfo& info) {
    const char* fn = Async ? "gptqGroupRefitAsync" : "gptqGroupRefit";
    return guarded(info, fn, [&]() -> Napi::Value {
        const GroupFitArgs g = group_fit_args(info, fn);
        const size_t rounds = size_arg(info, 11, fn, "rounds");
        double* err = static_cast<double*>(typed_arg(info, 12, fn, "err", napi_float64_array, g.c.groups).data);
        return finish<Async>(info, fn, [=] {
            qk::gptq_group_refit(qk::kernels(), g.x, g.c.N, g.c.L, g.c.G, g.scales, g.zps, g.qmin, g.qmax, g.h, g.ldh, g.k0, rounds, err);
            return true;
        });
    });
}

// clampGroups(x: Float32Array [N*L], N, L, G, lo: Float32Array, hi: Float32Array, c, out: Float32Array [N*L])
template <bool Async>
Napi::Value ClampGroupsFn(const Napi::CallbackInfo& info) {
    const char* fn = Async ? "clampGroupsAsync" : "clampGroups";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        const ClipShape c = clip_shape(info, fn);
        const size_t NL = mul_checked(env, fn, c.N, c.L);
        const float* x = static_cast<const float*>(typed_arg(info, 0, fn, "x", napi_float32_array, NL).data);
        const float* lo = static_cast<const float*>(typed_arg(info, 4, fn, "lo", napi_float32_array, c.groups).data);
        const float* hi = static_cast<const float*>(typed_arg(info, 5, fn, "hi", napi_float32_array, c.groups).data);
        if (!info[6].IsNumber()) throw_type(env, fn, "c", "must be a number");
        const double factor = info[6].As<Napi::Number>().DoubleValue();
        if (!std::isfinite(factor)) throw_range(env, fn, "c", "must be finite");
        float* out = static_cast<float*>(typed_arg(info, 7, fn, "out", napi_float32_array, NL).data);
        return finish<Async>(info, fn, [=] {
            qk::clamp_groups(x, c.N, c.L, c.G, lo, hi, factor, out);
            return true;
        });
    });
}

}  // namespace

void register_linalg(Napi::Env env, Napi::Object exports) {
    exports.Set("cholInverseUpper", Napi::Function::New(env, CholInverseUpper<false>, "cholInverseUpper"));
    exports.Set("cholInverseUpperAsync", Napi::Function::New(env, CholInverseUpper<true>, "cholInverseUpperAsync"));
    exports.Set("gptqWalk", Napi::Function::New(env, GptqWalkFn<false>, "gptqWalk"));
    exports.Set("gptqWalkAsync", Napi::Function::New(env, GptqWalkFn<true>, "gptqWalkAsync"));
    exports.Set("gptqLazyUpdate", Napi::Function::New(env, GptqLazyUpdateFn<false>, "gptqLazyUpdate"));
    exports.Set("gptqLazyUpdateAsync", Napi::Function::New(env, GptqLazyUpdateFn<true>, "gptqLazyUpdateAsync"));
    exports.Set("gptqGroupRefit", Napi::Function::New(env, GptqGroupRefitFn<false>, "gptqGroupRefit"));
    exports.Set("gptqGroupRefitAsync", Napi::Function::New(env, GptqGroupRefitFn<true>, "gptqGroupRefitAsync"));
    exports.Set("gptqGroupErrors", Napi::Function::New(env, GptqGroupErrorsFn<false>, "gptqGroupErrors"));
    exports.Set("gptqGroupErrorsAsync", Napi::Function::New(env, GptqGroupErrorsFn<true>, "gptqGroupErrorsAsync"));
    exports.Set("clampGroups", Napi::Function::New(env, ClampGroupsFn<false>, "clampGroups"));
    exports.Set("clampGroupsAsync", Napi::Function::New(env, ClampGroupsFn<true>, "clampGroupsAsync"));
}

}  // namespace qkb
