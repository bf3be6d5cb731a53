#pragma once
// A shared library opened on first use instead of at exec time.
//
// Why: Debian's libarchive drags in libxml2 and ICU, and libcurl a dozen more
// libraries (nghttp2, ssh2, ldap, gssapi, ...). Linked normally, the dynamic
// loader maps and relocates all of them before main even when hearth only
// runs `hearth -- true`, which costs most of hearth's start-up time and a
// good part of its idle RSS. Only extraction needs libarchive and only
// http(s) deploys need libcurl, so lazy_archive.cpp and lazy_curl.cpp define
// every libarchive/libcurl function the project calls, with the libraries'
// own prototypes, and forward each to the real one found through a Library.
//
// Adding a call to a libarchive/libcurl function that has no forwarder yet
// fails at link time (undefined reference): add it to the X-macro list in
// lazy_archive.cpp or lazy_curl.cpp. Built with -Dlazy-libs=false, none of
// this is compiled and the real libraries are linked directly.

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

namespace hearth::lazy {

class Library {
public:
    // `soname` (e.g. "libarchive.so.13"), `needed_for` (what fails without
    // it, for the log line, e.g. "extracting archives") and the `count`
    // symbol names in `names` must outlive the object (string literals and
    // static arrays).
    // Nothing is opened here. Create it with `new` and never delete it, so
    // that static destructors running at exit (a global handle's cleanup)
    // can still reach the library.
    Library(const char* soname, const char* needed_for, const char* const* names,
            std::size_t count) noexcept;
    ~Library() = default; // does not dlclose: pointers into it may be anywhere
    Library(const Library&) = delete;
    Library& operator=(const Library&) = delete;

    // The address of names[index] in the library, or nullptr when the
    // library or any of its symbols could not be loaded. The first call
    // dlopens the library (RTLD_NOW | RTLD_LOCAL) and resolves every name at
    // once, so a library is either fully usable or not at all; on failure it
    // logs one error line naming the library and dlerror()'s text, and every
    // later call returns nullptr without retrying. Thread-safe (the first call
    // blocks concurrent ones until the load is done); the first call blocks
    // for as long as the loader takes (milliseconds for libcurl), later calls
    // do not. Not async-signal-safe.
    void* symbol(std::size_t index) noexcept;

    // True once loaded successfully; loads like symbol() does.
    bool available() noexcept { return load(); }

    // Why the load failed ("" when it did not fail or was not tried yet).
    // Stable for the life of the process once set: callers may keep c_str().
    const std::string& error() const noexcept { return error_; }

    const char* soname() const noexcept { return soname_; }

private:
    bool load() noexcept;
    void open() noexcept;

    const char* soname_;
    const char* needed_for_;
    const char* const* names_;
    std::size_t count_;
    std::unique_ptr<void*[]> slots_; // count_ entries, filled by open()
    bool ok_ = false;
    std::string error_;
    // Not std::call_once: its libstdc++ implementation passes the callable
    // through thread_local variables of libstdc++.so, which from this static
    // (PIC) library costs a __tls_get_addr reference and with it a DT_NEEDED
    // entry on ld-linux. A flag plus a mutex does the same here.
    std::atomic<bool> tried_{false}; // set (release) once ok_/error_/slots_ are final
    std::mutex mutex_;
};

} // namespace hearth::lazy
