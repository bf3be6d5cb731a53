#pragma once
// Safe extraction of zip archives (pex files are `#!...\n` + zip) with
// libarchive's seekable zip reader.
//
// Blocking code for the thread pool: no libuv, no globals, no exceptions out
// of the functions below. Different calls may run concurrently on different
// destinations.
//
// How an extraction proceeds, and why it is safe:
//  1. Plan. One reader walks every header and checks the whole archive before
//     anything but the (empty) destination exists: names (absolute, `..`,
//     empty, too long or too deep), entry types (devices, FIFOs, sockets are
//     refused), duplicates (a directory may repeat, a regular file may be
//     replaced by a later regular file, anything else involving a link or a
//     change of type is refused), entries whose parent is a file or a link,
//     hard links whose target is not an earlier regular file, symlinks whose
//     target is absolute or, resolved relative to the link's own directory
//     and through the other links of the archive, leaves the tree, and the
//     entry count.
//  2. Directories are created once each, parents first, mode 0755.
//  3. Regular files are written by one or more readers (see `threads`),
//     opened relative to directory fds with O_NOFOLLOW|O_EXCL (and openat2
//     RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS where the kernel has it). Byte and
//     ratio limits are enforced on the bytes actually produced, never on
//     header sizes; libarchive's CRC and size checks are fatal here. An
//     entry's compressed size, for the ratio, is what libarchive consumed for
//     it, capped by the archive bytes between its data and the next entry's
//     (libarchive does not expose the header value): entries that share
//     their data, as in overlapping-entry bombs, therefore count as tiny.
//  4. Hard links, then symlinks, are created last, so no link exists while
//     data is written and none can redirect a write.
// Modes: regular files 0755 if the archive gives any execute bit, else 0644
// (setuid, setgid, sticky and the archive's other bits are dropped);
// directories 0755; ownership is the caller's. Nothing is fsync'ed.
// On any failure the destination is removed again, so the caller never sees
// a partial tree.

#include "util/fs.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace hearth {

// Two kinds of byte cap. `max_bytes` is a safety limit on the archive: going
// over it means the archive is hostile or broken (ExtractError::limit).
// `budget_bytes` is the room the caller has for the output (the store's byte
// budget): going over it means the archive does not fit, not that it is bad
// (ExtractError::no_space). When one amount of data passes both, the smaller
// cap decides; with equal caps, the budget.
struct ExtractLimits {
    std::uint64_t max_entries = 1'000'000;   // archive entries, any type
    std::uint64_t max_bytes = 16ULL << 30;   // total bytes written
    std::uint64_t budget_bytes = UINT64_MAX; // room for the output
    double max_ratio = 200.0;                // uncompressed / compressed, per entry
    std::uint64_t ratio_min_size = 1 << 20;  // entries up to this size skip the ratio check
    std::uint32_t max_depth = 256;           // path components per entry
};

struct ExtractOptions {
    // Create regular files without write bits (0444/0555) and make every
    // directory below the destination 0555 at the end; the destination itself
    // stays writable (the store adds `.hearth/` and renames it).
    bool read_only = false;
    // Set each regular file's mtime from the archive (bsdtar and unzip do).
    bool preserve_mtime = true;
    // How entries are shared among parallel readers. Each reader walks the
    // headers up to its last entry; `contiguous` gives each a consecutive run
    // balanced by size, `interleaved` gives reader k the files i % n == k.
    enum class Split { contiguous, interleaved };
    Split split = Split::contiguous;
};

enum class ExtractError {
    none,
    unsafe_entry, // path, type, link or duplicate refused
    limit,        // entries, max_bytes, ratio or depth over the limits
    corrupt,      // libarchive: truncated, bad CRC, bad header, not a zip
    io,           // the destination side: EEXIST on dest, EMFILE, EACCES, ...
    no_space,     // over budget_bytes (sys_errno 0), or ENOSPC/EDQUOT (sys_errno set)
};

struct ExtractResult {
    ExtractError code = ExtractError::none;
    std::string error;         // human-readable; names the entry when there is one
    std::string entry;         // the offending entry's name as stored, if any
    std::uint64_t entries = 0; // archive entries seen (all types)
    std::uint64_t bytes = 0;   // bytes of file data written
    int sys_errno = 0;         // io, no_space: the errno of the failed call (EMFILE, ENOSPC,
                               // EDQUOT, ...); 0 for no_space over budget_bytes
    bool ok() const noexcept { return code == ExtractError::none; }
};

// Extracts the zip at `archive` (may carry a `#!...\n` prefix) into `dest`,
// which must not exist and whose parent must. `threads` <= 1 extracts with one
// reader; more lets up to that many libarchive readers (each with its own
// handle on the same open file) write disjoint shares of the files. Small
// archives use fewer threads than asked. Blocking; thread-safe for distinct
// destinations. Never throws.
ExtractResult extract_zip(const std::string& archive, const std::string& dest,
                          const ExtractLimits& limits = {}, unsigned threads = 1,
                          const ExtractOptions& options = {}) noexcept;

// Lexical check of one archive member name, as the extractor applies it:
// "" if acceptable, else the reason (absolute, `..`, empty, too deep/long).
// Exposed for tests and for callers that validate names they build.
std::string check_entry_name(std::string_view name, std::uint32_t max_depth = 256);

} // namespace hearth
