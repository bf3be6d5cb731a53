#include "store/sha256.hpp"

#include "util/fd.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <new>
#include <openssl/evp.h>
#include <unistd.h>
#include <utility>

namespace hearth {

namespace {

EVP_MD_CTX* ctx_of(void* p) {
    return static_cast<EVP_MD_CTX*>(p);
}

// 1 MiB: large enough that syscall overhead vanishes next to hashing, small
// enough to stay in L2/L3 alongside the digest state.
constexpr std::size_t file_buffer_size = 1 << 20;

} // namespace

Sha256::Sha256() noexcept : ctx_(EVP_MD_CTX_new()) {
    reset();
}

Sha256::~Sha256() {
    EVP_MD_CTX_free(ctx_of(ctx_));
}

Sha256::Sha256(Sha256&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)), ok_(std::exchange(other.ok_, false)) {}

Sha256& Sha256::operator=(Sha256&& other) noexcept {
    if (this != &other) {
        EVP_MD_CTX_free(ctx_of(ctx_));
        ctx_ = std::exchange(other.ctx_, nullptr);
        ok_ = std::exchange(other.ok_, false);
    }
    return *this;
}

void Sha256::reset() noexcept {
    ok_ = ctx_ != nullptr && EVP_DigestInit_ex(ctx_of(ctx_), EVP_sha256(), nullptr) == 1;
}

void Sha256::update(const void* data, std::size_t size) noexcept {
    if (!ok_ || size == 0) return;
    if (EVP_DigestUpdate(ctx_of(ctx_), data, size) != 1) ok_ = false;
}

bool Sha256::finish(Sha256Digest& out) noexcept {
    out.fill(0);
    bool good = ok_;
    if (good) {
        unsigned int len = 0;
        good = EVP_DigestFinal_ex(ctx_of(ctx_), out.data(), &len) == 1 && len == out.size();
        if (!good) out.fill(0);
    }
    reset();
    return good;
}

std::string Sha256::finish_hex() noexcept {
    Sha256Digest d;
    if (!finish(d)) return {};
    try {
        return to_hex(d);
    } catch (...) {
        return {};
    }
}

std::string to_hex(const std::uint8_t* data, std::size_t size) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(size * 2, '\0');
    for (std::size_t i = 0; i < size; ++i) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0xf];
    }
    return out;
}

bool is_sha256_hex(std::string_view s) noexcept {
    if (s.size() != 2 * sha256_size) return false;
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

std::optional<std::string> canonical_sha256_hex(std::string_view s) {
    std::string lower(s);
    for (auto& c : lower)
        if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!is_sha256_hex(lower)) return std::nullopt;
    return lower;
}

std::string sha256_hex(std::string_view data) noexcept {
    Sha256 h;
    h.update(data);
    return h.finish_hex();
}

Sha256FileResult sha256_file(const std::string& path) noexcept {
    Sha256FileResult r;
    try {
        Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
        if (!fd) {
            r.error = "open " + path + ": " + std::strerror(errno);
            return r;
        }
        // Advisory only: doubles kernel read-ahead on most filesystems.
        (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);

        std::unique_ptr<char[]> buf(new (std::nothrow) char[file_buffer_size]);
        if (!buf) {
            r.error = "hash " + path + ": out of memory";
            return r;
        }
        Sha256 h;
        if (!h.ok()) {
            r.error = "hash " + path + ": libcrypto could not start SHA-256";
            return r;
        }
        for (;;) {
            ssize_t n = ::read(fd.get(), buf.get(), file_buffer_size);
            if (n < 0) {
                if (errno == EINTR) continue;
                r.error = "read " + path + ": " + std::strerror(errno);
                return r;
            }
            if (n == 0) break;
            h.update(buf.get(), static_cast<std::size_t>(n));
            r.bytes += static_cast<std::uint64_t>(n);
        }
        r.hex = h.finish_hex();
        if (r.hex.empty()) {
            r.error = "hash " + path + ": libcrypto failed";
            return r;
        }
        r.ok = true;
    } catch (const std::exception& e) {
        r.ok = false;
        r.hex.clear();
        r.error = "hash " + path + ": " + e.what();
    }
    return r;
}

} // namespace hearth
