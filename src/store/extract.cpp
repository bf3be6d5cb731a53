#include "store/extract.hpp"

#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/text.hpp"

#include <algorithm>
#include <archive.h>
#include <archive_entry.h>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <exception>
#include <fcntl.h>
#include <linux/openat2.h>
#include <locale.h>
#include <memory>
#include <mutex>
#include <new>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace hearth {

namespace {

// ---------------------------------------------------------------------------
// Reading: libarchive callbacks over one shared fd with pread, so parallel
// readers need no shared file offset and all see the same inode.

// After a seek or skip libarchive usually wants one local header (30 bytes
// plus name and extra field), so the first read is small; sequential reads
// then grow to amortise the syscalls on big members.
constexpr std::size_t first_block = 16 << 10;
constexpr std::size_t max_block = 1 << 20;

struct Source {
    int fd = -1;
    std::int64_t size = 0;
    std::int64_t pos = 0;
    std::size_t next = first_block;
    std::unique_ptr<char[]> buf;
};

la_ssize_t source_read(struct archive* a, void* data, const void** out) {
    auto* s = static_cast<Source*>(data);
    *out = s->buf.get();
    if (s->pos >= s->size) return 0;
    std::size_t want = static_cast<std::size_t>(std::min<std::int64_t>(s->size - s->pos, s->next));
    ssize_t n;
    do {
        n = ::pread(s->fd, s->buf.get(), want, s->pos);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        archive_set_error(a, errno, "read archive: %s", std::strerror(errno));
        return -1;
    }
    s->pos += n;
    s->next = std::min(s->next * 2, max_block);
    return n;
}

la_int64_t source_seek(struct archive*, void* data, la_int64_t offset, int whence) {
    auto* s = static_cast<Source*>(data);
    std::int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? s->pos : s->size;
    if (offset < 0 && base < -offset) return ARCHIVE_FATAL;
    s->pos = base + offset;
    s->next = first_block;
    return s->pos;
}

la_int64_t source_skip(struct archive*, void* data, la_int64_t request) {
    auto* s = static_cast<Source*>(data);
    if (request <= 0 || s->pos >= s->size) return 0;
    std::int64_t n = std::min<std::int64_t>(request, s->size - s->pos);
    s->pos += n;
    s->next = first_block;
    return n;
}

// libarchive converts names to the calling thread's locale; under the usual
// "C" locale of a daemon a UTF-8 name such as "café.py" fails to convert
// and the entry loses its name. A per-thread UTF-8 LC_CTYPE (uselocale, not
// setlocale, so other threads are untouched) passes names through as bytes.
class Utf8Locale {
public:
    Utf8Locale() noexcept {
        for (const char* name : {"C.UTF-8", "C.utf8", "en_US.UTF-8"}) {
            loc_ = ::newlocale(LC_CTYPE_MASK, name, static_cast<locale_t>(nullptr));
            if (loc_ != static_cast<locale_t>(nullptr)) break;
        }
        if (loc_ != static_cast<locale_t>(nullptr)) old_ = ::uselocale(loc_);
    }
    ~Utf8Locale() {
        if (loc_ != static_cast<locale_t>(nullptr)) {
            ::uselocale(old_);
            ::freelocale(loc_);
        }
    }
    Utf8Locale(const Utf8Locale&) = delete;
    Utf8Locale& operator=(const Utf8Locale&) = delete;

private:
    locale_t loc_ = static_cast<locale_t>(nullptr);
    locale_t old_ = static_cast<locale_t>(nullptr);
};

// One libarchive handle. Not movable: libarchive keeps a pointer to `src`.
class Reader {
public:
    Reader() = default;
    ~Reader() {
        if (a_ != nullptr) archive_read_free(a_);
    }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    // "" on success, else libarchive's complaint.
    std::string open(int fd, std::int64_t size) {
        src_.fd = fd;
        src_.size = size;
        src_.buf.reset(new (std::nothrow) char[max_block]);
        a_ = archive_read_new();
        if (!src_.buf) return "out of memory";
        // Also what a libarchive that could not be loaded gives (lazy_lib
        // logs why).
        if (a_ == nullptr) return "cannot create a libarchive reader (see hearth's log)";
        if (archive_read_support_format_zip_seekable(a_) != ARCHIVE_OK ||
            archive_read_set_read_callback(a_, source_read) != ARCHIVE_OK ||
            archive_read_set_seek_callback(a_, source_seek) != ARCHIVE_OK ||
            archive_read_set_skip_callback(a_, source_skip) != ARCHIVE_OK ||
            archive_read_set_callback_data(a_, &src_) != ARCHIVE_OK ||
            archive_read_open1(a_) != ARCHIVE_OK) {
            return error();
        }
        return {};
    }
    struct archive* get() const {
        return a_;
    }
    std::string error() const {
        const char* s = a_ != nullptr ? archive_error_string(a_) : nullptr;
        return s != nullptr ? s : "unknown libarchive error";
    }
    std::int64_t position() const { return archive_filter_bytes(a_, 0); }

private:
    struct archive* a_ = nullptr;
    Source src_;
};

// ---------------------------------------------------------------------------
// Names

struct NameCheck {
    ExtractError code = ExtractError::none;
    std::string reason;
    std::vector<std::string_view> parts; // views into the checked name
};

NameCheck split_name(std::string_view name, std::uint32_t max_depth) {
    NameCheck r;
    if (name.empty()) {
        r.code = ExtractError::unsafe_entry;
        r.reason = "empty name";
        return r;
    }
    if (name.front() == '/') {
        r.code = ExtractError::unsafe_entry;
        r.reason = "absolute path";
        return r;
    }
    std::size_t total = 0;
    std::size_t i = 0;
    while (i <= name.size()) {
        std::size_t j = name.find('/', i);
        if (j == std::string_view::npos) j = name.size();
        std::string_view part = name.substr(i, j - i);
        i = j + 1;
        if (part.empty() || part == ".") continue;
        if (part == "..") {
            r.code = ExtractError::unsafe_entry;
            r.reason = "'..' path component";
            return r;
        }
        if (part.size() > NAME_MAX) {
            r.code = ExtractError::unsafe_entry;
            r.reason = "path component longer than " + std::to_string(NAME_MAX) + " bytes";
            return r;
        }
        total += part.size() + 1;
        r.parts.push_back(part);
    }
    if (r.parts.size() > max_depth) {
        r.code = ExtractError::limit;
        r.reason = "more than " + std::to_string(max_depth) + " path components";
        return r;
    }
    if (total >= PATH_MAX) {
        r.code = ExtractError::unsafe_entry;
        r.reason = "path longer than " + std::to_string(PATH_MAX - 1) + " bytes";
    }
    return r;
}

// ---------------------------------------------------------------------------
// The plan: every entry, checked, before anything is written.

enum class Kind : std::uint8_t { dir, file, symlink, hardlink };

const char* kind_name(Kind k) {
    switch (k) {
    case Kind::dir:
        return "directory";
    case Kind::file:
        return "regular file";
    case Kind::symlink:
        return "symlink";
    case Kind::hardlink:
        return "hard link";
    }
    return "entry";
}

constexpr std::uint32_t no_entry = UINT32_MAX;

struct Entry {
    std::string raw;         // name as stored (for messages and cross-reader checks)
    std::string path;        // normalised, relative to the destination
    std::string link;        // symlink: target as stored; hard link: normalised target
    std::uint64_t usize = 0; // header size: used for planning only, never trusted
    // Archive bytes from this entry's data to the next entry's data (or the
    // end of the file): an upper bound on its compressed size that no header
    // can inflate. Entries sharing data (overlap bombs) get a small span.
    std::uint64_t span = 0;
    std::int64_t start = 0; // file offset of the data, after the local header
    std::int64_t mtime = 0;
    std::uint32_t dir = 0;  // parent, index into Plan::dirs (0: destination)
    std::uint32_t name = 0; // offset of the last component in `path`
    Kind kind = Kind::file;
    bool exec = false;
    bool write = false; // a regular file that is the last of its duplicates
};

struct Node {
    Kind kind;
    std::uint32_t index; // dir: into Plan::dirs; otherwise into Plan::entries
};

// The first failure of an extraction and the entry it concerns ("" when none).
struct EntryError {
    ExtractError code = ExtractError::none;
    std::string entry;
    std::string message;
    int sys_errno = 0; // io: the failed call's errno
};

EntryError failure(ExtractError code, const std::string& entry, const std::string& why) {
    return EntryError{code, entry, "entry '" + entry + "': " + why};
}

// A destination-side system call failed with `err` ("entry '<name>': <what>:
// <strerror>"). `what` is a literal so that nothing allocates (and perhaps
// sets errno) while the caller's errno is read for `err`.
EntryError io_failure(const std::string& entry, const char* what, int err) {
    return EntryError{ExtractError::io, entry,
                      "entry '" + entry + "': " + what + ": " + std::strerror(err), err};
}

EntryError open_dir_failure(const std::string& entry, const std::string& dir, int err) {
    return EntryError{ExtractError::io, entry,
                      "entry '" + entry + "': open directory '" + dir + "': " + std::strerror(err),
                      err};
}

struct Plan {
    std::vector<Entry> entries;
    std::vector<std::string> dirs{std::string()}; // parents before children
    std::vector<std::uint32_t> dir_entry{no_entry};
    std::unordered_map<std::string, Node> nodes;
    std::uint64_t declared = 0;
    std::uint64_t files = 0;

    // Adds `e` (path already normalised into `parts`). Empty EntryError if fine.
    EntryError add(Entry e, const std::vector<std::string_view>& parts) {
        const auto idx = static_cast<std::uint32_t>(entries.size());
        std::uint32_t parent = 0;
        std::string prefix; // parts[0..k) joined with '/', grown one part per round
        for (std::size_t k = 1; k < parts.size(); ++k) {
            if (k > 1) prefix += '/';
            prefix.append(parts[k - 1]);
            auto it = nodes.find(prefix);
            if (it == nodes.end()) {
                const auto d = static_cast<std::uint32_t>(dirs.size());
                nodes.emplace(prefix, Node{Kind::dir, d});
                dirs.push_back(prefix);
                dir_entry.push_back(no_entry);
                parent = d;
            } else if (it->second.kind == Kind::dir) {
                parent = it->second.index;
            } else {
                return failure(ExtractError::unsafe_entry, e.raw,
                               "parent '" + prefix + "' is a " + kind_name(it->second.kind));
            }
        }
        e.dir = parent;
        e.name = static_cast<std::uint32_t>(e.path.size() - parts.back().size());

        auto it = nodes.find(e.path);
        if (it != nodes.end()) {
            Kind old = it->second.kind;
            if (old == Kind::dir && e.kind == Kind::dir) {
                if (dir_entry[it->second.index] == no_entry) dir_entry[it->second.index] = idx;
                entries.push_back(std::move(e));
                return {};
            }
            if (old == Kind::file && e.kind == Kind::file) {
                // Last one wins, as with unzip; only it is written.
                entries[it->second.index].write = false;
                it->second.index = idx;
                e.write = true;
                entries.push_back(std::move(e));
                return {};
            }
            return failure(ExtractError::unsafe_entry, e.raw,
                           std::string("duplicate entry would replace a ") + kind_name(old) +
                               " with a " + kind_name(e.kind));
        }
        if (e.kind == Kind::dir) {
            const auto d = static_cast<std::uint32_t>(dirs.size());
            nodes.emplace(e.path, Node{Kind::dir, d});
            dirs.push_back(e.path);
            dir_entry.push_back(idx);
        } else {
            if (e.kind == Kind::hardlink) {
                auto t = nodes.find(e.link);
                if (t == nodes.end() || t->second.kind != Kind::file) {
                    return failure(ExtractError::unsafe_entry, e.raw,
                                   "hard link target '" + e.link +
                                       "' is not an earlier regular file of the archive");
                }
            }
            e.write = e.kind == Kind::file;
            if (e.write) ++files;
            nodes.emplace(e.path, Node{e.kind, idx});
        }
        entries.push_back(std::move(e));
        return {};
    }

    // Resolves symlink `e` the way the kernel would, inside the tree: relative
    // to the link's directory, through other links of the archive, where `..`
    // above the destination is an escape. Components that do not exist are
    // treated as directories, which can only refuse more.
    EntryError check_symlink(const Entry& e) const {
        if (e.link.empty())
            return failure(ExtractError::unsafe_entry, e.raw, "empty symlink target");
        if (e.link.size() >= PATH_MAX) {
            return failure(ExtractError::unsafe_entry, e.raw, "symlink target too long");
        }
        if (e.link.front() == '/') {
            return failure(ExtractError::unsafe_entry, e.raw,
                           "symlink target '" + e.link + "' is absolute");
        }
        const auto escape = [&] {
            return failure(ExtractError::unsafe_entry, e.raw,
                           "symlink target '" + e.link + "' leaves the destination");
        };
        std::string cur = e.path.substr(0, e.name == 0 ? 0 : e.name - 1);
        std::vector<std::size_t> lens; // cur's length before each pushed component
        {
            std::size_t i = 0;
            while (i < cur.size()) {
                std::size_t j = cur.find('/', i);
                if (j == std::string::npos) j = cur.size();
                lens.push_back(i == 0 ? 0 : i - 1);
                i = j + 1;
            }
        }
        std::vector<std::string_view> work; // components still to walk, reversed
        const auto push_target = [&work](std::string_view t) {
            std::vector<std::string_view> parts;
            std::size_t i = 0;
            while (i <= t.size()) {
                std::size_t j = t.find('/', i);
                if (j == std::string_view::npos) j = t.size();
                parts.push_back(t.substr(i, j - i));
                i = j + 1;
            }
            work.insert(work.end(), parts.rbegin(), parts.rend());
        };
        push_target(e.link);
        int hops = 0;
        std::size_t steps = 0;
        while (!work.empty()) {
            if (++steps > 65536) {
                return failure(ExtractError::unsafe_entry, e.raw, "symlink resolution too deep");
            }
            std::string_view c = work.back();
            work.pop_back();
            if (c.empty() || c == ".") continue;
            if (c == "..") {
                if (lens.empty()) return escape();
                cur.resize(lens.back());
                lens.pop_back();
                continue;
            }
            lens.push_back(cur.size());
            if (!cur.empty()) cur += '/';
            cur.append(c);
            auto it = nodes.find(cur);
            if (it == nodes.end() || it->second.kind != Kind::symlink) continue;
            if (++hops > 40) {
                return failure(ExtractError::unsafe_entry, e.raw,
                               "too many levels of symlinks resolving '" + e.link + "'");
            }
            const Entry& via = entries[it->second.index];
            cur.resize(lens.back());
            lens.pop_back();
            if (via.link.empty() || via.link.front() == '/') return escape();
            push_target(via.link);
        }
        return {};
    }
};

// ---------------------------------------------------------------------------
// Writing

// Modes the caller's umask would spoil: read it once per extraction from
// /proc (umask(2) cannot be read without being changed, which races).
mode_t current_umask() {
    Fd fd(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    if (!fd) return 0777;
    char buf[4096];
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n <= 0) return 0777;
    buf[n] = '\0';
    const char* p = std::strstr(buf, "\nUmask:");
    if (p == nullptr) return 0777;
    return static_cast<mode_t>(std::strtoul(p + 7, nullptr, 8)) & 0777;
}

int openat2_beneath(int dirfd, const char* path, int flags) {
    struct open_how how {};
    how.flags = static_cast<std::uint64_t>(flags);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long r;
    int tries = 0;
    do {
        r = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    } while (r < 0 && errno == EAGAIN && ++tries < 64); // EAGAIN: a concurrent rename
    return static_cast<int>(r);
}

struct Run {
    const ExtractLimits& limits;
    const ExtractOptions& options;
    int archive_fd;
    std::int64_t archive_size;
    int root = -1;
    Plan plan;
    mode_t umask_bits = 0;
    std::atomic<bool> no_openat2{false};
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<bool> failed{false};
    std::mutex mu;
    EntryError first;

    Run(const ExtractLimits& l, const ExtractOptions& o, int fd, std::int64_t size)
        : limits(l), options(o), archive_fd(fd), archive_size(size) {}

    void fail(EntryError f) {
        std::lock_guard<std::mutex> lock(mu);
        if (!failed.load(std::memory_order_relaxed)) {
            first = std::move(f);
            failed.store(true, std::memory_order_release);
        }
    }
    void fail(ExtractError code, const std::string& entry, const std::string& why) {
        fail(failure(code, entry, why));
    }

    // Opens directory `d` of the plan beneath the destination, never through
    // a symlink. -1 with errno on failure.
    int open_dir(std::uint32_t d) {
        const char* path = plan.dirs[d].c_str();
        constexpr int flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        if (!no_openat2.load(std::memory_order_relaxed)) {
            int fd = openat2_beneath(root, path, flags);
            if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) return fd;
            // Old kernel, or a seccomp filter that predates openat2.
            no_openat2.store(true, std::memory_order_relaxed);
        }
        // Component by component with O_NOFOLLOW: same guarantee, more calls.
        Fd cur(::fcntl(root, F_DUPFD_CLOEXEC, 0));
        std::string_view rest(plan.dirs[d]);
        while (cur && !rest.empty()) {
            std::size_t j = rest.find('/');
            std::string part(rest.substr(0, j));
            rest = j == std::string_view::npos ? std::string_view() : rest.substr(j + 1);
            cur.reset(::openat(cur.get(), part.c_str(), flags));
        }
        return cur.release();
    }
};

mode_t file_mode(const Run& run, bool exec) {
    if (run.options.read_only) return exec ? 0555 : 0444;
    return exec ? 0755 : 0644;
}

// The byte count past which extraction stops: the smaller of the safety
// limit and the caller's budget.
std::uint64_t byte_cap(const ExtractLimits& limits) {
    return std::min(limits.max_bytes, limits.budget_bytes);
}

// The failure for data past byte_cap(): no_space when the budget is the cap
// (the archive does not fit), limit when the safety limit is. `what` leads
// the message ("extracted data exceeds").
EntryError over_bytes(const ExtractLimits& limits, const std::string& entry, const char* what) {
    if (limits.budget_bytes <= limits.max_bytes)
        return failure(ExtractError::no_space, entry,
                       std::string(what) + " the space budget of " +
                           std::to_string(limits.budget_bytes) + " bytes");
    return failure(ExtractError::limit, entry,
                   std::string(what) + " " + std::to_string(limits.max_bytes) + " bytes");
}

std::string ratio_message(double ratio, std::uint64_t out, std::uint64_t in) {
    char buf[160];
    (void)std::snprintf(buf, sizeof buf, "compression ratio exceeds %g (%llu bytes from %llu)",
                        ratio, static_cast<unsigned long long>(out),
                        static_cast<unsigned long long>(in));
    return buf;
}

// Writes the current entry's data into a new file. Returns false after
// recording the failure in `run`.
bool write_file(Run& run, Reader& reader, const Entry& e, int dirfd) {
    const char* name = e.path.c_str() + e.name;
    const mode_t mode = file_mode(run, e.exec);
    Fd fd(::openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd) {
        run.fail(io_failure(e.raw, "create", errno));
        return false;
    }
    struct archive* a = reader.get();
    const std::int64_t start = reader.position();
    const double ratio = run.limits.max_ratio;
    std::uint64_t written = 0;
    for (;;) {
        if (run.failed.load(std::memory_order_relaxed)) return false;
        const void* buf = nullptr;
        std::size_t size = 0;
        la_int64_t offset = 0;
        int rc = archive_read_data_block(a, &buf, &size, &offset);
        if (rc == ARCHIVE_EOF) break;
        if (rc != ARCHIVE_OK) {
            // ARCHIVE_WARN here is a bad CRC or a size mismatch: fatal for us.
            run.fail(ExtractError::corrupt, e.raw, reader.error());
            return false;
        }
        if (offset < 0 || static_cast<std::uint64_t>(offset) != written) {
            run.fail(ExtractError::corrupt, e.raw, "unexpected data offset");
            return false;
        }
        written += size;
        std::uint64_t total = run.bytes.fetch_add(size, std::memory_order_relaxed) + size;
        if (total > byte_cap(run.limits)) {
            run.fail(over_bytes(run.limits, e.raw, "extracted data exceeds"));
            return false;
        }
        if (written > run.limits.ratio_min_size &&
            static_cast<double>(written) > ratio * static_cast<double>(e.span)) {
            run.fail(ExtractError::limit, e.raw, ratio_message(ratio, written, e.span));
            return false;
        }
        if (int err = write_all(fd.get(), std::string_view(static_cast<const char*>(buf), size))) {
            run.fail(io_failure(e.raw, "write", err));
            return false;
        }
    }
    // The exact check, on what libarchive really consumed for this entry.
    const auto consumed =
        static_cast<std::uint64_t>(std::max<std::int64_t>(reader.position() - start, 0));
    const std::uint64_t compressed = std::min(consumed, e.span);
    if (written > run.limits.ratio_min_size &&
        static_cast<double>(written) > ratio * static_cast<double>(compressed)) {
        run.fail(ExtractError::limit, e.raw, ratio_message(ratio, written, compressed));
        return false;
    }
    if ((mode & run.umask_bits) != 0 && ::fchmod(fd.get(), mode) != 0) {
        run.fail(io_failure(e.raw, "chmod", errno));
        return false;
    }
    if (run.options.preserve_mtime) {
        struct timespec ts[2];
        ts[0].tv_sec = 0;
        ts[0].tv_nsec = UTIME_OMIT;
        ts[1].tv_sec = static_cast<time_t>(e.mtime);
        ts[1].tv_nsec = 0;
        (void)::futimens(fd.get(), ts); // cosmetic; never worth failing over
    }
    if (::close(fd.release()) != 0) {
        run.fail(io_failure(e.raw, "close", errno));
        return false;
    }
    return true;
}

// One reader: walks headers from the start up to the last entry in `mine`
// (sorted indices of files to write) and writes those.
void run_reader(Run& run, const std::vector<std::uint32_t>& mine) noexcept {
    if (mine.empty()) return;
    try {
        Utf8Locale locale;
        Reader reader;
        if (std::string err = reader.open(run.archive_fd, run.archive_size); !err.empty()) {
            run.fail(EntryError{ExtractError::corrupt, "", "open archive: " + err});
            return;
        }
        // Parent directories, direct-mapped: archives mostly list a directory's
        // files together, but interleaved shares and round-robin layouts jump.
        constexpr std::size_t slots = 64;
        std::uint32_t cached[slots];
        std::fill(std::begin(cached), std::end(cached), no_entry);
        Fd dirfds[slots];
        std::size_t next = 0;
        const std::uint32_t last = mine.back();
        for (std::uint32_t i = 0; i <= last; ++i) {
            if (run.failed.load(std::memory_order_relaxed)) return;
            struct archive_entry* ae = nullptr;
            int rc = archive_read_next_header(reader.get(), &ae);
            const Entry& e = run.plan.entries[i];
            if (rc != ARCHIVE_OK) {
                run.fail(ExtractError::corrupt, e.raw,
                         rc == ARCHIVE_EOF ? "archive ended early" : reader.error());
                return;
            }
            const char* name = archive_entry_pathname(ae);
            if (name == nullptr || e.raw != name) {
                // Same bytes, same order: anything else means the file changed.
                run.fail(ExtractError::corrupt, e.raw, "archive changed during extraction");
                return;
            }
            if (i != mine[next]) continue;
            ++next;
            int parent = run.root;
            if (e.dir != 0) {
                const std::size_t slot = e.dir % slots;
                if (cached[slot] != e.dir) {
                    dirfds[slot].reset(run.open_dir(e.dir));
                    cached[slot] = dirfds[slot] ? e.dir : no_entry;
                    if (!dirfds[slot]) {
                        int err = errno;
                        run.fail(open_dir_failure(e.raw, run.plan.dirs[e.dir], err));
                        return;
                    }
                }
                parent = dirfds[slot].get();
            }
            if (!write_file(run, reader, e, parent)) return;
        }
    } catch (const std::exception& ex) {
        run.fail(EntryError{ExtractError::io, "", std::string("extraction: ") + ex.what()});
    }
}

// Walks every header once (skipping data) and checks the archive as a whole.
EntryError build_plan(Run& run, std::uint64_t& seen) {
    Reader reader;
    if (std::string err = reader.open(run.archive_fd, run.archive_size); !err.empty()) {
        return EntryError{ExtractError::corrupt, "", "not a readable zip archive: " + err};
    }
    const ExtractLimits& lim = run.limits;
    Plan& plan = run.plan;
    for (;;) {
        struct archive_entry* ae = nullptr;
        int rc = archive_read_next_header(reader.get(), &ae);
        if (rc == ARCHIVE_EOF) break;
        const char* rawp = ae != nullptr ? archive_entry_pathname(ae) : nullptr;
        std::string raw = rawp != nullptr ? rawp : "";
        if (rc != ARCHIVE_OK) {
            // ARCHIVE_WARN included: a name that cannot be converted or local
            // and central headers that disagree are not things to guess about.
            const std::string what = "entry #" + std::to_string(seen + 1);
            return EntryError{ExtractError::corrupt, raw,
                              (raw.empty() ? what : "entry '" + raw + "'") + ": " + reader.error()};
        }
        ++seen;
        if (seen > lim.max_entries) {
            return failure(ExtractError::limit, raw,
                           "archive has more than " + std::to_string(lim.max_entries) + " entries");
        }
        if (archive_entry_is_encrypted(ae)) {
            return failure(ExtractError::corrupt, raw, "encrypted entries are not supported");
        }
        Entry e;
        e.raw = raw;
        const char* hard = archive_entry_hardlink(ae);
        switch (archive_entry_filetype(ae)) {
        case AE_IFREG:
            e.kind = hard != nullptr ? Kind::hardlink : Kind::file;
            break;
        case AE_IFDIR:
            e.kind = Kind::dir;
            break;
        case AE_IFLNK:
            e.kind = Kind::symlink;
            break;
        case AE_IFCHR:
        case AE_IFBLK:
            return failure(ExtractError::unsafe_entry, raw, "device node");
        case AE_IFIFO:
            return failure(ExtractError::unsafe_entry, raw, "FIFO");
        case AE_IFSOCK:
            return failure(ExtractError::unsafe_entry, raw, "socket");
        default:
            if (hard == nullptr)
                return failure(ExtractError::unsafe_entry, raw, "unknown file type");
            e.kind = Kind::hardlink;
        }
        NameCheck nc = split_name(raw, lim.max_depth);
        if (nc.code != ExtractError::none) return failure(nc.code, raw, nc.reason);
        if (nc.parts.empty()) {
            // "./" and the like name the destination itself: harmless for a
            // directory, meaningless for anything else.
            if (e.kind == Kind::dir) {
                e.start = reader.position();
                plan.entries.push_back(std::move(e));
                continue;
            }
            return failure(ExtractError::unsafe_entry, raw, "empty name");
        }
        e.path = join(nc.parts, "/");
        e.exec = (archive_entry_perm(ae) & 0111) != 0;
        e.mtime = archive_entry_mtime(ae);
        e.usize = archive_entry_size_is_set(ae) && archive_entry_size(ae) > 0
                      ? static_cast<std::uint64_t>(archive_entry_size(ae))
                      : 0;
        if (e.kind == Kind::symlink) {
            const char* t = archive_entry_symlink(ae);
            e.link = t != nullptr ? t : "";
        } else if (e.kind == Kind::hardlink) {
            NameCheck tc = split_name(hard, lim.max_depth);
            if (tc.code != ExtractError::none || tc.parts.empty()) {
                return failure(
                    ExtractError::unsafe_entry, raw,
                    std::string("hard link target '") + hard +
                        "': " + (tc.parts.empty() && tc.reason.empty() ? "empty name" : tc.reason));
            }
            e.link = join(tc.parts, "/");
        }
        // The seekable reader skips nothing here: the next header call seeks.
        e.start = reader.position();
        if (e.kind == Kind::file) {
            // An early refusal on what the headers admit to; the real check
            // happens on the bytes produced.
            plan.declared += e.usize;
            if (plan.declared > byte_cap(lim))
                return over_bytes(lim, raw, "archive declares more than");
        }
        if (EntryError f = plan.add(std::move(e), nc.parts); f.code != ExtractError::none) return f;
    }
    for (std::size_t i = 0; i < plan.entries.size(); ++i) {
        Entry& e = plan.entries[i];
        const std::int64_t end =
            i + 1 < plan.entries.size() ? plan.entries[i + 1].start : run.archive_size;
        e.span = static_cast<std::uint64_t>(std::max<std::int64_t>(end - e.start, 0));
        if (e.kind == Kind::file && e.usize > lim.ratio_min_size &&
            static_cast<double>(e.usize) > lim.max_ratio * static_cast<double>(e.span)) {
            return failure(ExtractError::limit, e.raw,
                           ratio_message(lim.max_ratio, e.usize, e.span));
        }
    }
    for (const Entry& e : plan.entries) {
        if (e.kind != Kind::symlink) continue;
        if (EntryError f = plan.check_symlink(e); f.code != ExtractError::none) return f;
    }
    return {};
}

// Splits the files among `n` readers. Sizes come from headers: a lie only
// unbalances the work.
std::vector<std::vector<std::uint32_t>> split_work(const Plan& plan, unsigned n,
                                                   ExtractOptions::Split how) {
    std::vector<std::vector<std::uint32_t>> shares(n);
    std::vector<std::uint32_t> files;
    files.reserve(plan.files);
    for (std::uint32_t i = 0; i < plan.entries.size(); ++i) {
        if (plan.entries[i].write) files.push_back(i);
    }
    if (how == ExtractOptions::Split::interleaved || n == 1) {
        for (std::size_t j = 0; j < files.size(); ++j)
            shares[j % n].push_back(files[j]);
        return shares;
    }
    // A file costs its bytes plus a fixed amount for create/close/metadata.
    constexpr std::uint64_t per_file = 16 << 10;
    auto cost = [&](std::uint32_t i) {
        return std::min<std::uint64_t>(plan.entries[i].usize, 1ULL << 32) + per_file;
    };
    std::uint64_t total = 0;
    for (std::uint32_t i : files)
        total += cost(i);
    std::uint64_t acc = 0;
    unsigned k = 0;
    for (std::uint32_t i : files) {
        // Reader k's share ends once the running total passes (k+1)/n.
        while (k + 1 < n && acc >= total / n * (k + 1))
            ++k;
        shares[k].push_back(i);
        acc += cost(i);
    }
    return shares;
}

unsigned choose_readers(const Plan& plan, unsigned threads) {
    if (threads <= 1 || plan.files < 2) return 1;
    // Each extra reader walks headers again and costs a thread start; below
    // a few MiB or a few hundred files that does not pay.
    std::uint64_t bytes = 0;
    for (const Entry& e : plan.entries) {
        if (e.write) bytes += e.usize;
    }
    std::uint64_t by_size = 1 + bytes / (4u << 20);
    std::uint64_t by_count = 1 + plan.files / 256;
    std::uint64_t n = std::min<std::uint64_t>({threads, std::max(by_size, by_count), 64});
    return static_cast<unsigned>(n);
}

EntryError make_dirs(Run& run) {
    const mode_t mode = 0755;
    for (std::size_t d = 1; d < run.plan.dirs.size(); ++d) {
        const std::string& path = run.plan.dirs[d];
        const std::uint32_t ei = run.plan.dir_entry[d];
        const std::string& who = ei != no_entry ? run.plan.entries[ei].raw : path;
        // Parents were created just before, and no link exists yet, so this
        // resolves through real directories only.
        if (::mkdirat(run.root, path.c_str(), mode) != 0) {
            return io_failure(who, "mkdir", errno);
        }
        if ((mode & run.umask_bits) != 0 && ::fchmodat(run.root, path.c_str(), mode, 0) != 0) {
            return io_failure(who, "chmod", errno);
        }
    }
    return {};
}

EntryError make_links(Run& run) {
    // Hard links first: their targets resolve while the tree has no symlinks.
    for (int pass = 0; pass < 2; ++pass) {
        const Kind want = pass == 0 ? Kind::hardlink : Kind::symlink;
        for (const Entry& e : run.plan.entries) {
            if (e.kind != want) continue;
            Fd dirfd;
            int parent = run.root;
            if (e.dir != 0) {
                dirfd.reset(run.open_dir(e.dir));
                if (!dirfd) {
                    int err = errno;
                    return open_dir_failure(e.raw, run.plan.dirs[e.dir], err);
                }
                parent = dirfd.get();
            }
            const char* name = e.path.c_str() + e.name;
            int rc = want == Kind::hardlink ? ::linkat(run.root, e.link.c_str(), parent, name, 0)
                                            : ::symlinkat(e.link.c_str(), parent, name);
            if (rc != 0)
                return io_failure(e.raw, want == Kind::hardlink ? "link" : "symlink", errno);
        }
    }
    return {};
}

EntryError seal_dirs(Run& run) {
    for (std::size_t d = 1; d < run.plan.dirs.size(); ++d) {
        if (::fchmodat(run.root, run.plan.dirs[d].c_str(), 0555, 0) != 0) {
            return io_failure(run.plan.dirs[d], "chmod", errno);
        }
    }
    return {};
}

ExtractResult extract_impl(const std::string& archive, const std::string& dest,
                           const ExtractLimits& limits, unsigned threads,
                           const ExtractOptions& options, bool& created) {
    ExtractResult res;
    const auto fail = [&res](EntryError f) {
        // A full disk or quota is no_space wherever on the destination side
        // it struck, so callers never look at the errno text.
        if (f.code == ExtractError::io && (f.sys_errno == ENOSPC || f.sys_errno == EDQUOT))
            f.code = ExtractError::no_space;
        res.code = f.code;
        res.entry = std::move(f.entry);
        res.error = std::move(f.message);
        res.sys_errno = f.sys_errno;
        return res;
    };

    Fd afd(::open(archive.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!afd) {
        // The archive is an input: a missing file is the caller's bad input.
        int err = errno;
        return fail(
            EntryError{ExtractError::io, "", "open " + archive + ": " + std::strerror(err), err});
    }
    struct stat st {};
    if (::fstat(afd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        return fail(EntryError{ExtractError::io, "", archive + ": not a regular file"});
    }

    if (::mkdir(dest.c_str(), 0755) != 0) {
        int err = errno;
        return fail(
            EntryError{ExtractError::io, "", "create " + dest + ": " + std::strerror(err), err});
    }
    created = true;
    Fd root(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root) {
        int err = errno;
        return fail(
            EntryError{ExtractError::io, "", "open " + dest + ": " + std::strerror(err), err});
    }

    Utf8Locale locale;
    Run run(limits, options, afd.get(), static_cast<std::int64_t>(st.st_size));
    run.root = root.get();
    run.umask_bits = current_umask();

    EntryError f = build_plan(run, res.entries);
    if (f.code != ExtractError::none) return fail(std::move(f));
    if (EntryError d = make_dirs(run); d.code != ExtractError::none) return fail(std::move(d));

    const unsigned n = choose_readers(run.plan, threads);
    auto shares = split_work(run.plan, n, options.split);
    std::vector<std::thread> workers;
    std::vector<std::size_t> unstarted;
    for (unsigned k = 1; k < n; ++k) {
        try {
            workers.emplace_back(run_reader, std::ref(run), std::cref(shares[k]));
        } catch (const std::system_error&) {
            unstarted.push_back(k); // out of threads: do that share here
        }
    }
    run_reader(run, shares[0]);
    for (std::size_t k : unstarted)
        run_reader(run, shares[k]);
    for (std::thread& t : workers)
        t.join();
    res.bytes = run.bytes.load();
    if (run.failed.load()) return fail(std::move(run.first));

    if (EntryError l = make_links(run); l.code != ExtractError::none) return fail(std::move(l));
    if (options.read_only) {
        if (EntryError s = seal_dirs(run); s.code != ExtractError::none) return fail(std::move(s));
    }
    return res;
}

} // namespace

std::string check_entry_name(std::string_view name, std::uint32_t max_depth) {
    try {
        NameCheck nc = split_name(name, max_depth);
        if (nc.code != ExtractError::none) return nc.reason;
        if (nc.parts.empty()) return "empty name";
        return {};
    } catch (...) {
        return "out of memory";
    }
}

ExtractResult extract_zip(const std::string& archive, const std::string& dest,
                          const ExtractLimits& limits, unsigned threads,
                          const ExtractOptions& options) noexcept {
    bool created = false;
    ExtractResult res;
    try {
        res = extract_impl(archive, dest, limits, threads, options, created);
    } catch (const std::exception& e) {
        res.code = ExtractError::io;
        res.error = std::string("extract: ") + e.what();
    }
    if (!res.ok() && created) {
        // Never leave a partial tree behind. The destination is ours: we made it.
        if (Status removed = remove_all(dest); !removed) {
            res.error.append(" (cleanup: ").append(removed.error().message).append(")");
        }
    }
    return res;
}

} // namespace hearth
