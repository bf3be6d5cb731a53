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
//
// Where a library is looked for: first `<dir of /proc/self/exe>/../lib/<soname>`,
// which is where the relocatable bundle (`ninja bundle`, scripts/make-bundle)
// puts it, so that a bundled hearth copied into any base image uses the
// libarchive/libcurl it was built with rather than whatever the image has (or
// lacks); then the plain soname through the loader's usual search (installed
// or build-tree hearth).

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace hearth::lazy {

// The path tried before the plain soname for a program whose executable is
// `exe` (an absolute path, as /proc/self/exe reads): `<dir of exe>/../lib/<soname>`,
// e.g. "/opt/hearth/bin/hearth" -> "/opt/hearth/bin/../lib/libcurl.so.4".
// "" when `exe` is not absolute (nothing sensible to resolve against). Pure;
// allocates (may throw std::bad_alloc).
std::string bundled_path(std::string_view exe, std::string_view soname);

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
    // once, so a library is either fully usable or not at all. It tries
    // bundled_path(/proc/self/exe, soname) first when that file exists and
    // the plain soname after it (also when the bundled file exists but fails
    // to load: then one warning line names the bundled file and why). On
    // failure it logs one error line naming the library and dlerror()'s text
    // (both attempts' when both were made), and every later call returns
    // nullptr without retrying. Thread-safe (the first call
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

    // The file or soname the library was loaded from ("" until loaded
    // successfully): the bundled path or the plain soname. Stable once set.
    const std::string& loaded_from() const noexcept { return loaded_from_; }

private:
    bool load() noexcept;
    void open() noexcept;
    // dlopens `file` and resolves every name into slots_; on failure sets
    // `why`, leaves slots_ empty and closes what it opened.
    bool open_file(const char* file, std::string& why) noexcept;

    const char* soname_;
    const char* needed_for_;
    const char* const* names_;
    std::size_t count_;
    std::unique_ptr<void*[]> slots_; // count_ entries, filled by open()
    bool ok_ = false;
    std::string error_;
    std::string loaded_from_;
    // Not std::call_once: its libstdc++ implementation passes the callable
    // through thread_local variables of libstdc++.so, which from this static
    // (PIC) library costs a __tls_get_addr reference and with it a DT_NEEDED
    // entry on ld-linux. A flag plus a mutex does the same here.
    std::atomic<bool> tried_{false}; // set (release) once ok_/error_/slots_ are final
    std::mutex mutex_;
};

} // namespace hearth::lazy
