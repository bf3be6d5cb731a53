#pragma once
// Content-addressed artifact store: the blocking core.
//
// Layout under the state directory:
//   blobs/sha256/<hex>     verified pex files, 0444
//   trees/sha256/<hex>/    extracted blobs; files without write bits, dirs 0555
//   tmp/                   work in progress; emptied by open()
//   lock                   flock'ed by the Store that has the directory open
//
// The commit rule: nothing appears under blobs/ or trees/ except by one
// rename(2) from tmp/ of a finished object. A blob is renamed only after its
// sha256 matched the expected one (and after fsync when `sync` is on); a tree
// only after the extraction, the wheel unpacking and the chmods all succeeded
// (and after syncfs when `sync` is on, so a power loss cannot leave a
// published tree with empty files). A crash at any other point leaves only
// debris in tmp/, which the next open() removes. Readers therefore trust
// anything they find under blobs/ and trees/.
//
// Threading: after open() has returned, every method may be called from any
// thread concurrently (the daemon runs them on the libuv thread pool). open()
// itself must not race with anything on the same store. Every method blocks
// on the filesystem; none throws; none uses libuv. Digest arguments are
// checked with is_sha256_hex() before any path is built from them.

#include "extract.hpp"
#include "fd.hpp"
#include "sha256.hpp"

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hearth {

enum class StoreStatus {
    ok,
    invalid_digest,  // not 64 lowercase hex characters
    digest_mismatch, // the bytes' sha256 is not the expected one
    not_found,       // the blob (for ensure_tree) or the source file is missing
    bad_archive,     // extraction refused the blob (unsafe, over limits, corrupt)
    io_error,        // anything else: ENOSPC, EACCES, store not open, ...
};

const char* store_status_name(StoreStatus s) noexcept;

struct StoreResult {
    StoreStatus status = StoreStatus::ok;
    bool hit = false;     // ok because the object was already present
    std::string error;    // names the path/entry and the cause when !ok
    std::string path;     // the blob or tree path when ok
    std::string actual;   // import: the digest the bytes really have
    std::uint64_t bytes = 0;   // import: bytes copied; ensure_tree: bytes extracted
    std::uint64_t entries = 0; // ensure_tree: archive entries, wheels included
    std::string entry;         // ensure_tree failure: the offending entry
    bool ok() const noexcept { return status == StoreStatus::ok; }
};

struct DiskUsage {
    std::uint64_t allocated = 0; // st_blocks * 512, what GC should budget
    std::uint64_t apparent = 0;  // sum of st_size
    std::uint64_t entries = 0;   // inodes counted (a blob is 1)
    bool ok = false;             // false if the object is missing or unreadable
};

struct StoreOptions {
    // fsync blobs and syncfs trees before publishing them. Off only for tests
    // and benchmarks on throwaway directories.
    bool sync = true;
};

class Store;

// Streams a blob into tmp/ while hashing it; commit() publishes it if the
// digest matches. For the fetcher (bytes arrive from the network) and for
// import_file(). Dropping an uncommitted writer deletes its temp file. One
// writer is used by one thread at a time; the Store must outlive it.
class BlobWriter {
public:
    BlobWriter() = default;
    ~BlobWriter();
    BlobWriter(BlobWriter&& other) noexcept;
    BlobWriter& operator=(BlobWriter&& other) noexcept;
    BlobWriter(const BlobWriter&) = delete;
    BlobWriter& operator=(const BlobWriter&) = delete;

    // False if creation failed; error() says why.
    bool ok() const noexcept { return fd_.get() >= 0; }
    const std::string& error() const noexcept { return error_; }
    // Appends bytes (hashing them). False on a write error (ENOSPC, ...): the
    // writer is then dead; commit() reports the error.
    bool write(const void* data, std::size_t size) noexcept;
    std::uint64_t size() const noexcept { return bytes_; }
    // Finishes the hash; on a match moves the file to blobs/sha256/<expected>
    // (0444). On a mismatch deletes the file and returns digest_mismatch with
    // both digests. `source` only names the origin in messages.
    StoreResult commit(std::string_view expected_hex, std::string_view source) noexcept;
    // Deletes the temp file now (also done by the destructor).
    void abort() noexcept;

private:
    friend class Store;
    const Store* store_ = nullptr;
    Fd fd_;
    std::string name_; // in tmp/
    std::string error_;
    std::uint64_t bytes_ = 0;
    Sha256 hash_;
};

class Store {
public:
    explicit Store(std::string state_dir, StoreOptions options = {});
    ~Store() = default;
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Creates the layout (mode 0755, missing parents too), takes the lock
    // (fails if another Store, in this or another process, holds it) and
    // empties tmp/ (result.entries: how many leftovers were removed). Call
    // once, before anything else.
    StoreResult open() noexcept;

    const std::string& state_dir() const noexcept { return dir_; }

    // Copies `src` (never links it: a later change to the caller's file must
    // not alter a verified blob) into tmp/ while hashing, and publishes it as
    // blobs/sha256/<expected_hex> only if the digest matches. If that blob is
    // already present: ok with hit=true, and `src` is not read.
    StoreResult import_file(const std::string& src, std::string_view expected_hex) noexcept;

    // A writer for a new blob (see BlobWriter). Check ok() on the result.
    BlobWriter begin_blob() const noexcept;

    // Makes trees/sha256/<hex>/ exist: extracts the blob (which must be in the
    // store) into tmp/, unpacks every regular file `.deps/*.whl` into
    // `.hearth/wheels/<file-name>/` with the same checks and a shared budget
    // of entries and bytes, seals the tree read-only and publishes it by
    // rename. If the tree exists already, or another thread publishes it
    // first: ok with hit=true. An archive that already has `.hearth` and
    // raw wheels is refused (bad_archive): that name is hearth's.
    StoreResult ensure_tree(std::string_view hex, const ExtractLimits& limits = {},
                            unsigned threads = 1) noexcept;

    // Deletes a tree or blob (tree dirs are made writable first). Missing is
    // ok. The caller makes sure no live revision uses it.
    StoreResult remove_tree(std::string_view hex) noexcept;
    StoreResult remove_blob(std::string_view hex) noexcept;

    // Paths the objects have (or would have); "" for an invalid digest.
    std::string blob_path(std::string_view hex) const noexcept;
    std::string tree_path(std::string_view hex) const noexcept;
    bool has_blob(std::string_view hex) const noexcept;
    bool has_tree(std::string_view hex) const noexcept;

    // Space used on disk, for GC. Trees are walked without following links.
    DiskUsage blob_usage(std::string_view hex) const noexcept;
    DiskUsage tree_usage(std::string_view hex) const noexcept;

    // Digests present under blobs/ and trees/ (other names are ignored).
    std::vector<std::string> list_blobs() const noexcept;
    std::vector<std::string> list_trees() const noexcept;

private:
    friend class BlobWriter;
    bool is_open() const noexcept { return tmp_fd_.get() >= 0; }
    // A name for new work in tmp/, unique in this process and across
    // restarts (pid, counter, random bits).
    std::string temp_name(std::string_view kind, std::string_view hex) const;
    // Unpacks .deps/*.whl of the tree being built at `tree` (a path in tmp/),
    // charging `budget`; adds to `total`. ok or the failure to report.
    StoreResult unpack_wheels(const std::string& tree, ExtractLimits& budget, unsigned threads,
                              StoreResult& total) const;

    std::string dir_;
    StoreOptions options_;
    Fd lock_fd_;
    Fd blobs_fd_;
    Fd trees_fd_;
    Fd tmp_fd_;
    mutable std::atomic<std::uint64_t> counter_{0};
};

} // namespace hearth
