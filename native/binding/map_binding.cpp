// Map a file into memory (read, copy-on-write) as an external ArrayBuffer,
// unmapped by its finalizer once JavaScript drops it. Weights loaded this
// way are read from the page cache in place: loading costs no copy, and
// processes mapping the same file share its physical pages. MAP_PRIVATE
// with PROT_WRITE so that code writing into a weight (a scale folded into a
// norm) gets a private page and never touches the file. A file truncated
// by someone else while mapped would fault on access (SIGBUS): files that
// quantkit writes are replaced by rename, never truncated in place.
//
// adviseHugePages(view): ask Linux to back the 2 MiB-aligned interior of a
// freshly allocated weight array with transparent huge pages
// (MADV_HUGEPAGE), before anything writes it, so its first-touch faults
// take 2 MiB pages (lib/ops/huge-pages.ts says why). Pages already touched
// stay as they are (collapsing them, MADV_COLLAPSE, ran at ~0.3 GB/s here:
// seconds for a 7B model). Memory mapped from a file is left alone: its
// page-cache pages are shared between processes.
//
// lineOffset(view): bytes from the start of a view's data to the next
// 64-byte cache line (0 when it starts on one). V8 and malloc place large
// blocks 16 bytes past a page, so a weight array allocated plainly starts
// mid-line and every 64-byte vector or tile row read from it spans two
// lines; huge-pages.ts over-allocates and starts the view at this offset.
#include <napi.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define QK_HAVE_MMAP 1
#endif

#include "args.h"
#include "bindings.h"
#include "glue.h"

namespace qkb {

namespace {

#if QK_HAVE_MMAP
// Address ranges of the files mapped by mapFile and not yet unmapped.
std::mutex g_maps_mu;
std::vector<std::pair<uintptr_t, uintptr_t>> g_maps;

void note_mapped(void* p, size_t size) {
    std::lock_guard<std::mutex> lk(g_maps_mu);
    g_maps.emplace_back(reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + size);
}
bool overlaps_mapped(uintptr_t a, uintptr_t b) {
    std::lock_guard<std::mutex> lk(g_maps_mu);
    return std::any_of(g_maps.begin(), g_maps.end(), [&](const auto& r) { return a < r.second && r.first < b; });
}

void unmap(napi_env, void* data, void* hint) {
    {
        std::lock_guard<std::mutex> lk(g_maps_mu);
        const auto p = reinterpret_cast<uintptr_t>(data);
        g_maps.erase(std::remove_if(g_maps.begin(), g_maps.end(), [&](const auto& r) { return r.first == p; }), g_maps.end());
    }
    munmap(data, reinterpret_cast<size_t>(hint));
}
#endif

// mapFile(path) -> ArrayBuffer (external; empty for an empty file).
// Errors: "ENOENT: ..." style messages, the errno name first, so lib/ can
// map them onto ERR_NOT_FOUND / ERR_BAD_FILE.
Napi::Value MapFile(const Napi::CallbackInfo& info) {
    const char* fn = "mapFile";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        if (!info[0].IsString()) throw_type(env, fn, "path", "must be a string");
        const std::string path = info[0].As<Napi::String>().Utf8Value();
#if QK_HAVE_MMAP
        const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw Napi::Error::New(env, std::string(errno == ENOENT ? "ENOENT" : "EIO") + ": " + std::strerror(errno));
        struct stat st {};
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            throw Napi::Error::New(env, "EIO: not a regular file");
        }
        const size_t size = size_t(st.st_size);
        if (size == 0) {
            close(fd);
            return Napi::ArrayBuffer::New(env, 0);
        }
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        const int err = errno;
        close(fd);  // the mapping keeps the file
        if (p == MAP_FAILED) throw Napi::Error::New(env, std::string("EIO: mmap failed: ") + std::strerror(err));
        note_mapped(p, size);
        napi_value ab;
        const napi_status s = napi_create_external_arraybuffer(env, p, size, unmap, reinterpret_cast<void*>(size), &ab);
        if (s != napi_ok) {
            unmap(env, p, reinterpret_cast<void*>(size));
            throw Napi::Error::New(env, "EIO: this Node cannot wrap mapped memory (external ArrayBuffers are disabled)");
        }
        return Napi::Value(env, ab);
#else
        throw Napi::Error::New(env, "ENOSYS: memory-mapped files are not supported on this platform");
#endif
    });
}

// adviseHugePages(view) -> bytes advised (0: none; see the header).
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
    const char* fn = "adviseHugePages";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        if (!info[0].IsTypedArray()) throw_type(env, fn, "view", "must be a typed array");
        const Napi::TypedArray t = info[0].As<Napi::TypedArray>();
        napi_typedarray_type type;
        size_t length = 0, offset = 0;
        void* data = nullptr;
        napi_value ab;
        size_t done = 0;
        if (napi_get_typedarray_info(env, t, &type, &length, &data, &ab, &offset) == napi_ok && data != nullptr) {
#if defined(__linux__) && QK_HAVE_MMAP
            constexpr uintptr_t kHuge = uintptr_t(2) << 20;
            const uintptr_t p = reinterpret_cast<uintptr_t>(data);
            const uintptr_t a = (p + kHuge - 1) & ~(kHuge - 1), b = (p + length * t.ElementSize()) & ~(kHuge - 1);
            if (b > a && !overlaps_mapped(a, b) && madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE) == 0) done = b - a;
#endif
        }
        return Napi::Number::New(env, double(done));
    });
}

Napi::Value LineOffset(const Napi::CallbackInfo& info) {
    const char* fn = "lineOffset";
    return guarded(info, fn, [&]() -> Napi::Value {
        Napi::Env env = info.Env();
        if (!info[0].IsTypedArray()) throw_type(env, fn, "view", "must be a typed array");
        napi_typedarray_type type;
        size_t length = 0, offset = 0;
        void* data = nullptr;
        napi_value ab;
        if (napi_get_typedarray_info(env, info[0], &type, &length, &data, &ab, &offset) != napi_ok) {
            throw_type(env, fn, "view", "must be a typed array");
        }
        const uintptr_t p = reinterpret_cast<uintptr_t>(data);
        return Napi::Number::New(env, double((64 - (p & 63)) & 63));
    });
}

}  // namespace

void register_map(Napi::Env env, Napi::Object exports) {
    exports.Set("mapFile", Napi::Function::New(env, MapFile, "mapFile"));
    exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages, "adviseHugePages"));
    exports.Set("lineOffset", Napi::Function::New(env, LineOffset, "lineOffset"));
}

}  // namespace qkb
