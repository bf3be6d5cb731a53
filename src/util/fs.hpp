#pragma once
// Filesystem helpers every concern shares. All block on the filesystem, may
// be called from any thread, and never throw except std::bad_alloc (marked
// noexcept where even that is caught). Errors carry the errno and a message
// naming the path (util/error.hpp).

#include "util/error.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace hearth {

// strerror_r's text for `err` ("No such file or directory"); never empty.
std::string errno_text(int err);

// mkdir -p with mode 0755; directories that exist already are fine. Each
// directory this call created is appended to `created` when given (so a
// caller can undo exactly its own work). Fails with ENOTDIR when `path`
// exists and is not a directory.
Status make_dirs(const std::string& path, std::vector<std::string>* created = nullptr);

// The whole content of `path`, read with read(2) (so cgroupfs and procfs
// files, whose size is 0, read correctly). Fails with too_large past
// `limit` bytes.
Result<std::string> read_file(const std::string& path, std::uint64_t limit = UINT64_MAX);

// Writes all of `data` to `fd`, retrying on EINTR and short writes; when
// someone set O_NONBLOCK on a shared file description it waits for POLLOUT.
// Returns 0 or the errno that stopped it (EIO for a zero-length write).
// Async-signal-safe.
int write_all(int fd, std::string_view data) noexcept;

// Writes `content` to `path` through a unique `path.tmp-XXXXXX` (so
// concurrent writers of one path never share a temporary file), fsync,
// rename, then fsync of the directory, so a crash leaves either the old or
// the new file, never a half-written one. The file gets exactly `mode`
// (fchmod: the umask and an older file's mode do not matter). With
// `skip_if_equal`, an existing file with the same content is left alone (no
// write at all). A crash mid-write may leave a `.tmp-` file behind.
Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode,
                         bool skip_if_equal = false);

// Removes `path` and everything below it without following symlinks, adding
// owner write/search permission to directories first (store trees are
// read-only). A missing path is success. The error names the first path
// that could not be removed.
Status remove_all(const std::string& path) noexcept;

} // namespace hearth
