#pragma once
// RAII ownership of a file descriptor. Every fd hearth opens lives in one of
// these, so no error path leaks one into a child process or the fd table.

#include <unistd.h>
#include <utility>

namespace hearth {

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    // Gives up ownership; the caller must close the returned fd.
    int release() noexcept { return std::exchange(fd_, -1); }
    // Closes the owned fd (if any) and takes ownership of `fd`.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

} // namespace hearth
