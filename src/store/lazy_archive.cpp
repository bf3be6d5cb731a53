// Forwarders for the libarchive functions hearth calls; see lazy_lib.hpp.
//
// Each function below is the libarchive function of the same name (C
// linkage; the compiler checks every definition against <archive.h> and
// <archive_entry.h>, so a prototype that drifts fails to compile). The first
// call loads libarchive.so.13. When it cannot be loaded, the functions fail
// the way libarchive does when it runs out of memory: the constructors
// return NULL, so callers report an error before they have a handle, and the
// rest (only reachable with a handle, i.e. never in that case) return
// ARCHIVE_FATAL, NULL or 0.

#include "util/lazy_lib.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <cstdarg>
#include <cstdio>

namespace {

// clang-format off
#define HEARTH_ARCHIVE_FUNCTIONS(X) \
    X(archive_entry_filetype) \
    X(archive_entry_free) \
    X(archive_entry_hardlink) \
    X(archive_entry_is_encrypted) \
    X(archive_entry_mtime) \
    X(archive_entry_new) \
    X(archive_entry_pathname) \
    X(archive_entry_perm) \
    X(archive_entry_set_filetype) \
    X(archive_entry_set_pathname) \
    X(archive_entry_set_perm) \
    X(archive_entry_set_size) \
    X(archive_entry_size) \
    X(archive_entry_size_is_set) \
    X(archive_entry_symlink) \
    X(archive_error_string) \
    X(archive_filter_bytes) \
    X(archive_read_data_block) \
    X(archive_read_free) \
    X(archive_read_new) \
    X(archive_read_next_header) \
    X(archive_read_open1) \
    X(archive_read_set_callback_data) \
    X(archive_read_set_read_callback) \
    X(archive_read_set_seek_callback) \
    X(archive_read_set_skip_callback) \
    X(archive_read_support_format_zip_seekable) \
    X(archive_set_error) \
    X(archive_write_close) \
    X(archive_write_data) \
    X(archive_write_free) \
    X(archive_write_header) \
    X(archive_write_new) \
    X(archive_write_open_filename) \
    X(archive_write_set_format_zip) \
    X(archive_write_zip_set_compression_deflate) \
    X(archive_write_zip_set_compression_store)
// clang-format on

enum class Sym {
#define HEARTH_ENUM(name) name,
    HEARTH_ARCHIVE_FUNCTIONS(HEARTH_ENUM)
#undef HEARTH_ENUM
        count
};

constexpr const char* names[] = {
#define HEARTH_NAME(name) #name,
    HEARTH_ARCHIVE_FUNCTIONS(HEARTH_NAME)
#undef HEARTH_NAME
};
static_assert(sizeof(names) / sizeof(names[0]) == static_cast<std::size_t>(Sym::count));

hearth::lazy::Library& library() {
    static auto* lib = new hearth::lazy::Library("libarchive.so.13", "extracting archives", names,
                                                 static_cast<std::size_t>(Sym::count));
    return *lib;
}

// The real function `name`, or nullptr when libarchive is unavailable.
// Converting dlsym's void* to a function pointer is what POSIX guarantees.
#define REAL(name)                                                                                 \
    reinterpret_cast<decltype(&::name)>(library().symbol(static_cast<std::size_t>(Sym::name)))

} // namespace

// FORWARD(return type, name, value when unavailable, (parameters), (arguments))
#define FORWARD(ret, name, fail, params, args)                                                     \
    ret name params {                                                                              \
        auto real = REAL(name);                                                                    \
        return real != nullptr ? real args : (fail);                                               \
    }
#define FORWARD_VOID(name, params, args)                                                           \
    void name params {                                                                             \
        if (auto real = REAL(name); real != nullptr) real args;                                    \
    }

extern "C" {

// Constructors: NULL, as on allocation failure.
FORWARD(struct archive*, archive_read_new, nullptr, (void), ())
FORWARD(struct archive*, archive_write_new, nullptr, (void), ())
FORWARD(struct archive_entry*, archive_entry_new, nullptr, (void), ())

// Destructors: libarchive accepts NULL and returns ARCHIVE_OK.
FORWARD(int, archive_read_free, ARCHIVE_OK, (struct archive * a), (a))
FORWARD(int, archive_write_free, ARCHIVE_OK, (struct archive * a), (a))
FORWARD_VOID(archive_entry_free, (struct archive_entry * e), (e))

// Reading.
FORWARD(int, archive_read_support_format_zip_seekable, ARCHIVE_FATAL, (struct archive * a), (a))
FORWARD(int, archive_read_set_read_callback, ARCHIVE_FATAL,
        (struct archive * a, archive_read_callback* cb), (a, cb))
FORWARD(int, archive_read_set_seek_callback, ARCHIVE_FATAL,
        (struct archive * a, archive_seek_callback* cb), (a, cb))
FORWARD(int, archive_read_set_skip_callback, ARCHIVE_FATAL,
        (struct archive * a, archive_skip_callback* cb), (a, cb))
FORWARD(int, archive_read_set_callback_data, ARCHIVE_FATAL, (struct archive * a, void* data),
        (a, data))
FORWARD(int, archive_read_open1, ARCHIVE_FATAL, (struct archive * a), (a))
FORWARD(int, archive_read_next_header, ARCHIVE_FATAL,
        (struct archive * a, struct archive_entry** entry), (a, entry))
FORWARD(int, archive_read_data_block, ARCHIVE_FATAL,
        (struct archive * a, const void** buff, size_t* size, la_int64_t* offset),
        (a, buff, size, offset))
FORWARD(la_int64_t, archive_filter_bytes, -1, (struct archive * a, int n), (a, n))

// Writing.
FORWARD(int, archive_write_set_format_zip, ARCHIVE_FATAL, (struct archive * a), (a))
FORWARD(int, archive_write_zip_set_compression_deflate, ARCHIVE_FATAL, (struct archive * a), (a))
FORWARD(int, archive_write_zip_set_compression_store, ARCHIVE_FATAL, (struct archive * a), (a))
FORWARD(int, archive_write_open_filename, ARCHIVE_FATAL, (struct archive * a, const char* file),
        (a, file))
FORWARD(int, archive_write_header, ARCHIVE_FATAL, (struct archive * a, struct archive_entry* e),
        (a, e))
FORWARD(la_ssize_t, archive_write_data, ARCHIVE_FATAL,
        (struct archive * a, const void* buf, size_t size), (a, buf, size))
FORWARD(int, archive_write_close, ARCHIVE_FATAL, (struct archive * a), (a))

// Errors.
FORWARD(const char*, archive_error_string, nullptr, (struct archive * a), (a))

// libarchive's own formatter understands only a subset of printf (no
// precision for %s, no %zu, ...); formatting here with vsnprintf accepts
// everything the printf attribute on the declaration lets callers write,
// and hands libarchive a plain string. Longer messages are truncated.
void archive_set_error(struct archive* a, int err, const char* fmt, ...) {
    auto real = REAL(archive_set_error);
    if (real == nullptr) return;
    char msg[1024];
    std::va_list ap;
    va_start(ap, fmt);
    int n = std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) msg[0] = '\0';
    real(a, err, "%s", msg);
}

// Entries.
FORWARD(__LA_MODE_T, archive_entry_filetype, 0, (struct archive_entry * e), (e))
FORWARD(__LA_MODE_T, archive_entry_perm, 0, (struct archive_entry * e), (e))
FORWARD(const char*, archive_entry_pathname, nullptr, (struct archive_entry * e), (e))
FORWARD(const char*, archive_entry_hardlink, nullptr, (struct archive_entry * e), (e))
FORWARD(const char*, archive_entry_symlink, nullptr, (struct archive_entry * e), (e))
FORWARD(int, archive_entry_is_encrypted, 0, (struct archive_entry * e), (e))
FORWARD(time_t, archive_entry_mtime, 0, (struct archive_entry * e), (e))
FORWARD(la_int64_t, archive_entry_size, 0, (struct archive_entry * e), (e))
FORWARD(int, archive_entry_size_is_set, 0, (struct archive_entry * e), (e))
FORWARD_VOID(archive_entry_set_filetype, (struct archive_entry * e, unsigned int type), (e, type))
FORWARD_VOID(archive_entry_set_pathname, (struct archive_entry * e, const char* name), (e, name))
FORWARD_VOID(archive_entry_set_perm, (struct archive_entry * e, __LA_MODE_T perm), (e, perm))
FORWARD_VOID(archive_entry_set_size, (struct archive_entry * e, la_int64_t size), (e, size))

} // extern "C"
