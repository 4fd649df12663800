// Shared pieces of the N-API glue: turning C++ failures into JS errors, and
// the Promise worker every async entry point uses.
#pragma once

#include <napi.h>

#include <new>
#include <string>
#include <vector>

namespace qkb {

// Run `body`, turning C++ failures (out of memory, ...) into JS errors with a
// code instead of letting them terminate the process.
template <typename F>
inline Napi::Value guarded(const Napi::CallbackInfo& info, const char* fn, F&& body) {
    try {
        return body();
    } catch (const Napi::Error&) {
        throw;
    } catch (const std::bad_alloc&) {
        Napi::Error e = Napi::Error::New(info.Env(), std::string(fn) + ": out of memory");
        e.Set("code", Napi::String::New(info.Env(), "ERR_NATIVE"));
        throw e;
    } catch (const std::exception& ex) {
        Napi::Error e = Napi::Error::New(info.Env(), std::string(fn) + ": " + ex.what());
        e.Set("code", Napi::String::New(info.Env(), "ERR_NATIVE"));
        throw e;
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
            Napi::Error err = Napi::Error::New(Env(), e.Message());
            err.Set("code", Napi::String::New(Env(), "ERR_NATIVE"));
            deferred_.Reject(err.Value());
        } catch (...) {
        }
        keep_.clear();
    }

    Napi::Promise::Deferred deferred_;
    const char* fn_;
    std::vector<Napi::ObjectReference> keep_;
};

}  // namespace qkb
