// Forwarders for the libcurl functions hearth calls; see lazy_lib.hpp.
//
// Each function below is the libcurl function of the same name (C linkage;
// the compiler checks every definition against <curl/curl.h>, so a prototype
// that drifts fails to compile). The first call loads libcurl.so.4. When it
// cannot be loaded, the functions fail the way libcurl does when it runs out
// of memory or gets no valid handle: curl_global_init returns
// CURLE_FAILED_INIT, curl_easy_init and curl_multi_init return NULL, the
// rest return CURLE_FAILED_INIT / CURLM_BAD_HANDLE / NULL, and the two
// strerror functions return the load error, so the message a caller builds
// from them says what is missing.

#include "util/lazy_lib.hpp"

#include <cstdarg>
#include <curl/curl.h>

namespace {

// clang-format off
#define HEARTH_CURL_FUNCTIONS(X) \
    X(curl_global_init) \
    X(curl_easy_init) \
    X(curl_easy_cleanup) \
    X(curl_easy_setopt) \
    X(curl_easy_getinfo) \
    X(curl_easy_strerror) \
    X(curl_multi_init) \
    X(curl_multi_cleanup) \
    X(curl_multi_setopt) \
    X(curl_multi_add_handle) \
    X(curl_multi_remove_handle) \
    X(curl_multi_assign) \
    X(curl_multi_socket_action) \
    X(curl_multi_info_read) \
    X(curl_multi_strerror)
// clang-format on

enum class Sym {
#define HEARTH_ENUM(name) name,
    HEARTH_CURL_FUNCTIONS(HEARTH_ENUM)
#undef HEARTH_ENUM
        count
};

constexpr const char* names[] = {
#define HEARTH_NAME(name) #name,
    HEARTH_CURL_FUNCTIONS(HEARTH_NAME)
#undef HEARTH_NAME
};
static_assert(sizeof(names) / sizeof(names[0]) == static_cast<std::size_t>(Sym::count));

hearth::lazy::Library& library() {
    static auto* lib = new hearth::lazy::Library("libcurl.so.4", "http(s) downloads", names,
                                                 static_cast<std::size_t>(Sym::count));
    return *lib;
}

// The real function `name`, or nullptr when libcurl is unavailable.
// Converting dlsym's void* to a function pointer is what POSIX guarantees.
#define REAL(name)                                                                                 \
    reinterpret_cast<decltype(&::name)>(library().symbol(static_cast<std::size_t>(Sym::name)))

const char* load_error() {
    const std::string& e = library().error();
    return e.empty() ? "libcurl.so.4 is not available" : e.c_str();
}

// ---------------------------------------------------------------------------
// The variadic setters and getters.
//
// curl_easy_setopt, curl_multi_setopt and curl_easy_getinfo take exactly one
// argument after the option, and a va_list cannot be handed on to a `...`
// function, so the forwarder has to read that argument with va_arg and pass
// it again. Its type is encoded in the option number, and libcurl itself
// reads it by that rule: options below CURLOPTTYPE_OBJECTPOINT (10000) take a
// long, then object pointers, function pointers (20000), curl_off_t (30000)
// and struct curl_blob * (40000); CURLMoption uses the same ranges. Reading
// with that exact type means no value is ever widened, truncated or moved to
// another register class, whatever the ABI. Two assumptions remain, both true
// on every Linux ABI (LP64 and ILP32 alike), and asserted below:
//  - a function pointer is read as a generic `void (*)()` and passed on as
//    one; libcurl reads it as its own callback type. All function pointers
//    have the size and representation of a data pointer (POSIX requires
//    that for dlsym).
//  - every CURLINFO_* takes a pointer to the result (char **, long *,
//    double *, curl_off_t *, struct curl_slist **, curl_socket_t *), read as
//    void * and passed on as one; all object pointers share one size and
//    representation.
// On LP64 (x86-64, aarch64) long, curl_off_t and pointers are all 8-byte
// INTEGER-class arguments anyway, so even a mismatched read would pass the
// same bits; the dispatch makes that unnecessary rather than relying on it.

using AnyFunction = void (*)();
static_assert(sizeof(AnyFunction) == sizeof(void*), "function and data pointers differ in size");
static_assert(sizeof(char**) == sizeof(void*) && sizeof(long*) == sizeof(void*) &&
                  sizeof(double*) == sizeof(void*) && sizeof(curl_off_t*) == sizeof(void*),
              "data pointers differ in size");
static_assert(sizeof(curl_off_t) == 8, "curl_off_t is expected to be 64-bit");

enum class ArgType { long_value, object_pointer, function_pointer, off_t_value };

ArgType option_arg_type(long option) {
    if (option < CURLOPTTYPE_OBJECTPOINT) return ArgType::long_value;
    if (option < CURLOPTTYPE_FUNCTIONPOINT) return ArgType::object_pointer;
    if (option < CURLOPTTYPE_OFF_T) return ArgType::function_pointer;
    if (option < CURLOPTTYPE_BLOB) return ArgType::off_t_value;
    return ArgType::object_pointer; // struct curl_blob *
}

// Reads the one argument after `option` from `ap` and calls
// real(handle, option, argument).
template <typename Result, typename Handle, typename Option>
Result forward_option(Result (*real)(Handle*, Option, ...), Handle* handle, Option option,
                      std::va_list ap) {
    // The branches differ only in the va_arg type, which is the point.
    switch (option_arg_type(static_cast<long>(option))) { // NOLINT(bugprone-branch-clone)
    case ArgType::long_value:
        return real(handle, option, va_arg(ap, long));
    case ArgType::function_pointer:
        return real(handle, option, va_arg(ap, AnyFunction));
    case ArgType::off_t_value:
        return real(handle, option, va_arg(ap, curl_off_t));
    case ArgType::object_pointer:
        break;
    }
    return real(handle, option, va_arg(ap, void*));
}

} // namespace

// FORWARD(return type, name, value when unavailable, (parameters), (arguments))
#define FORWARD(ret, name, fail, params, args)                                                     \
    ret name params {                                                                              \
        auto real = REAL(name);                                                                    \
        return real != nullptr ? real args : (fail);                                               \
    }

extern "C" {

FORWARD(CURLcode, curl_global_init, CURLE_FAILED_INIT, (long flags), (flags))

FORWARD(CURL*, curl_easy_init, nullptr, (void), ())
void curl_easy_cleanup(CURL* curl) {
    if (auto real = REAL(curl_easy_cleanup); real != nullptr) real(curl);
}

CURLcode curl_easy_setopt(CURL* curl, CURLoption option, ...) {
    auto real = REAL(curl_easy_setopt);
    if (real == nullptr) return CURLE_FAILED_INIT;
    std::va_list ap;
    va_start(ap, option);
    CURLcode rc = forward_option(real, curl, option, ap);
    va_end(ap);
    return rc;
}

CURLcode curl_easy_getinfo(CURL* curl, CURLINFO info, ...) {
    auto real = REAL(curl_easy_getinfo);
    if (real == nullptr) return CURLE_FAILED_INIT;
    std::va_list ap;
    va_start(ap, info);
    void* out = va_arg(ap, void*); // see above: always a pointer to the result
    va_end(ap);
    return real(curl, info, out);
}

const char* curl_easy_strerror(CURLcode code) {
    auto real = REAL(curl_easy_strerror);
    return real != nullptr ? real(code) : load_error();
}

FORWARD(CURLM*, curl_multi_init, nullptr, (void), ())
FORWARD(CURLMcode, curl_multi_cleanup, CURLM_BAD_HANDLE, (CURLM * multi), (multi))

CURLMcode curl_multi_setopt(CURLM* multi, CURLMoption option, ...) {
    auto real = REAL(curl_multi_setopt);
    if (real == nullptr) return CURLM_BAD_HANDLE;
    std::va_list ap;
    va_start(ap, option);
    CURLMcode rc = forward_option(real, multi, option, ap);
    va_end(ap);
    return rc;
}

FORWARD(CURLMcode, curl_multi_add_handle, CURLM_BAD_HANDLE, (CURLM * multi, CURL* easy),
        (multi, easy))
FORWARD(CURLMcode, curl_multi_remove_handle, CURLM_BAD_HANDLE, (CURLM * multi, CURL* easy),
        (multi, easy))
FORWARD(CURLMcode, curl_multi_assign, CURLM_BAD_HANDLE,
        (CURLM * multi, curl_socket_t fd, void* socketp), (multi, fd, socketp))
FORWARD(CURLMcode, curl_multi_socket_action, CURLM_BAD_HANDLE,
        (CURLM * multi, curl_socket_t fd, int ev_bitmask, int* running),
        (multi, fd, ev_bitmask, running))
FORWARD(CURLMsg*, curl_multi_info_read, nullptr, (CURLM * multi, int* msgs_in_queue),
        (multi, msgs_in_queue))

const char* curl_multi_strerror(CURLMcode code) {
    auto real = REAL(curl_multi_strerror);
    return real != nullptr ? real(code) : load_error();
}

} // extern "C"
