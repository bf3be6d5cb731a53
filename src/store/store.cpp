#include "store/store.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <new>
#include <optional>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>
#include <utility>

namespace hearth {

namespace {

constexpr std::size_t copy_buffer_size = 1 << 20;

StoreResult failed(StoreStatus status, std::string error) {
    StoreResult r;
    r.status = status;
    r.error = std::move(error);
    return r;
}

bool is_space_errno(int e) noexcept {
    return e == ENOSPC || e == EDQUOT;
}

StoreStatus status_for_errno(int e) noexcept {
    return is_space_errno(e) ? StoreStatus::no_space : StoreStatus::io_error;
}

// A system call's failure: no_space for ENOSPC/EDQUOT, else io_error.
StoreResult io_failure(const std::string& what, const std::string& path, int e) {
    StoreResult r = failed(status_for_errno(e), what + " " + path + ": " + errno_text(e));
    r.sys_errno = e;
    return r;
}

// Sets the mtime (and atime) of `name` in `dirfd` to now. Both UTIME_NOW
// rather than an explicit time: then owning the file is enough, write
// permission (which read-only store objects lack) is not needed.
int touch_at(int dirfd, const char* name) noexcept {
    const struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    return ::utimensat(dirfd, name, now, AT_SYMLINK_NOFOLLOW);
}

std::chrono::system_clock::time_point mtime_of(const struct stat& st) {
    using namespace std::chrono;
    return system_clock::time_point(duration_cast<system_clock::duration>(
        seconds(st.st_mtim.tv_sec) + nanoseconds(st.st_mtim.tv_nsec)));
}

StoreResult bad_digest(std::string_view hex) {
    std::string shown(hex.substr(0, 80));
    return failed(StoreStatus::invalid_digest,
                  "invalid sha256 digest '" + shown + "' (want 64 lowercase hex characters)");
}

StoreResult not_open() {
    return failed(StoreStatus::io_error, "store is not open");
}

Fd open_dir(int at, const char* path) {
    return Fd(::openat(at, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

// Names in directory `at` (fresh open file description, so callers on other
// threads using `at` for *at() calls are unaffected). False on error.
bool list_dir(int at, std::vector<std::string>& out, int& err) {
    Fd fd(::openat(at, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
        err = errno;
        return false;
    }
    DIR* d = ::fdopendir(fd.get());
    if (d == nullptr) {
        err = errno;
        return false;
    }
    fd.release(); // now owned by d
    bool ok = true;
    for (;;) {
        errno = 0;
        struct dirent* de = ::readdir(d);
        if (de == nullptr) {
            if (errno != 0) {
                err = errno;
                ok = false;
            }
            break;
        }
        if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
        out.emplace_back(de->d_name);
    }
    ::closedir(d);
    return ok;
}

// Publishes `from` (in tmp) as `to` (in dst) unless `to` exists. Returns 0,
// EEXIST if it exists, or another errno.
int publish(int tmp, const std::string& from, int dst, const std::string& to) {
    if (::renameat2(tmp, from.c_str(), dst, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
    int e = errno;
    if (e == EINVAL || e == ENOSYS) {
        // Filesystem without RENAME_NOREPLACE. For directories plain rename
        // still refuses a non-empty target (and we never make empty ones);
        // for blobs replacing an identical verified file is harmless.
        if (::renameat(tmp, from.c_str(), dst, to.c_str()) == 0) return 0;
        e = errno;
    }
    return e == ENOTEMPTY ? EEXIST : e;
}

void usage_walk(int dirfd, int depth, DiskUsage& u) {
    if (depth > 1024) {
        u.ok = false;
        return;
    }
    std::vector<std::string> names;
    int err = 0;
    if (!list_dir(dirfd, names, err)) {
        u.ok = false;
        return;
    }
    for (const std::string& n : names) {
        struct stat st {};
        if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        u.allocated += static_cast<std::uint64_t>(st.st_blocks) * 512;
        u.apparent += static_cast<std::uint64_t>(st.st_size);
        ++u.entries;
        if (S_ISDIR(st.st_mode)) {
            Fd sub = open_dir(dirfd, n.c_str());
            if (sub) usage_walk(sub.get(), depth + 1, u);
        }
    }
}

std::vector<std::string> list_digests(int fd) noexcept {
    std::vector<std::string> out;
    try {
        std::vector<std::string> names;
        int err = 0;
        if (fd < 0 || !list_dir(fd, names, err)) return out;
        for (std::string& n : names) {
            if (is_sha256_hex(n)) out.push_back(std::move(n));
        }
        std::sort(out.begin(), out.end());
    } catch (...) {
        out.clear();
    }
    return out;
}

// The StoreResult for a failed extraction, with `error` as its message:
// no_space for ExtractError::no_space (over the caller's budget, or ENOSPC/
// EDQUOT), io_error/no_space by errno for io, bad_archive for the archive's
// own faults (unsafe_entry, limit, corrupt).
StoreResult extract_failure(const ExtractResult& x, std::string error) {
    StoreStatus status = StoreStatus::bad_archive;
    if (x.code == ExtractError::no_space)
        status = StoreStatus::no_space;
    else if (x.code == ExtractError::io)
        status = status_for_errno(x.sys_errno);
    StoreResult r = failed(status, std::move(error));
    if (status != StoreStatus::bad_archive) r.sys_errno = x.sys_errno;
    return r;
}

// Allocated bytes of the object `name` in `dirfd` (a blob file or a tree).
std::optional<std::uint64_t> measure_at(int dirfd, const char* name, ObjectKind kind) {
    struct stat st {};
    if (kind == ObjectKind::blob) {
        if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
            return std::nullopt;
        }
        return static_cast<std::uint64_t>(st.st_blocks) * 512;
    }
    Fd root = open_dir(dirfd, name);
    if (!root || ::fstat(root.get(), &st) != 0) return std::nullopt;
    DiskUsage u;
    u.ok = true;
    u.allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
    usage_walk(root.get(), 0, u);
    if (!u.ok) return std::nullopt;
    return u.allocated;
}

} // namespace

const char* store_status_name(StoreStatus s) noexcept {
    switch (s) {
    case StoreStatus::ok:
        return "ok";
    case StoreStatus::invalid_digest:
        return "invalid_digest";
    case StoreStatus::digest_mismatch:
        return "digest_mismatch";
    case StoreStatus::not_found:
        return "not_found";
    case StoreStatus::bad_archive:
        return "bad_archive";
    case StoreStatus::io_error:
        return "io_error";
    case StoreStatus::no_space:
        return "no_space";
    }
    return "unknown";
}

const char* object_kind_name(ObjectKind k) noexcept {
    return k == ObjectKind::blob ? "blob" : "tree";
}

// ---------------------------------------------------------------------------
// BlobWriter

BlobWriter::~BlobWriter() {
    abort();
}

BlobWriter::BlobWriter(BlobWriter&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)), fd_(std::move(other.fd_)),
      name_(std::move(other.name_)), error_(std::move(other.error_)),
      errno_(std::exchange(other.errno_, 0)), bytes_(std::exchange(other.bytes_, 0)),
      hash_(std::move(other.hash_)) {
    other.name_.clear();
}

BlobWriter& BlobWriter::operator=(BlobWriter&& other) noexcept {
    if (this != &other) {
        abort();
        store_ = std::exchange(other.store_, nullptr);
        fd_ = std::move(other.fd_);
        name_ = std::move(other.name_);
        other.name_.clear();
        error_ = std::move(other.error_);
        errno_ = std::exchange(other.errno_, 0);
        bytes_ = std::exchange(other.bytes_, 0);
        hash_ = std::move(other.hash_);
    }
    return *this;
}

StoreStatus BlobWriter::failure_status() const noexcept {
    return status_for_errno(errno_);
}

void BlobWriter::abort() noexcept {
    fd_.reset();
    if (store_ != nullptr && !name_.empty()) {
        (void)::unlinkat(store_->tmp_fd_.get(), name_.c_str(), 0);
    }
    name_.clear();
}

bool BlobWriter::write(const void* data, std::size_t size) noexcept {
    if (!fd_) return false;
    hash_.update(data, size);
    const char* p = static_cast<const char*>(data);
    std::size_t left = size;
    while (left > 0) {
        ssize_t w = ::write(fd_.get(), p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            errno_ = e;
            try {
                error_ = "write " + store_->dir_ + "/tmp/" + name_ + ": " + errno_text(e);
            } catch (...) {
            }
            abort();
            return false;
        }
        p += w;
        left -= static_cast<std::size_t>(w);
    }
    bytes_ += size;
    return true;
}

StoreResult BlobWriter::commit(std::string_view expected_hex, std::string_view source) noexcept {
    try {
        if (!is_sha256_hex(expected_hex)) {
            abort();
            return bad_digest(expected_hex);
        }
        if (!fd_ || store_ == nullptr) {
            StoreResult f =
                failed(failure_status(), error_.empty() ? "blob writer is not open" : error_);
            f.sys_errno = errno_;
            return f;
        }
        const std::string tmp_path = store_->dir_ + "/tmp/" + name_;
        StoreResult r;
        r.bytes = bytes_;
        r.actual = hash_.finish_hex();
        if (r.actual.empty()) {
            abort();
            return failed(StoreStatus::io_error,
                          "sha256 of " + std::string(source) + ": libcrypto failed");
        }
        if (r.actual != expected_hex) {
            abort();
            StoreResult m = failed(StoreStatus::digest_mismatch,
                                   "sha256 mismatch for " + std::string(source) + ": expected " +
                                       std::string(expected_hex) + ", got " + r.actual);
            m.actual = r.actual;
            m.bytes = r.bytes;
            return m;
        }
        if (store_->options_.sync && ::fsync(fd_.get()) != 0) {
            int e = errno;
            abort();
            return io_failure("fsync", tmp_path, e);
        }
        if (::fchmod(fd_.get(), 0444) != 0) {
            int e = errno;
            abort();
            return io_failure("chmod", tmp_path, e);
        }
        if (::close(fd_.release()) != 0) {
            int e = errno;
            abort();
            return io_failure("close", tmp_path, e);
        }
        const std::string hex(expected_hex);
        int e = publish(store_->tmp_fd_.get(), name_, store_->blobs_fd_.get(), hex);
        if (e == EEXIST) {
            abort(); // someone published the same bytes first
            r.hit = true;
            (void)touch_at(store_->blobs_fd_.get(), hex.c_str());
        } else if (e != 0) {
            abort();
            return io_failure("publish", tmp_path, e);
        }
        name_.clear();
        r.path = store_->blob_path(hex);
        return r;
    } catch (const std::exception& ex) {
        abort();
        return failed(StoreStatus::io_error, std::string("commit blob: ") + ex.what());
    }
}

// ---------------------------------------------------------------------------
// Store

Store::Store(std::string state_dir, StoreOptions options)
    : dir_(std::move(state_dir)), options_(options) {
    while (dir_.size() > 1 && dir_.back() == '/')
        dir_.pop_back();
}

std::string Store::temp_name(std::string_view kind, std::string_view hex) const {
    std::uint32_t rnd = 0;
    if (::getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof rnd)) {
        rnd =
            static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
    char buf[96];
    (void)std::snprintf(buf, sizeof buf, "-%.12s-%ld-%llu-%08x", std::string(hex).c_str(),
                        static_cast<long>(::getpid()),
                        static_cast<unsigned long long>(counter_.fetch_add(1)), rnd);
    return std::string(kind) + buf;
}

StoreResult Store::open() noexcept {
    try {
        if (is_open()) return failed(StoreStatus::io_error, "store " + dir_ + " is already open");
        int err = 0;
        for (const char* sub : {"/blobs/sha256", "/trees/sha256", "/tmp"}) {
            if (Status made = make_dirs(dir_ + sub); !made) {
                StoreResult f =
                    failed(status_for_errno(made.error().sys_errno), made.error().message);
                f.sys_errno = made.error().sys_errno;
                return f;
            }
        }
        Fd lock(::open((dir_ + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!lock) return io_failure("open", dir_ + "/lock", errno);
        if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK) {
                return failed(StoreStatus::io_error, "state directory " + dir_ + " is in use (" +
                                                         dir_ + "/lock is held by another store)");
            }
            return io_failure("lock", dir_ + "/lock", errno);
        }
        Fd blobs = open_dir(AT_FDCWD, (dir_ + "/blobs/sha256").c_str());
        if (!blobs) return io_failure("open", dir_ + "/blobs/sha256", errno);
        Fd trees = open_dir(AT_FDCWD, (dir_ + "/trees/sha256").c_str());
        if (!trees) return io_failure("open", dir_ + "/trees/sha256", errno);
        Fd tmp = open_dir(AT_FDCWD, (dir_ + "/tmp").c_str());
        if (!tmp) return io_failure("open", dir_ + "/tmp", errno);

        // Whatever is in tmp/ is a crashed run's unfinished work.
        std::vector<std::string> names;
        if (!list_dir(tmp.get(), names, err)) return io_failure("read", dir_ + "/tmp", err);
        StoreResult r;
        for (const std::string& n : names) {
            if (Status removed = remove_all(dir_ + "/tmp/" + n); !removed) {
                const std::string& e = removed.error().message;
                return failed(StoreStatus::io_error, "sweep tmp: " + e);
            }
        }
        r.entries = names.size();

        // Foreign or damaged entries where only published objects belong.
        for (const auto& [sub, fd, want] : {std::tuple{"/blobs/sha256/", blobs.get(), S_IFREG},
                                            std::tuple{"/trees/sha256/", trees.get(), S_IFDIR}}) {
            names.clear();
            if (!list_dir(fd, names, err)) return io_failure("read", dir_ + sub, err);
            for (const std::string& n : names) {
                struct stat st {};
                if (::fstatat(fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
                    if (errno == ENOENT) continue;
                    return io_failure("stat", dir_ + sub + n, errno);
                }
                if (is_sha256_hex(n) && (st.st_mode & S_IFMT) == static_cast<mode_t>(want))
                    continue;
                if (Status removed = remove_all(dir_ + sub + n); !removed) {
                    const std::string& e = removed.error().message;
                    return failed(StoreStatus::io_error, "remove foreign entry: " + e);
                }
                ++r.entries;
            }
        }
        lock_fd_ = std::move(lock);
        blobs_fd_ = std::move(blobs);
        trees_fd_ = std::move(trees);
        tmp_fd_ = std::move(tmp);
        r.path = dir_;
        return r;
    } catch (const std::exception& e) {
        return failed(StoreStatus::io_error, std::string("open store: ") + e.what());
    }
}

std::string Store::blob_path(std::string_view hex) const noexcept {
    if (!is_sha256_hex(hex)) return {};
    try {
        return dir_ + "/blobs/sha256/" + std::string(hex);
    } catch (...) {
        return {};
    }
}

std::string Store::tree_path(std::string_view hex) const noexcept {
    if (!is_sha256_hex(hex)) return {};
    try {
        return dir_ + "/trees/sha256/" + std::string(hex);
    } catch (...) {
        return {};
    }
}

bool Store::has_blob(std::string_view hex) const noexcept {
    if (!is_sha256_hex(hex) || !is_open()) return false;
    char name[2 * sha256_size + 1];
    std::memcpy(name, hex.data(), hex.size());
    name[hex.size()] = '\0';
    struct stat st {};
    return ::fstatat(blobs_fd_.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

bool Store::has_tree(std::string_view hex) const noexcept {
    if (!is_sha256_hex(hex) || !is_open()) return false;
    char name[2 * sha256_size + 1];
    std::memcpy(name, hex.data(), hex.size());
    name[hex.size()] = '\0';
    struct stat st {};
    return ::fstatat(trees_fd_.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

BlobWriter Store::begin_blob() const noexcept {
    BlobWriter w;
    try {
        if (!is_open()) {
            w.error_ = "store is not open";
            return w;
        }
        if (!w.hash_.ok()) {
            w.error_ = "libcrypto could not start SHA-256";
            return w;
        }
        w.name_ = temp_name("blob", "");
        w.fd_.reset(::openat(tmp_fd_.get(), w.name_.c_str(),
                             O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!w.fd_) {
            w.errno_ = errno;
            w.error_ = "create " + dir_ + "/tmp/" + w.name_ + ": " + errno_text(w.errno_);
            w.name_.clear();
            return w;
        }
        w.store_ = this;
    } catch (...) {
        w.abort();
        w.error_.clear();
    }
    return w;
}

StoreResult Store::import_file(const std::string& src, std::string_view expected_hex) noexcept {
    try {
        if (!is_sha256_hex(expected_hex)) return bad_digest(expected_hex);
        if (!is_open()) return not_open();
        if (has_blob(expected_hex) &&
            touch_at(blobs_fd_.get(), std::string(expected_hex).c_str()) == 0) {
            StoreResult r;
            r.hit = true;
            r.path = blob_path(expected_hex);
            r.actual = std::string(expected_hex);
            return r;
        }
        // O_NONBLOCK: a FIFO must not hang the open; it is refused below.
        Fd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
        if (!in) {
            int e = errno;
            StoreResult r = io_failure("open", src, e);
            if (e == ENOENT) r.status = StoreStatus::not_found;
            return r;
        }
        struct stat st {};
        if (::fstat(in.get(), &st) != 0) return io_failure("stat", src, errno);
        if (!S_ISREG(st.st_mode))
            return failed(StoreStatus::io_error, src + ": not a regular file");
        (void)::posix_fadvise(in.get(), 0, 0, POSIX_FADV_SEQUENTIAL);

        const auto writer_failure = [](const BlobWriter& bw) {
            StoreResult f = failed(bw.failure_status(), bw.error());
            f.sys_errno = bw.sys_errno();
            return f;
        };
        BlobWriter w = begin_blob();
        if (!w.ok()) return writer_failure(w);
        std::unique_ptr<char[]> buf(new (std::nothrow) char[copy_buffer_size]);
        if (!buf) return failed(StoreStatus::io_error, "import " + src + ": out of memory");
        for (;;) {
            ssize_t n = ::read(in.get(), buf.get(), copy_buffer_size);
            if (n < 0) {
                if (errno == EINTR) continue;
                return io_failure("read", src, errno); // w's destructor deletes the temp file
            }
            if (n == 0) break;
            if (!w.write(buf.get(), static_cast<std::size_t>(n))) return writer_failure(w);
        }
        return w.commit(expected_hex, src);
    } catch (const std::exception& e) {
        return failed(StoreStatus::io_error, "import " + src + ": " + e.what());
    }
}

StoreResult Store::unpack_wheels(const std::string& tree, ExtractLimits& budget, unsigned threads,
                                 StoreResult& total) const {
    Fd root = open_dir(AT_FDCWD, tree.c_str());
    if (!root) return io_failure("open", tree, errno);
    Fd deps = open_dir(root.get(), ".deps");
    if (!deps) {
        // No .deps (or a link, which raw wheels never are): nothing to do.
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return {};
        return io_failure("open", tree + "/.deps", errno);
    }
    std::vector<std::string> names;
    int err = 0;
    if (!list_dir(deps.get(), names, err)) return io_failure("read", tree + "/.deps", err);
    std::vector<std::string> wheels;
    for (std::string& n : names) {
        if (n.size() <= 4 || n.compare(n.size() - 4, 4, ".whl") != 0) continue;
        struct stat st {};
        if (::fstatat(deps.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode)) {
            wheels.push_back(std::move(n));
        }
    }
    if (wheels.empty()) return {};
    std::sort(wheels.begin(), wheels.end());

    struct stat st {};
    if (::fstatat(root.get(), ".hearth", &st, AT_SYMLINK_NOFOLLOW) == 0) {
        StoreResult r = failed(StoreStatus::bad_archive,
                               "entry '.hearth': the archive has raw wheels and a '.hearth' "
                               "entry, a name hearth reserves for unpacked wheels");
        r.entry = ".hearth";
        return r;
    }
    if (::mkdirat(root.get(), ".hearth", 0755) != 0)
        return io_failure("mkdir", tree + "/.hearth", errno);
    if (::mkdirat(root.get(), ".hearth/wheels", 0755) != 0) {
        return io_failure("mkdir", tree + "/.hearth/wheels", errno);
    }
    ExtractOptions opts;
    opts.read_only = true;
    for (const std::string& w : wheels) {
        std::string dest = tree;
        dest.append("/.hearth/wheels/").append(w);
        std::string src = tree;
        src.append("/.deps/").append(w);
        ExtractResult x = extract_zip(src, dest, budget, threads, opts);
        total.entries += x.entries;
        total.bytes += x.bytes;
        if (!x.ok()) {
            StoreResult r = extract_failure(x, "wheel .deps/" + w + ": " + x.error);
            r.entry = ".deps/" + w + (x.entry.empty() ? "" : "!" + x.entry);
            return r;
        }
        budget.max_entries -= std::min(budget.max_entries, x.entries);
        budget.max_bytes -= std::min(budget.max_bytes, x.bytes);
        budget.budget_bytes -= std::min(budget.budget_bytes, x.bytes);
        if (::chmod(dest.c_str(), 0555) != 0) return io_failure("chmod", dest, errno);
    }
    for (const char* d : {".hearth/wheels", ".hearth"}) {
        if (::fchmodat(root.get(), d, 0555, 0) != 0)
            return io_failure("chmod", tree + "/" + d, errno);
    }
    return {};
}

StoreResult Store::ensure_tree(std::string_view hex_in, const ExtractLimits& limits,
                               unsigned threads) noexcept {
    try {
        if (!is_sha256_hex(hex_in)) return bad_digest(hex_in);
        if (!is_open()) return not_open();
        const std::string hex(hex_in);
        StoreResult r;
        r.path = tree_path(hex);
        // The touch doubles as the existence check: a tree evicted between
        // has_tree() and here is extracted again rather than reported.
        if (has_tree(hex) && touch_at(trees_fd_.get(), hex.c_str()) == 0) {
            r.hit = true;
            return r;
        }
        if (!has_blob(hex)) {
            return failed(StoreStatus::not_found, "blob sha256:" + hex + " is not in the store");
        }
        const std::string name = temp_name("tree", hex);
        const std::string work = dir_ + "/tmp/" + name;
        ExtractOptions opts;
        opts.read_only = true;
        ExtractResult x = extract_zip(blob_path(hex), work, limits, threads, opts);
        r.entries = x.entries;
        r.bytes = x.bytes;
        if (!x.ok()) {
            // extract_zip removed `work` already.
            StoreResult f = extract_failure(x, "extract sha256:" + hex + ": " + x.error);
            f.entry = x.entry;
            return f;
        }
        (void)touch_at(blobs_fd_.get(), hex.c_str()); // the blob was just used
        // From here on `work` is ours to delete on every failure path.
        const auto discard = [&](StoreResult f) {
            (void)remove_all(work);
            return f;
        };
        ExtractLimits budget = limits;
        budget.max_entries -= std::min(budget.max_entries, x.entries);
        budget.max_bytes -= std::min(budget.max_bytes, x.bytes);
        budget.budget_bytes -= std::min(budget.budget_bytes, x.bytes);
        StoreResult w = unpack_wheels(work, budget, threads, r);
        if (!w.ok()) {
            w.error = "extract sha256:" + hex + ": " + w.error;
            return discard(std::move(w));
        }
        if (options_.sync) {
            Fd fd = open_dir(tmp_fd_.get(), name.c_str());
            if (!fd || ::syncfs(fd.get()) != 0) return discard(io_failure("syncfs", work, errno));
        }
        int e = publish(tmp_fd_.get(), name, trees_fd_.get(), hex);
        if (e == EEXIST) {
            r.hit = true; // another thread won; its tree is equivalent
            (void)touch_at(trees_fd_.get(), hex.c_str());
            return discard(std::move(r));
        }
        if (e != 0) return discard(io_failure("publish", work, e));
        // The root stayed writable so rename(2) could move it (a directory
        // changing parent needs write access to itself for ".."); seal it now.
        // Failing here leaves a complete tree with a writable root: not worth
        // an error.
        (void)::fchmodat(trees_fd_.get(), hex.c_str(), 0555, 0);
        // The root's mtime is its last change during extraction, and rename
        // may or may not update it: make the publish count as a use.
        (void)touch_at(trees_fd_.get(), hex.c_str());
        return r;
    } catch (const std::exception& ex) {
        return failed(StoreStatus::io_error, std::string("ensure_tree: ") + ex.what());
    }
}

StoreResult Store::remove_tree(std::string_view hex) noexcept {
    return evict(ObjectKind::tree, hex);
}

StoreResult Store::remove_blob(std::string_view hex) noexcept {
    return evict(ObjectKind::blob, hex);
}

void Store::forget_size(ObjectKind kind, const std::string& hex) noexcept {
    std::lock_guard<std::mutex> lock(size_mu_);
    ++size_gen_;
    auto it = sizes_.find(std::pair<ObjectKind, std::string>(kind, hex));
    if (it != sizes_.end()) sizes_.erase(it);
}

StoreResult Store::evict(ObjectKind kind, std::string_view hex_in) noexcept {
    try {
        if (!is_sha256_hex(hex_in)) return bad_digest(hex_in);
        if (!is_open()) return not_open();
        const std::string hex(hex_in);
        const int dir = kind_fd(kind);
        const bool tree = kind == ObjectKind::tree;
        const std::string published = tree ? tree_path(hex) : blob_path(hex);
        std::optional<std::uint64_t> bytes;
        {
            std::lock_guard<std::mutex> lock(size_mu_);
            auto it = sizes_.find(std::pair<ObjectKind, std::string>(kind, hex));
            if (it != sizes_.end()) bytes = it->second;
        }
        forget_size(kind, hex);
        // rename(2) of a directory to another parent rewrites its "..", which
        // needs write access to the directory itself: open up the sealed root.
        if (tree && ::fchmodat(dir, hex.c_str(), 0755, 0) != 0) {
            if (errno == ENOENT) return {};
            return io_failure("chmod", published, errno);
        }
        // The unpublishing step: after this one rename the object is gone
        // from trees/ or blobs/ as a whole; what follows only frees space.
        const std::string name = temp_name(tree ? "rm-tree" : "rm-blob", hex);
        if (::renameat(dir, hex.c_str(), tmp_fd_.get(), name.c_str()) != 0) {
            const int e = errno;
            if (e == ENOENT) return {}; // evicted by another thread meanwhile
            if (tree) (void)::fchmodat(dir, hex.c_str(), 0555, 0); // still published: reseal
            return io_failure("move", published, e);
        }
        // A measurement that began between forget_size() and the rename may
        // have cached the size of what is now gone.
        forget_size(kind, hex);
        // Prefer the cached size: it is what list_cache() reported and the
        // caller accounted for.
        if (!bytes) bytes = measure_at(tmp_fd_.get(), name.c_str(), kind);
        if (Status removed = remove_all(dir_ + "/tmp/" + name); !removed) {
            const std::string& e = removed.error().message;
            return failed(StoreStatus::io_error, std::string("remove ") + object_kind_name(kind) +
                                                     " sha256:" + hex + ": " + e);
        }
        StoreResult r;
        r.bytes = bytes.value_or(0);
        return r;
    } catch (const std::exception& ex) {
        return failed(StoreStatus::io_error, std::string("evict: ") + ex.what());
    }
}

StoreResult Store::touch(ObjectKind kind, std::string_view hex) const noexcept {
    try {
        if (!is_sha256_hex(hex)) return bad_digest(hex);
        if (!is_open()) return not_open();
        const std::string h(hex);
        if (touch_at(kind_fd(kind), h.c_str()) == 0) return {};
        const int e = errno;
        if (e == ENOENT) {
            return failed(StoreStatus::not_found, std::string(object_kind_name(kind)) +
                                                      " sha256:" + h + " is not in the store");
        }
        return io_failure("touch", kind == ObjectKind::blob ? blob_path(h) : tree_path(h), e);
    } catch (const std::exception& ex) {
        return failed(StoreStatus::io_error, std::string("touch: ") + ex.what());
    }
}

std::uint64_t Store::object_bytes(ObjectKind kind, std::string_view hex) const noexcept {
    if (!is_sha256_hex(hex) || !is_open()) return 0;
    // Missing objects are 0 even if a stale size is cached (removed behind
    // the store's back); one stat is cheap next to a walk.
    if (!(kind == ObjectKind::blob ? has_blob(hex) : has_tree(hex))) return 0;
    return cached_bytes(kind, std::string(hex)).value_or(0);
}

std::optional<std::uint64_t> Store::cached_bytes(ObjectKind kind,
                                                 const std::string& hex) const noexcept {
    try {
        std::pair<ObjectKind, std::string> key(kind, hex);
        std::uint64_t gen = 0;
        {
            std::lock_guard<std::mutex> lock(size_mu_);
            auto it = sizes_.find(key);
            if (it != sizes_.end()) return it->second;
            gen = size_gen_;
        }
        // Measured outside the lock: a tree walk may take a while.
        std::optional<std::uint64_t> bytes = measure_at(kind_fd(kind), hex.c_str(), kind);
        if (!bytes) return std::nullopt;
        std::lock_guard<std::mutex> lock(size_mu_);
        // An eviction since `gen` may have cut the walk short: do not keep it.
        if (gen == size_gen_) sizes_.emplace(std::move(key), *bytes);
        return bytes;
    } catch (...) {
        return std::nullopt;
    }
}

std::vector<CacheEntry> Store::list_cache() const noexcept {
    std::vector<CacheEntry> out;
    if (!is_open()) return out;
    try {
        for (ObjectKind kind : {ObjectKind::blob, ObjectKind::tree}) {
            const int fd = kind_fd(kind);
            for (std::string& hex : list_digests(fd)) {
                struct stat st {};
                if (::fstatat(fd, hex.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
                std::optional<std::uint64_t> bytes = cached_bytes(kind, hex);
                if (!bytes) continue; // vanished meanwhile
                CacheEntry e;
                e.kind = kind;
                e.sha256 = std::move(hex);
                e.bytes = *bytes;
                e.last_used = mtime_of(st);
                out.push_back(std::move(e));
            }
        }
        std::sort(out.begin(), out.end(), [](const CacheEntry& a, const CacheEntry& b) {
            if (a.last_used != b.last_used) return a.last_used > b.last_used;
            if (a.kind != b.kind) return a.kind == ObjectKind::tree;
            return a.sha256 < b.sha256;
        });
    } catch (...) {
        out.clear();
    }
    return out;
}

DiskUsage Store::blob_usage(std::string_view hex) const noexcept {
    DiskUsage u;
    if (!is_sha256_hex(hex) || !is_open()) return u;
    char name[2 * sha256_size + 1];
    std::memcpy(name, hex.data(), hex.size());
    name[hex.size()] = '\0';
    struct stat st {};
    if (::fstatat(blobs_fd_.get(), name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
        return u;
    }
    u.allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
    u.apparent = static_cast<std::uint64_t>(st.st_size);
    u.entries = 1;
    u.ok = true;
    return u;
}

DiskUsage Store::tree_usage(std::string_view hex) const noexcept {
    DiskUsage u;
    if (!is_sha256_hex(hex) || !is_open()) return u;
    try {
        const std::string h(hex);
        Fd root = open_dir(trees_fd_.get(), h.c_str());
        struct stat st {};
        if (!root || ::fstat(root.get(), &st) != 0) return u;
        u.ok = true;
        u.allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
        u.apparent = static_cast<std::uint64_t>(st.st_size);
        u.entries = 1;
        usage_walk(root.get(), 0, u);
    } catch (...) {
        u.ok = false;
    }
    return u;
}

std::vector<std::string> Store::list_blobs() const noexcept {
    return list_digests(blobs_fd_.get());
}

std::vector<std::string> Store::list_trees() const noexcept {
    return list_digests(trees_fd_.get());
}

} // namespace hearth
