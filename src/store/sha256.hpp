#pragma once
// SHA-256 over OpenSSL's EVP interface (libcrypto).
//
// Used by the artifact store (verify a blob while copying or downloading it)
// and by hearthctl (hash a local pex before a deploy). Everything here is
// blocking, keeps no global state and throws nothing.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hearth {

inline constexpr std::size_t sha256_size = 32;
using Sha256Digest = std::array<std::uint8_t, sha256_size>;

// Incremental hasher. One instance per thread of use (instances share nothing,
// so different threads may each use their own). Not copyable; movable.
class Sha256 {
public:
    // Allocates the EVP context and starts a digest. If libcrypto fails (out
    // of memory, SHA-256 unavailable under a restrictive provider config),
    // ok() is false and update()/finish() do nothing and report failure.
    Sha256() noexcept;
    ~Sha256();
    Sha256(Sha256&& other) noexcept;
    Sha256& operator=(Sha256&& other) noexcept;
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    bool ok() const noexcept { return ok_; }

    // Feeds bytes. A failure makes ok() false for the rest of this digest.
    void update(const void* data, std::size_t size) noexcept;
    void update(std::string_view data) noexcept { update(data.data(), data.size()); }

    // Completes the digest into `out` and restarts, so the object can hash the
    // next input. Returns false (and leaves `out` zeroed) if any step failed.
    bool finish(Sha256Digest& out) noexcept;
    // As finish(), as 64 lowercase hex characters; "" on failure.
    std::string finish_hex() noexcept;

    // Discards anything fed so far and starts a new digest.
    void reset() noexcept;

private:
    void* ctx_ = nullptr; // EVP_MD_CTX*, kept opaque so users need no OpenSSL headers
    bool ok_ = false;
};

// Lowercase hex of `size` bytes.
std::string to_hex(const std::uint8_t* data, std::size_t size);
inline std::string to_hex(const Sha256Digest& d) {
    return to_hex(d.data(), d.size());
}

// True iff `s` is exactly 64 characters of [0-9a-f]. Uppercase is refused on
// purpose: the digest string names a path in the store, so one spelling only.
bool is_sha256_hex(std::string_view s) noexcept;

// A digest as people type it (64 hex characters in either case) in the one
// spelling is_sha256_hex accepts (lowercase); nullopt for anything else.
// hearthctl uses it so `--deps-sha256` may be pasted from any tool.
std::optional<std::string> canonical_sha256_hex(std::string_view s);

// sha256 of a byte string, as hex ("" only if libcrypto fails).
std::string sha256_hex(std::string_view data) noexcept;

struct Sha256FileResult {
    bool ok = false;
    std::string hex;         // 64 lowercase hex characters when ok
    std::uint64_t bytes = 0; // bytes hashed
    std::string error;       // names the path and the failing call when !ok
};

// Hashes the file at `path` (which must be a regular file, or anything that
// reads to EOF) with one large reusable buffer. Blocking; thread-safe.
Sha256FileResult sha256_file(const std::string& path) noexcept;

} // namespace hearth
