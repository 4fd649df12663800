// Argument checks for the raw addon functions. lib/ validates user input and
// names the user's arguments; these checks are the second line of defence so
// that no call from JavaScript, however wrong, can crash the process.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "../kernels/kernels.h"

namespace qkb {

[[noreturn]] inline void throw_type(Napi::Env env, const std::string& fn, const std::string& arg,
                                    const std::string& what) {
    throw Napi::TypeError::New(env, fn + ": '" + arg + "' " + what);
}
[[noreturn]] inline void throw_range(Napi::Env env, const std::string& fn, const std::string& arg,
                                     const std::string& what) {
    throw Napi::RangeError::New(env, fn + ": '" + arg + "' " + what);
}

// A non-negative integer argument that fits in size_t.
inline size_t size_value(Napi::Env env, Napi::Value v, const char* fn, const std::string& name);
inline size_t size_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
    return size_value(info.Env(), info[i], fn, name);
}

inline int int_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int lo, int hi) {
    const size_t v = size_arg(info, i, fn, name);
    if (v < size_t(lo) || v > size_t(hi))
        throw_range(info.Env(), fn, name, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return int(v);
}

inline bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
    Napi::Value v = info[i];
    if (!v.IsBoolean()) throw_type(info.Env(), fn, name, "must be a boolean");
    return v.As<Napi::Boolean>().Value();
}

inline const char* typed_array_name(napi_typedarray_type t) {
    switch (t) {
        case napi_int8_array: return "Int8Array";
        case napi_uint8_array: return "Uint8Array";
        case napi_uint8_clamped_array: return "Uint8ClampedArray";
        case napi_int16_array: return "Int16Array";
        case napi_uint16_array: return "Uint16Array";
        case napi_int32_array: return "Int32Array";
        case napi_uint32_array: return "Uint32Array";
        case napi_float32_array: return "Float32Array";
        case napi_float64_array: return "Float64Array";
        default: return "TypedArray";
    }
}

// A typed array of type `t` with exactly `len` elements (len == SIZE_MAX: any).
// nullable: null/undefined gives {nullptr, 0}.
struct View {
    void* data = nullptr;
    size_t length = 0;
};
inline View typed_value(Napi::Env env, Napi::Value v, const char* fn, const std::string& name, napi_typedarray_type t,
                        size_t len, bool nullable = false) {
    if (nullable && (v.IsNull() || v.IsUndefined())) return {};
    if (!v.IsTypedArray()) throw_type(env, fn, name, std::string("must be a ") + typed_array_name(t));
    // Raw N-API rather than Napi::TypedArray::ArrayBuffer(): that wraps the
    // backing buffer as an ArrayBuffer and fails on a SharedArrayBuffer, which
    // is how worker threads share one copy of the weights. The data pointer
    // from napi_get_typedarray_info is valid for both kinds.
    napi_typedarray_type type;
    size_t n = 0;
    void* data = nullptr;
    if (napi_get_typedarray_info(env, v, &type, &n, &data, nullptr, nullptr) != napi_ok)
        throw_type(env, fn, name, "could not be read as a typed array");
    if (type != t)
        throw_type(env, fn, name, std::string("must be a ") + typed_array_name(t) + ", got " + typed_array_name(type));
    if (len != SIZE_MAX && n != len)
        throw_range(env, fn, name, "has " + std::to_string(n) + " elements, expected " + std::to_string(len));
    if (n > 0 && data == nullptr) throw_type(env, fn, name, "is detached");
    return {data, n};
}
inline View typed_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
                      napi_typedarray_type t, size_t len, bool nullable = false) {
    return typed_value(info.Env(), info[i], fn, name, t, len, nullable);
}

// The scales of a quantized weight, `len` of them (SIZE_MAX: any): a
// Float32Array (w.scales) or a Uint16Array of f16 bits (w.scales16).
inline void scales_value(Napi::Env env, Napi::Value v, const char* fn, const std::string& name, size_t len, qk::WeightView& w) {
    const bool f16 = v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
    if (!f16 && !(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array))
        throw_type(env, fn, name, "must be a Float32Array, or a Uint16Array of f16 bits");
    const View s = typed_value(env, v, fn, name, f16 ? napi_uint16_array : napi_float32_array, len, false);
    w.scales = f16 ? nullptr : static_cast<const float*>(s.data);
    w.scales16 = f16 ? static_cast<const uint16_t*>(s.data) : nullptr;
}
inline void scales_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, size_t len, qk::WeightView& w) {
    scales_value(info.Env(), info[i], fn, "scales", len, w);
}

// A JavaScript array argument of exactly `len` elements (len == SIZE_MAX: any).
inline Napi::Array array_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, size_t len) {
    Napi::Value v = info[i];
    if (!v.IsArray()) throw_type(info.Env(), fn, name, "must be an array");
    Napi::Array a = v.As<Napi::Array>();
    if (len != SIZE_MAX && a.Length() != len)
        throw_range(info.Env(), fn, name, "has " + std::to_string(a.Length()) + " elements, expected " + std::to_string(len));
    return a;
}

// A non-negative integer value that fits in size_t.
inline size_t size_value(Napi::Env env, Napi::Value v, const char* fn, const std::string& name) {
    if (!v.IsNumber()) throw_type(env, fn, name, "must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != double(int64_t(d)) || d > 9007199254740991.0) throw_range(env, fn, name, "must be a non-negative integer");
    return size_t(d);
}

// a * b with an overflow check.
inline size_t mul_checked(Napi::Env env, const char* fn, size_t a, size_t b) {
    if (a != 0 && b > SIZE_MAX / a) throw Napi::RangeError::New(env, std::string(fn) + ": size overflow");
    return a * b;
}

}  // namespace qkb
