#pragma once
// hearth's one error convention (doc/error-handling.md).
//
// A fallible call returns Result<T> (or Status, for no value). The Error
// carries a code that callers branch on, the errno behind it when there is
// one, and a message for people that names the object and the problem.
// Callers never branch on the message. Exceptions are used only inside RPC
// handlers (rpc::RpcError becomes a JSON-RPC error) and for std::bad_alloc;
// every libuv callback and thread-pool job catches everything.
//
// Header-only; no function here throws except std::bad_alloc and the
// std::bad_variant_access of calling value()/error() on the wrong state,
// which is a programming error.

#include <string>
#include <utility>
#include <variant>

namespace hearth {

// Codes shared by every concern. Add a code when a caller needs to decide
// something by it; keep the message for the details.
enum class Errc {
    io,               // anything else the OS refused (see sys_errno)
    no_space,         // ENOSPC or EDQUOT
    not_found,        // ENOENT, or a named object that does not exist
    invalid_argument, // the caller's input is malformed (names the input)
    invalid_digest,   // not 64 lowercase hex characters
    digest_mismatch,  // bytes whose sha256 is not the expected one
    bad_archive,      // extraction refused an archive
    too_large,        // over a configured byte or entry limit
    unknown_user,     // no such user name or uid
    unknown_group,    // no such group name or gid
    timeout,          // a deadline passed
    closed,           // the peer closed the connection
    protocol,         // the peer spoke something else
    unsupported,      // the kernel or the system lacks a feature
};

// "io", "no_space", ...: the code's name, a static string.
constexpr const char* errc_name(Errc c) noexcept {
    switch (c) {
    case Errc::io:
        return "io";
    case Errc::no_space:
        return "no_space";
    case Errc::not_found:
        return "not_found";
    case Errc::invalid_argument:
        return "invalid_argument";
    case Errc::invalid_digest:
        return "invalid_digest";
    case Errc::digest_mismatch:
        return "digest_mismatch";
    case Errc::bad_archive:
        return "bad_archive";
    case Errc::too_large:
        return "too_large";
    case Errc::unknown_user:
        return "unknown_user";
    case Errc::unknown_group:
        return "unknown_group";
    case Errc::timeout:
        return "timeout";
    case Errc::closed:
        return "closed";
    case Errc::protocol:
        return "protocol";
    case Errc::unsupported:
        return "unsupported";
    }
    return "io";
}

struct Error {
    Errc code = Errc::io;
    int sys_errno = 0;   // the errno behind it, 0 when none
    std::string message; // for people: names the object and the problem; never empty
};

// The Errc for an errno: no_space for ENOSPC/EDQUOT, not_found for ENOENT,
// io otherwise.
constexpr Errc errc_from_errno(int err) noexcept {
    switch (err) {
    case 28:  // ENOSPC
    case 122: // EDQUOT
        return Errc::no_space;
    case 2: // ENOENT
        return Errc::not_found;
    default:
        return Errc::io;
    }
}

// An Error from an errno and a message ("<what>: <strerror>" is built by the
// caller, usually with errno_text from util/fs.hpp).
inline Error os_error(int err, std::string message) {
    return Error{errc_from_errno(err), err, std::move(message)};
}

// A value or an error. E is Error everywhere except where a caller needs more
// than a code (hearthctl's CallError carries the JSON-RPC error object).
template <typename T, typename E = Error> class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    const E& error() const& { return std::get<1>(v_); }
    E&& error() && { return std::get<1>(std::move(v_)); }

private:
    std::variant<T, E> v_;
};

// A fallible call with no value: ok, or an Error.
class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Error error) : error_(std::move(error)), ok_(false) {}

    bool ok() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }
    const Error& error() const& { return error_; }
    Error&& error() && { return std::move(error_); }

private:
    Error error_;
    bool ok_ = true;
};

} // namespace hearth
