#include "util/lazy_lib.hpp"

#include "util/log.hpp"

#include <dlfcn.h>
#include <new>

namespace hearth::lazy {

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

void Library::open() noexcept {
    // RTLD_LOCAL: the library's symbols must not join the global scope, where
    // they would be found before (or instead of) a later dlopen'd library's.
    // RTLD_NOW: a broken installation shows up here, once, as one log line,
    // rather than as a crash in the middle of an extraction.
    void* handle = ::dlopen(soname_, RTLD_NOW | RTLD_LOCAL);
    std::string why;
    if (handle == nullptr) {
        const char* e = ::dlerror();
        why = e != nullptr ? e : "dlopen failed";
    } else {
        slots_.reset(new (std::nothrow) void*[count_]);
        if (!slots_) why = "out of memory";
        for (std::size_t i = 0; slots_ && i < count_; ++i) {
            ::dlerror(); // a symbol may legitimately be NULL; only dlerror tells
            slots_[i] = ::dlsym(handle, names_[i]);
            if (slots_[i] == nullptr) {
                const char* e = ::dlerror();
                why = e != nullptr ? e : std::string("undefined symbol: ") + names_[i];
                break;
            }
        }
        if (!why.empty()) {
            slots_.reset();
            ::dlclose(handle); // nothing was handed out
        }
    }
    if (why.empty()) {
        ok_ = true;
        return;
    }
    try {
        error_ = std::string(soname_) + " could not be loaded: " + why;
        log::error(std::string("cannot load ") + soname_ + ", " + needed_for_ + " will fail",
                   {{"library", soname_}, {"error", why}});
    } catch (...) {
        // Out of memory while reporting: the callers still fail cleanly.
    }
}

} // namespace hearth::lazy
