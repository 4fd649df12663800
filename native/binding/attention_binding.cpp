// N-API glue for causal decode attention over a KV cache, sync and Promise.
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "args.h"
#include "glue.h"
#include "../ops/attention_ops.h"
#include "bindings.h"

namespace qkb {

namespace {

// nHeads, nKvHeads, headDim, scale at info[i .. i + 3] into a.
void parse_heads(const Napi::CallbackInfo& info, size_t i, const char* fn, qk::AttnArgs& a) {
    Napi::Env env = info.Env();
    a.n_heads = size_arg(info, i, fn, "nHeads");
    a.n_kv_heads = size_arg(info, i + 1, fn, "nKvHeads");
    a.head_dim = size_arg(info, i + 2, fn, "headDim");
    if (a.n_heads == 0) throw_range(env, fn, "nHeads", "must be positive");
    if (a.n_kv_heads == 0 || a.n_heads % a.n_kv_heads != 0)
        throw_range(env, fn, "nKvHeads", "must be positive and divide nHeads");
    if (a.head_dim == 0) throw_range(env, fn, "headDim", "must be positive");
    if (!info[i + 3].IsNumber()) throw_type(env, fn, "scale", "must be a number");
    const double scale = info[i + 3].As<Napi::Number>().DoubleValue();
    if (!std::isfinite(scale)) throw_range(env, fn, "scale", "must be finite");
    a.scale = float(scale);
}

// attention(q, T, pos0, keys, values, nHeads, nKvHeads, headDim, scale, out, causal = true)
//   q, out: Float32Array [T * nHeads * headDim]; keys: Float32Array in the
//   blocked layout of attention_ops.h, at least attn_key_floats(pos0 + T,
//   kvDim); values: Float32Array of at least (pos0 + T) * kvDim (a cache
//   may be longer).
qk::AttnArgs parse_attention(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    qk::AttnArgs a{};
    a.T = size_arg(info, 1, fn, "T");
    a.pos0 = size_arg(info, 2, fn, "pos0");
    parse_heads(info, 5, fn, a);
    const size_t q_len = mul_checked(env, fn, mul_checked(env, fn, a.T, a.n_heads), a.head_dim);
    const size_t kv_dim = mul_checked(env, fn, a.n_kv_heads, a.head_dim);
    const size_t kv_len = mul_checked(env, fn, a.pos0 + a.T, kv_dim);
    const size_t k_len = mul_checked(env, fn, (a.pos0 + a.T + qk::kAttnBlock - 1) / qk::kAttnBlock * qk::kAttnBlock, kv_dim);
    a.q = static_cast<const float*>(typed_arg(info, 0, fn, "q", napi_float32_array, q_len).data);
    View k = typed_arg(info, 3, fn, "keys", napi_float32_array, SIZE_MAX);
    View v = typed_arg(info, 4, fn, "values", napi_float32_array, SIZE_MAX);
    if (k.length < k_len) throw_range(env, fn, "keys", "must hold at least " + std::to_string(k_len) + " floats (whole blocks of 64 positions), got " + std::to_string(k.length));
    if (v.length < kv_len) throw_range(env, fn, "values", "must hold at least " + std::to_string(kv_len) + " floats, got " + std::to_string(v.length));
    a.keys = static_cast<const float*>(k.data);
    a.values = static_cast<const float*>(v.data);
    a.out = static_cast<float*>(typed_arg(info, 9, fn, "out", napi_float32_array, q_len).data);
    if (info.Length() > 10 && !info[10].IsUndefined()) {
        if (!info[10].IsBoolean()) throw_type(env, fn, "causal", "must be a boolean");
        a.causal = info[10].As<Napi::Boolean>().Value();
    }
    return a;
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
    return guarded(info, "attention", [&]() -> Napi::Value {
        qk::attention(parse_attention(info, "attention"));
        return info.Env().Undefined();
    });
}

class AttentionWorker : public PromiseWorker {
public:
    AttentionWorker(Napi::Env env, const Napi::CallbackInfo& info, const qk::AttnArgs& a)
        : PromiseWorker(env, info, 10, "attentionAsync"), a_(a) {}

private:
    void Run() override { qk::attention(a_); }
    qk::AttnArgs a_;
};

Napi::Value AttentionAsync(const Napi::CallbackInfo& info) {
    return guarded(info, "attentionAsync", [&]() -> Napi::Value {
        const qk::AttnArgs a = parse_attention(info, "attentionAsync");
        auto* w = new AttentionWorker(info.Env(), info, a);
        Napi::Promise p = w->Promise();
        w->Queue();
        return p;
    });
}

// attentionBatch(q, out, nHeads, nKvHeads, headDim, scale, keys[], values[], pos0[], T[])
//   Several causal attention calls in one pool run (the sequences of a
//   batched decoder step): call i's T[i] query rows follow call i - 1's in
//   q and out (sum of T rows of nHeads * headDim), over its own cache
//   keys[i] / values[i] (as in attention) at positions pos0[i] ..
std::vector<qk::AttnArgs> parse_attention_batch(const Napi::CallbackInfo& info, const char* fn) {
    Napi::Env env = info.Env();
    qk::AttnArgs base{};
    parse_heads(info, 2, fn, base);
    Napi::Array keys = array_arg(info, 6, fn, "keys", SIZE_MAX);
    const size_t n = keys.Length();
    Napi::Array values = array_arg(info, 7, fn, "values", n);
    Napi::Array pos0s = array_arg(info, 8, fn, "pos0", n);
    Napi::Array Ts = array_arg(info, 9, fn, "T", n);
    const size_t q_dim = mul_checked(env, fn, base.n_heads, base.head_dim);
    const size_t kv_dim = mul_checked(env, fn, base.n_kv_heads, base.head_dim);
    std::vector<qk::AttnArgs> calls(n, base);
    size_t rows = 0;
    for (size_t i = 0; i < n; ++i) {
        const std::string at = "[" + std::to_string(i) + "]";
        qk::AttnArgs& a = calls[i];
        a.pos0 = size_value(env, pos0s.Get(uint32_t(i)), fn, "pos0" + at);
        a.T = size_value(env, Ts.Get(uint32_t(i)), fn, "T" + at);
        if (a.pos0 > SIZE_MAX / 2 || a.T > SIZE_MAX / 2) throw_range(env, fn, "pos0" + at, "is too large");
        const size_t end = a.pos0 + a.T;
        const size_t k_len = mul_checked(env, fn, (end + qk::kAttnBlock - 1) / qk::kAttnBlock * qk::kAttnBlock, kv_dim);
        View k = typed_value(env, keys.Get(uint32_t(i)), fn, "keys" + at, napi_float32_array, SIZE_MAX);
        View v = typed_value(env, values.Get(uint32_t(i)), fn, "values" + at, napi_float32_array, SIZE_MAX);
        if (k.length < k_len) throw_range(env, fn, "keys" + at, "must hold at least " + std::to_string(k_len) + " floats (whole blocks of 64 positions)");
        if (v.length < mul_checked(env, fn, end, kv_dim)) throw_range(env, fn, "values" + at, "must hold at least (pos0 + T) * kvDim floats");
        a.keys = static_cast<const float*>(k.data);
        a.values = static_cast<const float*>(v.data);
        rows += a.T;
        if (rows > SIZE_MAX / 2) throw_range(env, fn, "T", "sum is too large");
    }
    const size_t q_len = mul_checked(env, fn, rows, q_dim);
    const float* q = static_cast<const float*>(typed_arg(info, 0, fn, "q", napi_float32_array, q_len).data);
    float* out = static_cast<float*>(typed_arg(info, 1, fn, "out", napi_float32_array, q_len).data);
    size_t r = 0;
    for (qk::AttnArgs& a : calls) {
        a.q = q + r * q_dim;
        a.out = out + r * q_dim;
        r += a.T;
    }
    return calls;
}

Napi::Value AttentionBatch(const Napi::CallbackInfo& info) {
    return guarded(info, "attentionBatch", [&]() -> Napi::Value {
        const std::vector<qk::AttnArgs> calls = parse_attention_batch(info, "attentionBatch");
        qk::attention_batch(calls.data(), calls.size());
        return info.Env().Undefined();
    });
}

class AttentionBatchWorker : public PromiseWorker {
public:
    AttentionBatchWorker(Napi::Env env, const Napi::CallbackInfo& info, std::vector<qk::AttnArgs> calls)
        : PromiseWorker(env, info, 10, "attentionBatchAsync"), calls_(std::move(calls)) {}

private:
    void Run() override { qk::attention_batch(calls_.data(), calls_.size()); }
    std::vector<qk::AttnArgs> calls_;
};

Napi::Value AttentionBatchAsync(const Napi::CallbackInfo& info) {
    return guarded(info, "attentionBatchAsync", [&]() -> Napi::Value {
        auto* w = new AttentionBatchWorker(info.Env(), info, parse_attention_batch(info, "attentionBatchAsync"));
        Napi::Promise p = w->Promise();
        w->Queue();
        return p;
    });
}

// attentionCacheWrite(keys, values, k, v, pos0, kvDim): store k, v
// [T, kvDim] (T = k.length / kvDim) at positions pos0 .. of a cache whose
// keys are blocked (attention_ops.h) and values are rows.
Napi::Value AttentionCacheWrite(const Napi::CallbackInfo& info) {
    const char* fn = "attentionCacheWrite";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        const size_t pos0 = size_arg(info, 4, fn, "pos0");
        const size_t kv_dim = size_arg(info, 5, fn, "kvDim");
        if (kv_dim == 0) throw_range(env, fn, "kvDim", "must be positive");
        View k = typed_arg(info, 2, fn, "k", napi_float32_array, SIZE_MAX);
        if (k.length % kv_dim != 0) throw_range(env, fn, "k", "must hold whole rows of kvDim values");
        const size_t T = k.length / kv_dim;
        View v = typed_arg(info, 3, fn, "v", napi_float32_array, k.length);
        View keys = typed_arg(info, 0, fn, "keys", napi_float32_array, SIZE_MAX);
        View values = typed_arg(info, 1, fn, "values", napi_float32_array, SIZE_MAX);
        const size_t end = pos0 + T;
        const size_t k_len = mul_checked(env, fn, (end + qk::kAttnBlock - 1) / qk::kAttnBlock * qk::kAttnBlock, kv_dim);
        if (keys.length < k_len) throw_range(env, fn, "keys", "must hold whole blocks of 64 positions up to pos0 + T: " + std::to_string(k_len) + " floats");
        if (values.length < mul_checked(env, fn, end, kv_dim)) throw_range(env, fn, "values", "must hold (pos0 + T) * kvDim floats");
        qk::attn_cache_write(static_cast<float*>(keys.data), static_cast<float*>(values.data), static_cast<const float*>(k.data),
                             static_cast<const float*>(v.data), pos0, T, kv_dim);
        return env.Undefined();
    });
}

}  // namespace

void register_attention(Napi::Env env, Napi::Object exports) {
    exports.Set("attentionCacheWrite", Napi::Function::New(env, AttentionCacheWrite, "attentionCacheWrite"));
    exports.Set("attention", Napi::Function::New(env, Attention, "attention"));
    exports.Set("attentionAsync", Napi::Function::New(env, AttentionAsync, "attentionAsync"));
    exports.Set("attentionBatch", Napi::Function::New(env, AttentionBatch, "attentionBatch"));
    exports.Set("attentionBatchAsync", Napi::Function::New(env, AttentionBatchAsync, "attentionBatchAsync"));
}

}  // namespace qkb
