// Shared pieces of the N-API glue: turning C++ failures into JS errors, and
// the Promise worker every async entry point uses.
#pragma once

#include <napi.h>

#include <new>
#include <string>
#include <vector>

namespace qkb {

// Per-environment data (each worker thread has its own): the JS class that
// native failures are reported as, handed over once by lib/binding.ts
// through configure({ QuantkitError }).
struct AddonData {
    Napi::FunctionReference quantkit_error;
};

// A QuantkitError(code, message) when lib/ has configured the class (always,
// through the package), else a plain Error with a `code` property.
inline Napi::Error native_error(Napi::Env env, const char* code, const std::string& message) {
    AddonData* d = env.GetInstanceData<AddonData>();
    if (d != nullptr && !d->quantkit_error.IsEmpty()) {
        Napi::Object o = d->quantkit_error.New({Napi::String::New(env, code), Napi::String::New(env, message)});
        return Napi::Error(env, o);
    }
    Napi::Error e = Napi::Error::New(env, message);
    e.Set("code", Napi::String::New(env, code));
    return e;
}

// Run `body`, turning C++ failures (out of memory, thread creation, ...) into
// QuantkitError ERR_NATIVE instead of letting them terminate the process.
template <typename F>
inline Napi::Value guarded(const Napi::CallbackInfo& info, const char* fn, F&& body) {
    try {
        return body();
    } catch (const Napi::Error&) {
        throw;
    } catch (const std::bad_alloc&) {
        throw native_error(info.Env(), "ERR_NATIVE", std::string(fn) + ": out of memory");
    } catch (const std::exception& ex) {
        throw native_error(info.Env(), "ERR_NATIVE", std::string(fn) + ": " + ex.what());
    } catch (...) {
        throw native_error(info.Env(), "ERR_NATIVE", std::string(fn) + ": unknown native failure");
    }
}

// ---- Promise forms: the same work on a libuv worker thread ---------------
//
// The calling thread only checks arguments; Execute() touches C++ data only.
// Every JS object the work reads or writes is held by a reference until the
// promise settles, so the garbage collector cannot free a buffer under it.
class PromiseWorker : public Napi::AsyncWorker {
public:
    PromiseWorker(Napi::Env env, const Napi::CallbackInfo& info, size_t n_keep, const char* fn)
        : Napi::AsyncWorker(env, fn), deferred_(Napi::Promise::Deferred::New(env)), fn_(fn) {
        for (size_t i = 0; i < n_keep && i < info.Length(); ++i)
            if (info[i].IsObject()) keep_.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
    }
    Napi::Promise Promise() const { return deferred_.Promise(); }

protected:
    virtual void Run() = 0;
    virtual Napi::Value Result() { return Env().Undefined(); }

private:
    void Execute() override {
        try {
            Run();
        } catch (const std::bad_alloc&) {
            SetError(std::string(fn_) + ": out of memory");
        } catch (const std::exception& e) {
            SetError(std::string(fn_) + ": " + e.what());
        } catch (...) {
            SetError(std::string(fn_) + ": unknown native failure");
        }
    }
    // Settling runs on the JS thread after Execute(). When the environment is
    // being torn down (worker.terminate(), process.exit() in a worker) every
    // N-API call here can fail, and node-addon-api reports a failure by
    // throwing Napi::Error out of the completion callback, which terminates
    // the process. Nobody is left to observe the promise then, so a failure
    // to settle is dropped (NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS covers the
    // Error objects node-addon-api creates around these calls).
    void OnOK() override {
        try {
            deferred_.Resolve(Result());
        } catch (...) {
        }
        keep_.clear();
    }
    void OnError(const Napi::Error& e) override {
        try {
            deferred_.Reject(native_error(Env(), "ERR_NATIVE", e.Message()).Value());
        } catch (...) {
        }
        keep_.clear();
    }

    Napi::Promise::Deferred deferred_;
    const char* fn_;
    std::vector<Napi::ObjectReference> keep_;
};

}  // namespace qkb
