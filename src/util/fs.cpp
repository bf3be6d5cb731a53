#include "util/fs.hpp"

#include "util/fd.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hearth {

std::string errno_text(int err) {
    char buf[128];
    // GNU strerror_r returns the message pointer (maybe not buf).
    const char* msg = ::strerror_r(err, buf, sizeof buf);
    return msg && *msg ? std::string(msg) : "errno " + std::to_string(err);
}

Status make_dirs(const std::string& path, std::vector<std::string>* created) {
    std::size_t pos = 0;
    while (pos != std::string::npos) {
        pos = path.find('/', pos + 1);
        std::string part = path.substr(0, pos);
        if (part.empty()) continue;
        if (::mkdir(part.c_str(), 0755) == 0) {
            if (created) created->push_back(part);
        } else if (errno != EEXIST) {
            int err = errno;
            return os_error(err, "cannot create " + part + ": " + errno_text(err));
        }
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0) {
        int err = errno;
        return os_error(err, "cannot create " + path + ": " + errno_text(err));
    }
    if (!S_ISDIR(st.st_mode))
        return os_error(ENOTDIR, "cannot create " + path + ": " + errno_text(ENOTDIR));
    return {};
}

Result<std::string> read_file(const std::string& path, std::uint64_t limit) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        int err = errno;
        return os_error(err, "cannot open " + path + ": " + errno_text(err));
    }
    std::string out;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            return os_error(err, "cannot read " + path + ": " + errno_text(err));
        }
        if (n == 0) break;
        if (out.size() + static_cast<std::uint64_t>(n) > limit)
            return Error{Errc::too_large, 0,
                         path + ": larger than " + std::to_string(limit) + " bytes"};
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

int write_all(int fd, std::string_view data) noexcept {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {fd, POLLOUT, 0};
            if (::poll(&p, 1, -1) < 0 && errno != EINTR) return errno;
            continue;
        }
        return n < 0 ? errno : EIO;
    }
    return 0;
}

Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode,
                         bool skip_if_equal) {
    if (skip_if_equal) {
        auto existing = read_file(path, content.size());
        if (existing && *existing == content) return {};
    }
    // A unique temporary name: two threads writing the same path (the same
    // content-addressed document, say) must not share one file.
    std::string tmp = path + ".tmp-XXXXXX";
    Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
    if (!fd) {
        int err = errno;
        return os_error(err, "cannot write " + tmp + ": " + errno_text(err));
    }
    auto fail = [&](const char* what, const std::string& where) {
        int err = errno;
        ::unlink(tmp.c_str());
        return Status(
            os_error(err, std::string("cannot ") + what + " " + where + ": " + errno_text(err)));
    };
    // mkostemp creates 0600; set the asked mode exactly (not masked by umask).
    if (::fchmod(fd.get(), mode) < 0) return fail("chmod", tmp);
    if (int err = write_all(fd.get(), content)) {
        errno = err;
        return fail("write", tmp);
    }
    if (::fsync(fd.get()) < 0) return fail("sync", tmp);
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) < 0) return fail("rename", tmp + " to " + path);
    // The rename itself is durable only once the directory is synced.
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd || ::fsync(dir_fd.get()) < 0) {
        int err = errno;
        // Some filesystems cannot sync a directory; the file is in place.
        if (err != EINVAL && err != EROFS)
            return os_error(err, "cannot sync directory " + dir + ": " + errno_text(err));
    }
    return {};
}

namespace {

constexpr int remove_max_depth = 1024;

void note(std::string& err, const std::string& path, const char* what, int& first_errno) {
    if (err.empty()) {
        first_errno = errno;
        err = std::string(what) + " " + path + ": " + errno_text(errno);
    }
}

// Makes `fd` (a directory) writable and searchable by its owner so its
// entries can be unlinked; read-only store trees need this.
void open_up(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700) {
        (void)::fchmod(fd, (st.st_mode & 07777) | 0700);
    }
}

// Empties directory `fd` (whose path is `where`, for messages). Non-directories
// are unlinked while reading; subdirectories are collected and handled after
// the stream is closed, so each level holds one fd.
void remove_contents(int fd, const std::string& where, int depth, std::string& err,
                     int& first_errno) {
    if (depth > remove_max_depth) {
        if (err.empty()) err = "remove " + where + ": directory tree too deep";
        return;
    }
    // A fresh open file description: a dup would share (and move) fd's offset.
    int own = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (own < 0) return note(err, where, "open", first_errno);
    DIR* dir = ::fdopendir(own);
    if (dir == nullptr) {
        ::close(own);
        return note(err, where, "opendir", first_errno);
    }
    std::vector<std::string> subdirs;
    for (;;) {
        errno = 0;
        struct dirent* de = ::readdir(dir);
        if (de == nullptr) {
            if (errno != 0) note(err, where, "readdir", first_errno);
            break;
        }
        const char* n = de->d_name;
        if (std::strcmp(n, ".") == 0 || std::strcmp(n, "..") == 0) continue;
        bool is_dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st {};
            is_dir = ::fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        }
        if (is_dir) {
            subdirs.emplace_back(n);
        } else if (::unlinkat(fd, n, 0) != 0 && errno != ENOENT) {
            note(err, where + "/" + n, "unlink", first_errno);
        }
    }
    ::closedir(dir);
    for (const std::string& n : subdirs) {
        std::string path = where;
        path.append("/").append(n);
        Fd sub(::openat(fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) {
            if (errno == ENOENT) continue;
            note(err, path, "open", first_errno);
            continue;
        }
        open_up(sub.get());
        remove_contents(sub.get(), path, depth + 1, err, first_errno);
        sub.reset();
        if (::unlinkat(fd, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
            note(err, path, "rmdir", first_errno);
        }
    }
}

} // namespace

Status remove_all(const std::string& path) noexcept {
    try {
        struct stat st {};
        if (::fstatat(AT_FDCWD, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) return {};
            int err = errno;
            return os_error(err, "stat " + path + ": " + errno_text(err));
        }
        if (!S_ISDIR(st.st_mode)) {
            if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
                int err = errno;
                return os_error(err, "unlink " + path + ": " + errno_text(err));
            }
            return {};
        }
        std::string err;
        int first_errno = 0;
        {
            Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!fd) {
                int e = errno;
                return os_error(e, "open " + path + ": " + errno_text(e));
            }
            open_up(fd.get());
            remove_contents(fd.get(), path, 0, err, first_errno);
        }
        if (::rmdir(path.c_str()) != 0 && errno != ENOENT && err.empty()) {
            first_errno = errno;
            err = "rmdir " + path + ": " + errno_text(errno);
        }
        if (err.empty()) return {};
        return os_error(first_errno, std::move(err));
    } catch (...) {
        return Error{Errc::io, ENOMEM, "remove " + path + ": out of memory"};
    }
}

} // namespace hearth
