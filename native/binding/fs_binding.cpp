// Atomic exchange of two paths, for folder saves that survive kill -9 at any
// instant (lib/io/atomic.ts). Replacing a non-empty folder takes two renames
// in portable code (old aside, new in), and a process killed between them
// leaves no folder at all; the kernel can swap two names in one step instead:
// renameat2(RENAME_EXCHANGE) on Linux (ext4, xfs, btrfs, tmpfs, ...),
// renamex_np(RENAME_SWAP) on macOS. Nothing here reads or writes file data.
#include <napi.h>

#include <cerrno>
#include <string>

#if defined(__linux__)
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#elif defined(__APPLE__)
#include <stdio.h>
#endif

#include "args.h"
#include "bindings.h"

namespace qkb {

namespace {

// The raw syscall, not glibc's renameat2() wrapper: that needs glibc 2.28,
// and a prebuilt binary should load on older systems too (the call then
// fails with ENOSYS and JavaScript falls back).
int exchange_paths(const std::string& a, const std::string& b) {
#if defined(__linux__) && defined(SYS_renameat2)
    if (syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return 0;
    return errno;
#elif defined(__APPLE__) && defined(RENAME_SWAP)
    if (renamex_np(a.c_str(), b.c_str(), RENAME_SWAP) == 0) return 0;
    return errno;
#else
    (void)a;
    (void)b;
    return ENOSYS;
#endif
}

// renameExchange(a: string, b: string): 0 when the two existing paths swapped
// names, else the errno (ENOSYS/EINVAL/ENOTSUP: not supported here).
Napi::Value RenameExchange(const Napi::CallbackInfo& info) {
    const char* fn = "renameExchange";
    if (!info[0].IsString()) throw_type(info.Env(), fn, "a", "must be a path string");
    if (!info[1].IsString()) throw_type(info.Env(), fn, "b", "must be a path string");
    const std::string a = info[0].As<Napi::String>().Utf8Value();
    const std::string b = info[1].As<Napi::String>().Utf8Value();
    // A NUL inside would silently cut the path short in the C call.
    if (a.find('\0') != std::string::npos) throw_type(info.Env(), fn, "a", "must not contain NUL");
    if (b.find('\0') != std::string::npos) throw_type(info.Env(), fn, "b", "must not contain NUL");
    return Napi::Number::New(info.Env(), exchange_paths(a, b));
}

}  // namespace

void register_fs(Napi::Env env, Napi::Object exports) {
    exports.Set("renameExchange", Napi::Function::New(env, RenameExchange, "renameExchange"));
}

}  // namespace qkb
