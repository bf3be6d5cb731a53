#include "store/extract.hpp"
#include "store/sha256.hpp"
#include "store/store.hpp"
#include "store/store_gc.hpp"

#include <algorithm>
#include <archive.h>
#include <archive_entry.h>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace hearth;
namespace fs = std::filesystem;
using std::chrono::system_clock;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/hearth-gc-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { (void)remove_all(path); }
};

void write_file(const std::string& path, const std::string& data) {
    std::ofstream f(path, std::ios::binary);
    f << data;
    REQUIRE(f.good());
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<std::string> names_in(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        out.push_back(e.path().filename().string());
    return out;
}

// Incompressible bytes, so sizes on disk cannot shrink below the length.
std::string random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (char& c : s)
        c = static_cast<char>(rng() & 0xff);
    return s;
}

// A zip (deflated unless `stored`) of the given name -> data pairs.
std::string make_zip(const std::string& scratch,
                     const std::vector<std::pair<std::string, std::string>>& files, bool stored) {
    struct archive* a = archive_write_new();
    REQUIRE(archive_write_set_format_zip(a) == ARCHIVE_OK);
    REQUIRE((stored ? archive_write_zip_set_compression_store(a)
                    : archive_write_zip_set_compression_deflate(a)) == ARCHIVE_OK);
    REQUIRE(archive_write_open_filename(a, scratch.c_str()) == ARCHIVE_OK);
    for (const auto& [name, data] : files) {
        struct archive_entry* e = archive_entry_new();
        archive_entry_set_pathname(e, name.c_str());
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
        REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
        REQUIRE(archive_write_data(a, data.data(), data.size()) ==
                static_cast<la_ssize_t>(data.size()));
        archive_entry_free(e);
    }
    REQUIRE(archive_write_close(a) == ARCHIVE_OK);
    archive_write_free(a);
    std::string z = read_file(scratch);
    ::unlink(scratch.c_str());
    return z;
}

StoreOptions fast() {
    StoreOptions o;
    o.sync = false;
    return o;
}

// Imports `content` as a blob; returns its digest.
std::string add_blob(Store& s, const std::string& scratch_dir, const std::string& content) {
    const std::string src = scratch_dir + "/in.bin";
    write_file(src, content);
    const std::string hex = sha256_hex(content);
    StoreResult r = s.import_file(src, hex);
    INFO(r.error);
    REQUIRE(r.ok());
    ::unlink(src.c_str());
    return hex;
}

// A pex-like zip with a few incompressible files; returns its digest.
std::string add_pex(Store& s, const std::string& scratch_dir, unsigned seed) {
    const std::string pex =
        "#!/usr/bin/env python3\n" + make_zip(scratch_dir + "/p.zip",
                                              {{"__main__.py", "import sys\n"},
                                               {"app/a.bin", random_bytes(20000, seed)},
                                               {"app/b.bin", random_bytes(9000, seed + 1)}},
                                              false);
    return add_blob(s, scratch_dir, pex);
}

// Sets the mtime of `path` to `ago` seconds in the past.
void age(const std::string& path, int ago) {
    const std::time_t t = std::time(nullptr) - ago;
    const struct timespec ts[2] = {{t, 0}, {t, 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

std::vector<std::string> order_of(const std::vector<CacheEntry>& entries) {
    std::vector<std::string> out;
    for (const CacheEntry& e : entries) {
        out.push_back(std::string(object_kind_name(e.kind)) + ":" + e.sha256.substr(0, 8));
    }
    return out;
}

std::string key(ObjectKind k, const std::string& hex) {
    return std::string(object_kind_name(k)) + ":" + hex.substr(0, 8);
}

bool must_work() {
    const char* v = std::getenv("HEARTH_TESTS_MUST_WORK");
    return v != nullptr && std::strcmp(v, "1") == 0;
}

// A small tmpfs mounted on `dir` for as long as this lives (root only).
struct SmallTmpfs {
    std::string dir;
    bool mounted = false;
    std::string why; // why not mounted
    SmallTmpfs(std::string where, const char* size) : dir(std::move(where)) {
        if (::geteuid() != 0) {
            why = "not root";
            return;
        }
        if (::mkdir(dir.c_str(), 0755) != 0) {
            why = "mkdir " + dir + ": " + std::strerror(errno);
            return;
        }
        const std::string opts = std::string("size=") + size + ",mode=0755";
        if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
            why = std::string("mount tmpfs: ") + std::strerror(errno);
            return;
        }
        mounted = true;
    }
    ~SmallTmpfs() {
        if (mounted) (void)::umount2(dir.c_str(), MNT_DETACH);
    }
    SmallTmpfs(const SmallTmpfs&) = delete;
    SmallTmpfs& operator=(const SmallTmpfs&) = delete;
};

#define REQUIRE_TMPFS(m)                                                                           \
    do {                                                                                           \
        if (!(m).mounted) {                                                                        \
            if (must_work()) FAIL("prerequisite missing (HEARTH_TESTS_MUST_WORK=1): " << (m).why); \
            WARN("skipped: cannot mount a small tmpfs: " << (m).why);                              \
            return;                                                                                \
        }                                                                                          \
    } while (0)

CacheEntry entry(ObjectKind kind, char c, std::uint64_t bytes, int age_s) {
    CacheEntry e;
    e.kind = kind;
    e.sha256 = std::string(64, c);
    e.bytes = bytes;
    e.last_used = system_clock::time_point(std::chrono::seconds(1'700'000'000 - age_s));
    return e;
}

std::vector<std::string> evicted(const GcPlan& p) {
    std::vector<std::string> out;
    for (const CacheEntry& e : p.evict) {
        out.push_back(std::string(object_kind_name(e.kind)) + ":" + e.sha256.substr(0, 1));
    }
    return out;
}

} // namespace

// ---------------------------------------------------------------------------
// Planner

TEST_CASE("plan_gc evicts least recently used first until under the target", "[store_gc]") {
    const std::vector<CacheEntry> entries = {
        entry(ObjectKind::blob, 'a', 100, 10), // newest
        entry(ObjectKind::tree, 'b', 300, 50),
        entry(ObjectKind::blob, 'c', 200, 40),
        entry(ObjectKind::tree, 'd', 400, 30),
    };
    const std::set<ObjectKey> none;

    GcPlan p = plan_gc(entries, none, 1000);
    CHECK(p.evict.empty());
    CHECK(p.used_before == 1000);
    CHECK(p.used_after == 1000);
    CHECK(p.pinned_bytes == 0);
    CHECK(p.fits);

    p = plan_gc(entries, none, 999);
    CHECK(evicted(p) == std::vector<std::string>{"tree:b"});
    CHECK(p.used_after == 700);
    CHECK(p.fits);

    p = plan_gc(entries, none, 400);
    CHECK(evicted(p) == std::vector<std::string>{"tree:b", "blob:c", "tree:d"});
    CHECK(p.used_after == 100);
    CHECK(p.fits);

    p = plan_gc(entries, none, 0);
    CHECK(p.evict.size() == 4);
    CHECK(p.used_after == 0);
    CHECK(p.fits);
}

TEST_CASE("plan_gc never evicts pinned entries and reports when nothing fits", "[store_gc]") {
    const std::vector<CacheEntry> entries = {
        entry(ObjectKind::blob, 'a', 100, 10),
        entry(ObjectKind::tree, 'b', 300, 50), // oldest, but pinned
        entry(ObjectKind::blob, 'c', 200, 40),
        entry(ObjectKind::tree, 'd', 400, 30),
    };
    const std::set<ObjectKey> pins = {{ObjectKind::tree, std::string(64, 'b')},
                                      {ObjectKind::blob, std::string(64, 'd')}}; // kind matters
    GcPlan p = plan_gc(entries, pins, 600);
    CHECK(evicted(p) == std::vector<std::string>{"blob:c", "tree:d"});
    CHECK(p.used_after == 400);
    CHECK(p.pinned_bytes == 300);
    CHECK(p.fits);

    // Even evicting everything unpinned leaves 300 > 250.
    p = plan_gc(entries, pins, 250);
    CHECK(evicted(p) == std::vector<std::string>{"blob:c", "tree:d", "blob:a"});
    CHECK(p.used_after == 300);
    CHECK_FALSE(p.fits);

    // The predicate form.
    p = plan_gc(
        entries, [](const CacheEntry& e) { return e.kind == ObjectKind::tree; }, 0);
    CHECK(evicted(p) == std::vector<std::string>{"blob:c", "blob:a"});
    CHECK(p.pinned_bytes == 700);
    CHECK(p.used_after == 700);
    CHECK_FALSE(p.fits);

    // No predicate: nothing pinned.
    p = plan_gc(entries, std::function<bool(const CacheEntry&)>(), 0);
    CHECK(p.evict.size() == 4);
    CHECK(p.fits);

    p = plan_gc({}, pins, 0);
    CHECK(p.evict.empty());
    CHECK(p.used_before == 0);
    CHECK(p.fits);
}

TEST_CASE("plan_gc breaks ties: trees first, then larger, then by digest", "[store_gc]") {
    const std::vector<CacheEntry> entries = {
        entry(ObjectKind::blob, 'a', 100, 20), entry(ObjectKind::blob, 'b', 500, 20),
        entry(ObjectKind::tree, 'c', 100, 20), entry(ObjectKind::tree, 'e', 100, 20),
        entry(ObjectKind::tree, 'd', 100, 20),
    };
    GcPlan p = plan_gc(entries, std::set<ObjectKey>(), 0);
    CHECK(evicted(p) == std::vector<std::string>{"tree:c", "tree:d", "tree:e", "blob:b", "blob:a"});
}

TEST_CASE("default_store_budget is half the filesystem", "[store_gc]") {
    struct statvfs v {};
    REQUIRE(::statvfs("/tmp", &v) == 0);
    const std::uint64_t want = static_cast<std::uint64_t>(v.f_blocks) * v.f_frsize / 2;
    CHECK(want > 0);
    CHECK(default_store_budget("/tmp") == want);
    CHECK(default_store_budget("/nonexistent/hearth/state") == 0);
}

// ---------------------------------------------------------------------------
// Store: last use, sizes, eviction

TEST_CASE("list_cache reports plausible sizes, newest use first", "[store_gc][store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    CHECK(s.list_cache().empty());

    const std::string content = random_bytes(10000, 1);
    const std::string blob = add_blob(s, t.path, content);
    const std::string pex = add_pex(s, t.path, 7);
    REQUIRE(s.ensure_tree(pex).ok());
    age(s.blob_path(blob), 300);
    age(s.blob_path(pex), 200);
    age(s.tree_path(pex), 100);

    std::vector<CacheEntry> c = s.list_cache();
    REQUIRE(c.size() == 3);
    CHECK(order_of(c) == std::vector<std::string>{key(ObjectKind::tree, pex),
                                                  key(ObjectKind::blob, pex),
                                                  key(ObjectKind::blob, blob)});
    CHECK(c[0].sha256 == pex);
    CHECK(c[2].sha256 == blob);
    const auto now = system_clock::now();
    CHECK(c[2].last_used < now - std::chrono::seconds(290));
    CHECK(c[2].last_used > now - std::chrono::seconds(310));

    // Allocated bytes: whole blocks, at least the content.
    struct stat st {};
    REQUIRE(::stat(s.blob_path(blob).c_str(), &st) == 0);
    CHECK(c[2].bytes == static_cast<std::uint64_t>(st.st_blocks) * 512);
    CHECK(c[2].bytes >= content.size());
    CHECK(c[2].bytes % 512 == 0);
    CHECK(c[1].bytes >= 29000); // the pex holds ~29 kB of incompressible data
    // The tree: its files (~29 kB), directories, and the root itself.
    CHECK(c[0].bytes >= 29000);
    CHECK(c[0].bytes == s.tree_usage(pex).allocated);
    CHECK(s.object_bytes(ObjectKind::tree, pex) == c[0].bytes);
    CHECK(s.object_bytes(ObjectKind::blob, blob) == c[2].bytes);
    CHECK(s.object_bytes(ObjectKind::tree, blob) == 0); // no such tree
    CHECK(s.object_bytes(ObjectKind::blob, "nothex") == 0);
}

TEST_CASE("touch and cache hits move objects to the front", "[store_gc][store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    const std::string a = add_blob(s, t.path, "first");
    const std::string b = add_blob(s, t.path, "second");
    const std::string p = add_pex(s, t.path, 3);
    REQUIRE(s.ensure_tree(p).ok());
    age(s.blob_path(a), 400);
    age(s.blob_path(b), 300);
    age(s.blob_path(p), 200);
    age(s.tree_path(p), 100);
    CHECK(order_of(s.list_cache()) ==
          std::vector<std::string>{key(ObjectKind::tree, p), key(ObjectKind::blob, p),
                                   key(ObjectKind::blob, b), key(ObjectKind::blob, a)});

    StoreResult r = s.touch(ObjectKind::blob, a);
    INFO(r.error);
    REQUIRE(r.ok());
    CHECK(order_of(s.list_cache()).front() == key(ObjectKind::blob, a));

    // An import that hits the cache is a use.
    const std::string src = t.path + "/second";
    write_file(src, "second");
    r = s.import_file(src, b);
    REQUIRE(r.ok());
    CHECK(r.hit);
    CHECK(order_of(s.list_cache()).front() == key(ObjectKind::blob, b));

    // So is an ensure_tree hit.
    r = s.ensure_tree(p);
    REQUIRE(r.ok());
    CHECK(r.hit);
    CHECK(order_of(s.list_cache()).front() == key(ObjectKind::tree, p));

    // A fresh extraction touches the tree and the blob it read.
    REQUIRE(s.evict(ObjectKind::tree, p).ok());
    age(s.blob_path(p), 500);
    r = s.ensure_tree(p);
    REQUIRE(r.ok());
    CHECK_FALSE(r.hit);
    std::vector<std::string> order = order_of(s.list_cache());
    REQUIRE(order.size() == 4);
    CHECK(std::find(order.begin(), order.begin() + 2, key(ObjectKind::tree, p)) !=
          order.begin() + 2);
    CHECK(std::find(order.begin(), order.begin() + 2, key(ObjectKind::blob, p)) !=
          order.begin() + 2);

    CHECK(s.touch(ObjectKind::tree, a).status == StoreStatus::not_found);
    CHECK(s.touch(ObjectKind::blob, "xyz").status == StoreStatus::invalid_digest);
    Store closed(t.path + "/other", fast());
    CHECK(closed.touch(ObjectKind::blob, a).status == StoreStatus::io_error);
}

TEST_CASE("last use survives a restart", "[store_gc][store]") {
    TempDir t;
    std::string a, b;
    {
        Store s(t.path + "/state", fast());
        REQUIRE(s.open().ok());
        a = add_blob(s, t.path, "aaa");
        b = add_blob(s, t.path, "bbb");
        age(s.blob_path(a), 100);
        age(s.blob_path(b), 200);
        REQUIRE(s.touch(ObjectKind::blob, b).ok());
    }
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    CHECK(order_of(s.list_cache()) ==
          std::vector<std::string>{key(ObjectKind::blob, b), key(ObjectKind::blob, a)});
}

TEST_CASE("evict unpublishes, frees the bytes and forgets the size", "[store_gc][store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    const std::string p = add_pex(s, t.path, 11);
    REQUIRE(s.ensure_tree(p).ok());
    const std::uint64_t tree_bytes = s.object_bytes(ObjectKind::tree, p);
    const std::uint64_t blob_bytes = s.object_bytes(ObjectKind::blob, p);
    REQUIRE(tree_bytes > 0);
    REQUIRE(blob_bytes > 0);

    // Sizes are cached: a change behind the store's back is not seen.
    const std::string extra = s.tree_path(p) + "/extra";
    REQUIRE(::chmod(s.tree_path(p).c_str(), 0755) == 0);
    write_file(extra, random_bytes(50000, 5));
    REQUIRE(::chmod(s.tree_path(p).c_str(), 0555) == 0);
    CHECK(s.object_bytes(ObjectKind::tree, p) == tree_bytes);

    StoreResult r = s.evict(ObjectKind::tree, p);
    INFO(r.error);
    REQUIRE(r.ok());
    CHECK(r.bytes == tree_bytes); // what was accounted, the cached size
    CHECK_FALSE(s.has_tree(p));
    CHECK_FALSE(fs::exists(s.tree_path(p)));
    CHECK(names_in(t.path + "/state/tmp").empty());
    CHECK(s.has_blob(p));
    CHECK(s.object_bytes(ObjectKind::tree, p) == 0);

    r = s.evict(ObjectKind::tree, p); // missing is fine
    CHECK(r.ok());
    CHECK(r.bytes == 0);

    // Rebuilt: measured afresh (no "extra" now).
    REQUIRE(s.ensure_tree(p).ok());
    CHECK(s.object_bytes(ObjectKind::tree, p) == tree_bytes);

    r = s.evict(ObjectKind::blob, p);
    REQUIRE(r.ok());
    CHECK(r.bytes == blob_bytes);
    CHECK_FALSE(s.has_blob(p));
    CHECK(s.has_tree(p)); // a tree stands without its blob
    r = s.remove_tree(p);
    REQUIRE(r.ok());
    CHECK(r.bytes == tree_bytes);
    CHECK(s.list_cache().empty());
    CHECK(names_in(t.path + "/state/tmp").empty());
    CHECK(s.evict(ObjectKind::blob, "../x").status == StoreStatus::invalid_digest);
}

TEST_CASE("evict measures an object whose size was never asked", "[store_gc][store]") {
    TempDir t;
    std::string p;
    std::uint64_t tree_bytes = 0, blob_bytes = 0;
    {
        Store s(t.path + "/state", fast());
        REQUIRE(s.open().ok());
        p = add_pex(s, t.path, 21);
        REQUIRE(s.ensure_tree(p).ok());
        tree_bytes = s.tree_usage(p).allocated;
        blob_bytes = s.blob_usage(p).allocated;
    }
    Store s(t.path + "/state", fast()); // empty size cache
    REQUIRE(s.open().ok());
    StoreResult r = s.evict(ObjectKind::tree, p);
    REQUIRE(r.ok());
    CHECK(r.bytes == tree_bytes);
    r = s.evict(ObjectKind::blob, p);
    REQUIRE(r.ok());
    CHECK(r.bytes == blob_bytes);
    CHECK(s.list_cache().empty());
}

TEST_CASE("GC methods run concurrently", "[store_gc][store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    std::vector<std::string> pexes;
    for (unsigned i = 0; i < 4; ++i)
        pexes.push_back(add_pex(s, t.path, 100 + 2 * i));

    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (unsigned k = 0; k < 6; ++k) {
        threads.emplace_back([&, k] {
            for (int round = 0; round < 30; ++round) {
                const std::string& h = pexes[(k + static_cast<unsigned>(round)) % pexes.size()];
                StoreResult r;
                switch ((k + static_cast<unsigned>(round)) % 4) {
                case 0:
                    r = s.ensure_tree(h);
                    break;
                case 1:
                    r = s.evict(ObjectKind::tree, h);
                    break;
                case 2:
                    r = s.touch(ObjectKind::tree, h);
                    if (r.status == StoreStatus::not_found) r = StoreResult{};
                    break;
                default:
                    for (const CacheEntry& e : s.list_cache()) {
                        if (e.bytes == 0) ++failures;
                    }
                    (void)s.object_bytes(ObjectKind::tree, h);
                    break;
                }
                if (!r.ok()) ++failures;
            }
        });
    }
    for (auto& th : threads)
        th.join();
    CHECK(failures.load() == 0);
    CHECK(names_in(t.path + "/state/tmp").empty());
    // Whatever survived is complete and measured like a fresh walk.
    for (const CacheEntry& e : s.list_cache()) {
        if (e.kind == ObjectKind::tree) CHECK(e.bytes == s.tree_usage(e.sha256).allocated);
    }
}

// ---------------------------------------------------------------------------
// Disk full

TEST_CASE("a full disk is no_space and leaves tmp/ empty", "[store_gc][store]") {
    TempDir t;
    SmallTmpfs mnt(t.path + "/mnt", "1m");
    REQUIRE_TMPFS(mnt);
    const std::string state = mnt.dir + "/state";
    Store s(state, fast());
    REQUIRE(s.open().ok());

    SECTION("import_file") {
        const std::string big = random_bytes(4 << 20, 9);
        const std::string src = t.path + "/big.pex";
        write_file(src, big);
        StoreResult r = s.import_file(src, sha256_hex(big));
        INFO(r.error);
        CHECK(r.status == StoreStatus::no_space);
        CHECK(r.sys_errno == ENOSPC);
        CHECK(r.error.find(state + "/tmp/") != std::string::npos);
        CHECK(std::string(store_status_name(r.status)) == "no_space");
        CHECK(names_in(state + "/tmp").empty());
        CHECK(s.list_blobs().empty());
        // The space came back: a small import works.
        CHECK(add_blob(s, t.path, "small").size() == 64);
    }
    SECTION("BlobWriter") {
        BlobWriter w = s.begin_blob();
        REQUIRE(w.ok());
        const std::string chunk = random_bytes(64 << 10, 4);
        bool failed = false;
        for (int i = 0; i < 64 && !failed; ++i)
            failed = !w.write(chunk.data(), chunk.size());
        REQUIRE(failed);
        CHECK(w.sys_errno() == ENOSPC);
        CHECK(w.failure_status() == StoreStatus::no_space);
        CHECK(names_in(state + "/tmp").empty()); // deleted at the failed write
        StoreResult r = w.commit(std::string(64, 'a'), "https://example.invalid/x.pex");
        CHECK(r.status == StoreStatus::no_space);
        CHECK(r.error.find(state + "/tmp/") != std::string::npos);
        CHECK(names_in(state + "/tmp").empty());
    }
    SECTION("ensure_tree extraction") {
        // 4 MiB of zeros deflates to a few kB: the blob fits, its tree cannot.
        const std::string pex =
            "#!/usr/bin/env python3\n" +
            make_zip(t.path + "/z.zip",
                     {{"__main__.py", "x"}, {"big.bin", std::string(4 << 20, '\0')}}, false);
        const std::string hex = add_blob(s, t.path, pex);
        ExtractLimits lim;
        lim.max_ratio = 1e9;
        StoreResult r = s.ensure_tree(hex, lim);
        INFO(r.error);
        CHECK(r.status == StoreStatus::no_space);
        CHECK(r.sys_errno == ENOSPC);
        CHECK(r.error.find(hex) != std::string::npos);
        CHECK(names_in(state + "/tmp").empty());
        CHECK(names_in(state + "/trees/sha256").empty());
    }
    SECTION("ensure_tree wheel unpacking") {
        const std::string wheel = make_zip(
            t.path + "/w.zip",
            {{"pkg/__init__.py", "x"}, {"pkg/data.bin", std::string(4 << 20, '\0')}}, false);
        const std::string pex =
            make_zip(t.path + "/p.zip", {{".deps/pkg-1.0-py3-none-any.whl", wheel}}, true);
        const std::string hex = add_blob(s, t.path, pex);
        ExtractLimits lim;
        lim.max_ratio = 1e9;
        StoreResult r = s.ensure_tree(hex, lim);
        INFO(r.error);
        CHECK(r.status == StoreStatus::no_space);
        CHECK(r.sys_errno == ENOSPC);
        CHECK(r.error.find("pkg-1.0-py3-none-any.whl") != std::string::npos);
        CHECK(names_in(state + "/tmp").empty());
        CHECK(names_in(state + "/trees/sha256").empty());
    }
}
