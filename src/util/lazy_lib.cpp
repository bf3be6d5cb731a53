#include "util/lazy_lib.hpp"

#include "util/log.hpp"

#include <climits>
#include <dlfcn.h>
#include <new>
#include <unistd.h>

namespace hearth::lazy {

std::string bundled_path(std::string_view exe, std::string_view soname) {
    if (exe.empty() || exe.front() != '/') return {};
    std::string path(exe.substr(0, exe.rfind('/'))); // "" for "/hearth": "/../lib" is "/lib"
    path += "/../lib/";
    path += soname;
    return path;
}

namespace {

// The running executable's path, "" when /proc is not mounted (then only the
// plain soname is tried). A deleted (replaced) executable reads as
// "PATH (deleted)": its directory is still the right one.
std::string self_exe() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf);
    if (n <= 0 || static_cast<std::size_t>(n) >= sizeof buf) return {};
    return std::string(buf, static_cast<std::size_t>(n));
}

} // namespace

Library::Library(const char* soname, const char* needed_for, const char* const* names,
                 std::size_t count) noexcept
    : soname_(soname), needed_for_(needed_for), names_(names), count_(count) {}

void* Library::symbol(std::size_t index) noexcept {
    if (!load() || index >= count_) return nullptr;
    return slots_[index];
}

bool Library::load() noexcept {
    if (!tried_.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> lock(mutex_); // pthread_mutex_lock: does not throw here
        if (!tried_.load(std::memory_order_relaxed)) {
            open();
            tried_.store(true, std::memory_order_release);
        }
    }
    return ok_;
}

bool Library::open_file(const char* file, std::string& why) noexcept {
    // RTLD_LOCAL: the library's symbols must not join the global scope, where
    // they would be found before (or instead of) a later dlopen'd library's.
    // RTLD_NOW: a broken installation shows up here, once, as one log line,
    // rather than as a crash in the middle of an extraction.
    void* handle = ::dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* e = ::dlerror();
        why = e != nullptr ? e : "dlopen failed";
        return false;
    }
    slots_.reset(new (std::nothrow) void*[count_]);
    if (!slots_) why = "out of memory";
    for (std::size_t i = 0; slots_ && i < count_; ++i) {
        ::dlerror(); // a symbol may legitimately be NULL; only dlerror tells
        slots_[i] = ::dlsym(handle, names_[i]);
        if (slots_[i] == nullptr) {
            const char* e = ::dlerror();
            if (e != nullptr) {
                why = e;
            } else {
                why = "undefined symbol: ";
                why += names_[i];
            }
            break;
        }
    }
    if (why.empty()) return true;
    slots_.reset();
    ::dlclose(handle); // nothing was handed out
    return false;
}

void Library::open() noexcept {
    std::string why_bundled;
    std::string why;
    try {
        std::string bundled = bundled_path(self_exe(), soname_);
        // Only an existing file counts: outside a bundle the path names
        // nothing, and that is no failure worth reporting.
        if (!bundled.empty() && ::access(bundled.c_str(), F_OK) == 0) {
            if (open_file(bundled.c_str(), why_bundled)) {
                ok_ = true;
                loaded_from_ = bundled;
                return;
            }
            // A bundle with a broken copy: the system's may still serve,
            // but whoever built the bundle has to hear about it.
            log::warn(std::string("cannot load the bundled ") + bundled + ", trying the system's " +
                          soname_,
                      {{"library", soname_}, {"path", bundled}, {"error", why_bundled}});
            why_bundled = bundled + ": " + why_bundled + "; then ";
        }
        if (open_file(soname_, why)) {
            ok_ = true;
            loaded_from_ = soname_;
            return;
        }
        error_ = std::string(soname_) + " could not be loaded: " + why_bundled + why;
        log::error(std::string("cannot load ") + soname_ + ", " + needed_for_ + " will fail",
                   {{"library", soname_}, {"error", why_bundled + why}});
    } catch (...) {
        // Out of memory while looking or reporting: the callers still fail
        // cleanly (ok_ stays false unless a load above already succeeded).
    }
}

} // namespace hearth::lazy
