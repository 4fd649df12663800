// The N-API module: runtime settings (ISA, threads) here, the ops in
// quantize_binding.cpp, gemm_binding.cpp and w8a8_binding.cpp. Thin wrappers
// that check arguments and call the native ops; output buffers are allocated
// by JavaScript and passed in, so every result lives in JS-owned memory.
// lib/binding.ts is the only module that loads this addon. The module keeps
// no JS state of its own, so it loads in every worker_thread.
#include <napi.h>

#include <string>
#include <system_error>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "args.h"
#include "glue.h"
#include "../dispatch.h"
#include "../threadpool.h"
#include "bindings.h"

namespace qkb {

namespace {

Napi::Value Isa(const Napi::CallbackInfo& info) {
    return guarded(info, "isa", [&] { return Napi::String::New(info.Env(), qk::kernels().name); });
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
    const qk::CpuFeatures& f = qk::cpu_features();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("avx2", f.avx2);
    o.Set("avx512", f.avx512);
    o.Set("amx", f.amx);
    o.Set("neon", f.neon);
    o.Set("neonDot", f.neon_dot);
#if defined(__x86_64__) || defined(_M_X64)
    o.Set("arch", "x64");
#elif defined(__aarch64__)
    o.Set("arch", "arm64");
#else
    o.Set("arch", "other");
#endif
    return o;
}

// selectIsa(name): cap the active ISA at `name`; returns the ISA now active.
Napi::Value SelectIsa(const Napi::CallbackInfo& info) {
    if (!info[0].IsString()) throw_type(info.Env(), "selectIsa", "name", "must be a string");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    qk::Isa isa;
    if (!qk::parse_isa(name.c_str(), &isa))
        throw_range(info.Env(), "selectIsa", "name", "must be one of scalar, avx2, avx512, amx, neon; got '" + name + "'");
    return guarded(info, "selectIsa", [&] { return Napi::String::New(info.Env(), qk::select_isa(isa).name); });
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
    const int n = int_arg(info, 0, "setThreads", "n", 1, 1024);
    // Creating threads can fail (RLIMIT_NPROC, address space): the pool keeps
    // its old size and the failure becomes a QuantkitError, not an abort.
    const size_t old = qk::threads();
    try {
        qk::set_threads(size_t(n));
    } catch (const std::system_error& e) {
        throw native_error(info.Env(), "ERR_NATIVE",
                           "setThreads: could not start " + std::to_string(n) + " threads (" + e.what() +
                               "); the pool keeps " + std::to_string(qk::threads()) + " (it had " +
                               std::to_string(old) + ")");
    } catch (const std::exception& e) {
        throw native_error(info.Env(), "ERR_NATIVE", std::string("setThreads: ") + e.what());
    }
    return info.Env().Undefined();
}

// setSpin(us) / getSpin(): the pool's spin before sleeping, in microseconds.
Napi::Value SetSpin(const Napi::CallbackInfo& info) {
    const int us = int_arg(info, 0, "setSpin", "microseconds", 0, 1000000);
    qk::set_spin_us(us);
    return info.Env().Undefined();
}

Napi::Value GetSpin(const Napi::CallbackInfo& info) {
    return guarded(info, "getSpin", [&] { return Napi::Number::New(info.Env(), double(qk::spin_us())); });
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
    return guarded(info, "getThreads", [&] { return Napi::Number::New(info.Env(), double(qk::threads())); });
}

// mallocInUse(): bytes the C allocator has handed out and not had back
// (glibc's mallinfo2, summed over arenas), or -1 where unknown. For the leak
// test: unlike RSS it does not move when arenas grow or fragment.
Napi::Value MallocInUse(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 33)
    const struct mallinfo2 m = mallinfo2();
    return Napi::Number::New(info.Env(), double(m.uordblks + m.hblkhd));
#endif
#endif
    return Napi::Number::New(info.Env(), -1);
}

// configure({ QuantkitError }): the class native failures are thrown as.
Napi::Value Configure(const Napi::CallbackInfo& info) {
    if (!info[0].IsObject()) throw_type(info.Env(), "configure", "options", "must be an object");
    Napi::Value cls = info[0].As<Napi::Object>().Get("QuantkitError");
    if (!cls.IsFunction()) throw_type(info.Env(), "configure", "options.QuantkitError", "must be a class");
    info.Env().GetInstanceData<AddonData>()->quantkit_error = Napi::Persistent(cls.As<Napi::Function>());
    return info.Env().Undefined();
}

}  // namespace

}  // namespace qkb

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    using namespace qkb;
    env.SetInstanceData(new AddonData());  // deleted with the environment
    exports.Set("configure", Napi::Function::New(env, Configure, "configure"));
    exports.Set("isa", Napi::Function::New(env, Isa, "isa"));
    exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures, "cpuFeatures"));
    exports.Set("selectIsa", Napi::Function::New(env, SelectIsa, "selectIsa"));
    exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
    exports.Set("getThreads", Napi::Function::New(env, GetThreads, "getThreads"));
    exports.Set("setSpin", Napi::Function::New(env, SetSpin, "setSpin"));
    exports.Set("getSpin", Napi::Function::New(env, GetSpin, "getSpin"));
    exports.Set("mallocInUse", Napi::Function::New(env, MallocInUse, "mallocInUse"));
    register_quantize(env, exports);
    register_gemm(env, exports);
    register_linalg(env, exports);
    register_w8a8(env, exports);
    register_w4a8(env, exports);
    register_attention(env, exports);
    register_elementwise(env, exports);
    register_fs(env, exports);
    register_map(env, exports);
    return exports;
}

}  // namespace

NODE_API_MODULE(quantkit, Init)
