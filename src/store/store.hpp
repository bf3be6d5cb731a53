#pragma once
// Content-addressed artifact store: the blocking core.
//
// Layout under the state directory:
//   blobs/sha256/<hex>     verified pex files, 0444
//   trees/sha256/<hex>/    extracted blobs; files without write bits, dirs 0555
//   tmp/                   work in progress; emptied by open()
//   lock                   flock'ed by the Store that has the directory open
//
// The commit rule (published means complete): nothing appears under blobs/
// or trees/ except by one rename(2) from tmp/ of a finished object; that
// rename is the commit. A blob is renamed only after its sha256 matched the
// expected one (and after fsync when `sync` is on); a tree only after the
// extraction, the wheel unpacking and the chmods all succeeded (and after
// syncfs when `sync` is on, so a power loss cannot leave a published tree
// with empty files). Removal runs the other way: an object is first renamed
// back into tmp/ (one atomic step that unpublishes it) and only then deleted
// there. A crash at any other point leaves only debris in tmp/, which the
// next open() removes. Readers therefore trust anything they find under
// blobs/ and trees/.
//
// open() also removes, without logging, every entry of blobs/sha256 or
// trees/sha256 whose name is not a 64-character lowercase hex digest or whose
// type is wrong (a blob must be a regular file, a tree a directory; symlinks
// are never either): hearth never makes such entries, so they are foreign or
// damaged, and leaving them would let a later rename or GC trip over them.
//
// Last use: the mtime of the blob file / tree root directory is the object's
// last use. Store::touch() sets it to now, and import_file / BlobWriter::commit
// / ensure_tree do so on every hit and publish, so the LRU order survives
// restarts without any extra state file.
//
// Threading: after open() has returned, every method may be called from any
// thread concurrently (the daemon runs them on the libuv thread pool). open()
// itself must not race with anything on the same store. Every method blocks
// on the filesystem; none throws; none uses libuv. Digest arguments are
// checked with is_sha256_hex() before any path is built from them. The store
// does not know which objects live revisions use: the caller must not evict
// or remove those (see store_gc.hpp for the planner).
//
// Disk full: any failure caused by ENOSPC or EDQUOT (writing, creating,
// renaming, extracting) reports StoreStatus::no_space instead of io_error,
// with the path in the message and the errno in StoreResult::sys_errno. An
// extraction over the byte budget its caller passes (ExtractLimits::
// budget_bytes) is no_space too, with sys_errno 0. As with every failure,
// the call's partial work in tmp/ is gone when it returns.

#include "store/extract.hpp"
#include "store/sha256.hpp"
#include "util/fd.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hearth {

enum class StoreStatus {
    ok,
    invalid_digest,  // not 64 lowercase hex characters
    digest_mismatch, // the bytes' sha256 is not the expected one
    not_found,       // the blob (for ensure_tree) or the source file is missing
    bad_archive,     // extraction refused the blob (unsafe, over limits, corrupt)
    io_error,        // anything else: EACCES, EIO, store not open, ...
    no_space,        // ENOSPC/EDQUOT (sys_errno set), or over the caller's byte budget
                     // (sys_errno 0)
};

// "ok", "invalid_digest", ..., "no_space". Static strings.
const char* store_status_name(StoreStatus s) noexcept;

enum class ObjectKind { blob, tree };

// "blob" or "tree". Static strings.
const char* object_kind_name(ObjectKind k) noexcept;

// What the cache holds, for cache.list and the GC planner.
struct CacheEntry {
    ObjectKind kind = ObjectKind::blob;
    std::string sha256;      // 64 lowercase hex
    std::uint64_t bytes = 0; // allocated bytes (st_blocks * 512), tree: whole tree
    std::chrono::system_clock::time_point last_used; // the object's mtime
};

struct StoreResult {
    StoreStatus status = StoreStatus::ok;
    bool hit = false;          // ok because the object was already present
    std::string error;         // names the path/entry and the cause when !ok
    std::string path;          // the blob or tree path when ok
    std::string actual;        // import: the digest the bytes really have
    std::uint64_t bytes = 0;   // import: bytes copied; ensure_tree: bytes extracted
    std::uint64_t entries = 0; // ensure_tree: archive entries, wheels included
    std::string entry;         // ensure_tree failure: the offending entry
    int sys_errno = 0;         // io_error/no_space: the errno, when one is known
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
    // The errno of the failed creation or write, else 0.
    int sys_errno() const noexcept { return errno_; }
    // no_space when sys_errno() is ENOSPC or EDQUOT, else io_error (also
    // io_error for a writer that has not failed: only ask after a failure).
    StoreStatus failure_status() const noexcept;
    // Appends bytes (hashing them). False on a write error (ENOSPC, ...): the
    // writer is then dead, its temp file already deleted; commit() reports the
    // error (no_space for ENOSPC/EDQUOT).
    bool write(const void* data, std::size_t size) noexcept;
    std::uint64_t size() const noexcept { return bytes_; }
    // Finishes the hash; on a match moves the file to blobs/sha256/<expected>
    // (0444). On a mismatch deletes the file and returns digest_mismatch with
    // both digests. `source` only names the origin in messages. If the blob
    // was published meanwhile: ok, hit=true, and the existing one is touched.
    // On every failure the temp file is gone when this returns.
    StoreResult commit(std::string_view expected_hex, std::string_view source) noexcept;
    // Deletes the temp file now (also done by the destructor).
    void abort() noexcept;

private:
    friend class Store;
    const Store* store_ = nullptr;
    Fd fd_;
    std::string name_; // in tmp/
    std::string error_;
    int errno_ = 0;
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
    // (fails if another Store, in this or another process, holds it), empties
    // tmp/ and removes the misnamed or mistyped entries of blobs/sha256 and
    // trees/sha256 (see the top of this file). result.entries: how many
    // entries were removed, tmp/ leftovers and foreign ones together. Call
    // once, before anything else.
    StoreResult open() noexcept;

    const std::string& state_dir() const noexcept { return dir_; }

    // Copies `src` (never links it: a later change to the caller's file must
    // not alter a verified blob) into tmp/ while hashing, and publishes it as
    // blobs/sha256/<expected_hex> only if the digest matches. If that blob is
    // already present: ok with hit=true, and `src` is not read. Hits and
    // publishes touch() the blob.
    StoreResult import_file(const std::string& src, std::string_view expected_hex) noexcept;

    // A writer for a new blob (see BlobWriter). Check ok() on the result.
    BlobWriter begin_blob() const noexcept;

    // Makes trees/sha256/<hex>/ exist: extracts the blob (which must be in the
    // store) into tmp/, unpacks every regular file `.deps/*.whl` into
    // `.hearth/wheels/<file-name>/` with the same checks and a shared budget
    // of entries and bytes, seals the tree read-only and publishes it by
    // rename. If the tree exists already, or another thread publishes it
    // first: ok with hit=true. An archive that already has `.hearth` and
    // raw wheels is refused (bad_archive): that name is hearth's. Hits and
    // publishes touch() the tree; an extraction touches the blob it read.
    // Failures by cause: a full disk or quota anywhere (ENOSPC, EDQUOT) is
    // no_space with sys_errno set; output past `limits.budget_bytes` (the
    // caller's byte budget, shared with the wheels) is no_space with
    // sys_errno 0; an archive past its own safety limits (max_bytes,
    // max_entries, ratio, depth), unsafe or corrupt is bad_archive.
    StoreResult ensure_tree(std::string_view hex, const ExtractLimits& limits = {},
                            unsigned threads = 1) noexcept;

    // Deletes a tree or blob, like evict() (result.bytes: bytes freed).
    // Missing is ok. The caller makes sure no live revision uses it.
    StoreResult remove_tree(std::string_view hex) noexcept;
    StoreResult remove_blob(std::string_view hex) noexcept;

    // Unpublishes the object atomically first (one rename into tmp/; a tree's
    // root is made writable for that), then deletes it there, so a crash
    // half-way leaves debris in tmp/ and never a partial object. ok with
    // result.bytes = allocated bytes freed; a missing object is ok with 0.
    // If the deletion in tmp/ fails the object is still unpublished (error
    // is io_error; the next open() sweeps the rest). Drops the cached size.
    // The caller makes sure no live revision uses the object.
    StoreResult evict(ObjectKind kind, std::string_view hex) noexcept;

    // Records a use now: sets the object's mtime (and atime) to the current
    // time with utimensat, which works on the read-only files as their owner
    // (or root). ok; not_found if the object is missing; invalid_digest.
    StoreResult touch(ObjectKind kind, std::string_view hex) const noexcept;

    // Allocated bytes of the object (st_blocks * 512, a tree walked once
    // without following links), cached in memory after the first call
    // (objects are immutable; evict/remove drop the entry). 0 if the object
    // is missing, unreadable or the digest is invalid.
    std::uint64_t object_bytes(ObjectKind kind, std::string_view hex) const noexcept;

    // Every published blob and tree with its object_bytes() and last use,
    // most recently used first (ties: trees before blobs, then by digest).
    // Objects that vanish while listing are left out. Empty on error.
    std::vector<CacheEntry> list_cache() const noexcept;

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
    int kind_fd(ObjectKind k) const noexcept {
        return k == ObjectKind::blob ? blobs_fd_.get() : trees_fd_.get();
    }
    // Drops the cached size of (kind, hex) and invalidates measurements in
    // flight. Called before an object is unpublished.
    void forget_size(ObjectKind kind, const std::string& hex) noexcept;
    // object_bytes() without the existence check; nullopt if unmeasurable.
    std::optional<std::uint64_t> cached_bytes(ObjectKind kind,
                                              const std::string& hex) const noexcept;
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

    // object_bytes() cache. `size_gen_` counts evictions so a size measured
    // while its object was being evicted is not cached.
    mutable std::mutex size_mu_;
    mutable std::map<std::pair<ObjectKind, std::string>, std::uint64_t> sizes_;
    mutable std::uint64_t size_gen_ = 0;
};

} // namespace hearth
