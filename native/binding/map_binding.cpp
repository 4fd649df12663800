// Map a file into memory (read, copy-on-write) as an external ArrayBuffer,
// unmapped by its finalizer once JavaScript drops it. Weights loaded this
// way are read from the page cache in place: loading costs no copy, and
// processes mapping the same file share its physical pages. MAP_PRIVATE
// with PROT_WRITE so that code writing into a weight (a scale folded into a
// norm) gets a private page and never touches the file. A file truncated
// by someone else while mapped would fault on access (SIGBUS): files that
// quantkit writes are replaced by rename, never truncated in place.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>

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
void unmap(napi_env, void* data, void* hint) { munmap(data, reinterpret_cast<size_t>(hint)); }
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
        napi_value ab;
        const napi_status s = napi_create_external_arraybuffer(env, p, size, unmap, reinterpret_cast<void*>(size), &ab);
        if (s != napi_ok) {
            munmap(p, size);
            throw Napi::Error::New(env, "EIO: this Node cannot wrap mapped memory (external ArrayBuffers are disabled)");
        }
        return Napi::Value(env, ab);
#else
        throw Napi::Error::New(env, "ENOSYS: memory-mapped files are not supported on this platform");
#endif
    });
}

}  // namespace

void register_map(Napi::Env env, Napi::Object exports) {
    exports.Set("mapFile", Napi::Function::New(env, MapFile, "mapFile"));
}

}  // namespace qkb
