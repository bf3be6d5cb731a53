#include "small_tmpfs.hpp"
#include "store/extract.hpp"
#include "store/sha256.hpp"
#include "store/store.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <catch2/catch.hpp>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace hearth;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/hearth-store-XXXXXX";
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

// The file's content; the test fails when it cannot be read.
std::string file_text(const std::string& path) {
    auto text = hearth::read_file(path);
    REQUIRE(text.ok());
    return std::move(text).value();
}

struct File {
    std::string name;
    std::string data;
    unsigned perm = 0644;
};

// A zip built with libarchive's writer; `stored` as pex stores raw wheels.
std::string make_zip(const std::string& scratch, const std::vector<File>& files, bool stored,
                     const std::string& prefix = "") {
    struct archive* a = archive_write_new();
    REQUIRE(archive_write_set_format_zip(a) == ARCHIVE_OK);
    REQUIRE((stored ? archive_write_zip_set_compression_store(a)
                    : archive_write_zip_set_compression_deflate(a)) == ARCHIVE_OK);
    REQUIRE(archive_write_open_filename(a, scratch.c_str()) == ARCHIVE_OK);
    for (const File& f : files) {
        struct archive_entry* e = archive_entry_new();
        archive_entry_set_pathname(e, f.name.c_str());
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, f.perm);
        archive_entry_set_size(e, static_cast<la_int64_t>(f.data.size()));
        REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
        REQUIRE(archive_write_data(a, f.data.data(), f.data.size()) ==
                static_cast<la_ssize_t>(f.data.size()));
        archive_entry_free(e);
    }
    REQUIRE(archive_write_close(a) == ARCHIVE_OK);
    archive_write_free(a);
    std::string z = file_text(scratch);
    ::unlink(scratch.c_str());
    return prefix + z;
}

std::vector<std::string> names_in(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        out.push_back(e.path().filename().string());
    return out;
}

mode_t mode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    return st.st_mode;
}

// A pex (shebang + zip) whose .deps holds one raw wheel, plus its digest.
std::pair<std::string, std::string> pex_with_wheel(const std::string& dir) {
    const std::string wheel =
        make_zip(dir + "/w.zip",
                 {{"requests/__init__.py", "VERSION = '2.0'\n"},
                  {"requests-2.0.dist-info/RECORD", "requests/__init__.py,,\n"},
                  {"requests/cli.py", "#!/usr/bin/python3\n", 0755}},
                 false);
    const std::string pex = make_zip(dir + "/p.zip",
                                     {{"PEX-INFO", "{\"deps_are_wheel_files\": true}"},
                                      {"__main__.py", "import sys\n", 0755},
                                      {"app/main.py", "def main(): return 0\n"},
                                      {".deps/requests-2.0-py3-none-any.whl", wheel},
                                      {".deps/README.txt", "not a wheel"}},
                                     true, "#!/usr/bin/env python3\n");
    const std::string path = dir + "/app.pex";
    write_file(path, pex);
    return {path, sha256_hex(pex)};
}

StoreOptions fast() {
    StoreOptions o;
    o.sync = false;
    return o;
}

} // namespace

TEST_CASE("open creates the layout, locks, and sweeps tmp", "[store]") {
    TempDir t;
    const std::string state = t.path + "/state/nested";
    {
        Store s(state, fast());
        StoreResult r = s.open();
        INFO(r.error);
        REQUIRE(r.ok());
        CHECK(fs::is_directory(state + "/blobs/sha256"));
        CHECK(fs::is_directory(state + "/trees/sha256"));
        CHECK(fs::is_directory(state + "/tmp"));

        // A second store on the same directory is refused while this one lives.
        Store other(state, fast());
        StoreResult o = other.open();
        CHECK(o.status == StoreStatus::io_error);
        CHECK(o.error.find("in use") != std::string::npos);
    }
    // Leftovers of a crash: a file, a read-only half tree, a dangling link.
    write_file(state + "/tmp/blob-partial", "half a download");
    fs::create_directories(state + "/tmp/tree-x/a/b");
    write_file(state + "/tmp/tree-x/a/b/f", "x");
    REQUIRE(::chmod((state + "/tmp/tree-x/a/b/f").c_str(), 0444) == 0);
    REQUIRE(::chmod((state + "/tmp/tree-x/a/b").c_str(), 0555) == 0);
    REQUIRE(::chmod((state + "/tmp/tree-x/a").c_str(), 0555) == 0);
    REQUIRE(::symlink("/nonexistent", (state + "/tmp/link").c_str()) == 0);

    Store s(state + "/", fast());
    StoreResult r = s.open();
    INFO(r.error);
    REQUIRE(r.ok());
    CHECK(r.entries == 3);
    CHECK(names_in(state + "/tmp").empty());
    CHECK(s.state_dir() == state);
}

TEST_CASE("import_file verifies, publishes read-only, and hits the cache", "[store]") {
    TempDir t;
    Store s(t.path + "/state"); // sync on: exercise fsync
    REQUIRE(s.open().ok());
    const std::string src = t.path + "/deps.pex";
    const std::string content = "#!/usr/bin/env python3\n" + std::string(3 << 20, 'p');
    write_file(src, content);
    const std::string hex = sha256_hex(content);

    StoreResult r = s.import_file(src, hex);
    INFO(r.error);
    REQUIRE(r.ok());
    CHECK_FALSE(r.hit);
    CHECK(r.bytes == content.size());
    CHECK(r.path == t.path + "/state/blobs/sha256/" + hex);
    CHECK(s.has_blob(hex));
    CHECK(s.blob_path(hex) == r.path);
    CHECK(file_text(r.path) == content);
    CHECK((mode_of(r.path) & 07777) == 0444);
    CHECK(names_in(t.path + "/state/tmp").empty());

    // A copy, never a link: changing the source leaves the blob intact.
    struct stat a {
    }, b{};
    REQUIRE(::stat(src.c_str(), &a) == 0);
    REQUIRE(::stat(r.path.c_str(), &b) == 0);
    CHECK(a.st_ino != b.st_ino);
    write_file(src, "tampered");
    CHECK(file_text(r.path) == content);

    // Already present: ok at once, without reading the source at all.
    REQUIRE(::unlink(src.c_str()) == 0);
    r = s.import_file(src, hex);
    CHECK(r.ok());
    CHECK(r.hit);

    DiskUsage u = s.blob_usage(hex);
    CHECK(u.ok);
    CHECK(u.apparent == content.size());
    CHECK(u.allocated >= content.size());
    CHECK(s.list_blobs() == std::vector<std::string>{hex});

    REQUIRE(s.remove_blob(hex).ok());
    CHECK_FALSE(s.has_blob(hex));
    CHECK(s.remove_blob(hex).ok()); // missing is fine
}

TEST_CASE("import_file refuses a digest mismatch and bad input", "[store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    const std::string src = t.path + "/source.pex";
    write_file(src, "the real bytes");
    const std::string actual = sha256_hex("the real bytes");
    const std::string expected = sha256_hex("what the deploy promised");

    StoreResult r = s.import_file(src, expected);
    CHECK(r.status == StoreStatus::digest_mismatch);
    CHECK(r.error.find(expected) != std::string::npos);
    CHECK(r.error.find(actual) != std::string::npos);
    CHECK(r.error.find(src) != std::string::npos);
    CHECK(r.actual == actual);
    CHECK_FALSE(s.has_blob(expected));
    CHECK_FALSE(s.has_blob(actual));
    CHECK(names_in(t.path + "/state/tmp").empty());
    CHECK(names_in(t.path + "/state/blobs/sha256").empty());

    r = s.import_file(t.path + "/missing.pex", expected);
    CHECK(r.status == StoreStatus::not_found);
    CHECK(r.error.find("missing.pex") != std::string::npos);

    r = s.import_file(t.path, expected); // a directory
    CHECK(r.status == StoreStatus::io_error);

    // Bad digest strings never reach the filesystem.
    for (std::string bad :
         {std::string("../../../etc"), expected.substr(1), std::string(64, 'A'), std::string()}) {
        CHECK(s.import_file(src, bad).status == StoreStatus::invalid_digest);
        CHECK(s.ensure_tree(bad).status == StoreStatus::invalid_digest);
        CHECK(s.remove_tree(bad).status == StoreStatus::invalid_digest);
        CHECK(s.remove_blob(bad).status == StoreStatus::invalid_digest);
        CHECK(s.blob_path(bad).empty());
        CHECK(s.tree_path(bad).empty());
        CHECK_FALSE(s.has_blob(bad));
        CHECK_FALSE(s.tree_usage(bad).ok);
    }
    CHECK(names_in(t.path + "/state/tmp").empty());

    Store closed(t.path + "/other", fast());
    CHECK(closed.import_file(src, actual).status == StoreStatus::io_error);
}

TEST_CASE("import_file cleans up after a write error", "[store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    const std::string src = t.path + "/big.pex";
    const std::string content(256 << 10, 'b');
    write_file(src, content);

    // A file size limit makes write(2) fail with EFBIG, standing in for ENOSPC.
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 64 << 10;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    StoreResult r = s.import_file(src, sha256_hex(content));
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);

    CHECK(r.status == StoreStatus::io_error); // not every write error is a full disk
    CHECK(r.sys_errno == EFBIG);
    CHECK(r.error.find(t.path + "/state/tmp/") != std::string::npos);
    CHECK(r.error.find("too large") != std::string::npos);
    CHECK(names_in(t.path + "/state/tmp").empty());
    CHECK(s.list_blobs().empty());
}

TEST_CASE("BlobWriter streams, verifies and aborts", "[store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    const std::string hex = sha256_hex("abcdef");
    {
        BlobWriter w = s.begin_blob();
        REQUIRE(w.ok());
        CHECK(w.write("abc", 3));
        CHECK(w.write("def", 3));
        CHECK(w.size() == 6);
        StoreResult r = w.commit(hex, "https://example.invalid/app.pex");
        INFO(r.error);
        REQUIRE(r.ok());
        CHECK(file_text(s.blob_path(hex)) == "abcdef");
    }
    {
        BlobWriter w = s.begin_blob();
        REQUIRE(w.ok());
        CHECK(w.write("abc", 3));
        CHECK(names_in(t.path + "/state/tmp").size() == 1);
    } // dropped without commit
    CHECK(names_in(t.path + "/state/tmp").empty());
    {
        BlobWriter w = s.begin_blob();
        CHECK(w.write("abcdef", 6));
        StoreResult r = w.commit(hex, "again");
        CHECK(r.ok());
        CHECK(r.hit); // same bytes published earlier: kept, ours discarded
    }
    CHECK(names_in(t.path + "/state/tmp").empty());
}

TEST_CASE("ensure_tree extracts a pex and unpacks its raw wheels", "[store]") {
    TempDir t;
    Store s(t.path + "/state"); // sync on: exercise syncfs
    REQUIRE(s.open().ok());
    auto [pex, hex] = pex_with_wheel(t.path);

    StoreResult r = s.ensure_tree(hex);
    CHECK(r.status == StoreStatus::not_found); // blob not imported yet
    REQUIRE(s.import_file(pex, hex).ok());

    r = s.ensure_tree(hex);
    INFO(r.error);
    REQUIRE(r.ok());
    CHECK_FALSE(r.hit);
    const std::string tree = s.tree_path(hex);
    CHECK(r.path == tree);
    CHECK(r.entries == 5 + 3);
    CHECK(s.has_tree(hex));
    CHECK(file_text(tree + "/app/main.py") == "def main(): return 0\n");
    const std::string whl = tree + "/.hearth/wheels/requests-2.0-py3-none-any.whl";
    CHECK(file_text(whl + "/requests/__init__.py") == "VERSION = '2.0'\n");
    CHECK((mode_of(whl + "/requests/cli.py") & 07777) == 0555);
    CHECK(fs::is_regular_file(tree + "/.deps/requests-2.0-py3-none-any.whl")); // kept as is
    CHECK_FALSE(fs::exists(tree + "/.hearth/wheels/README.txt"));

    // Read-only throughout: no write bit anywhere, links aside.
    for (const auto& e : fs::recursive_directory_iterator(tree)) {
        INFO(e.path());
        CHECK((mode_of(e.path().string()) & 0222) == 0);
    }
    CHECK((mode_of(tree) & 07777) == 0555);
    CHECK(names_in(t.path + "/state/tmp").empty());

    r = s.ensure_tree(hex);
    CHECK(r.ok());
    CHECK(r.hit);

    DiskUsage u = s.tree_usage(hex);
    CHECK(u.ok);
    CHECK(u.entries > 10);
    CHECK(u.apparent > 0);
    CHECK(s.list_trees() == std::vector<std::string>{hex});

    REQUIRE(s.remove_tree(hex).ok());
    CHECK_FALSE(s.has_tree(hex));
    CHECK_FALSE(fs::exists(tree));
    CHECK(names_in(t.path + "/state/tmp").empty());
    CHECK(s.remove_tree(hex).ok());
    CHECK(s.has_blob(hex));
}

TEST_CASE("ensure_tree refuses bad archives and leaves nothing behind", "[store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());

    SECTION("not a zip") {
        const std::string src = t.path + "/junk.pex";
        write_file(src, "#!/bin/sh\nnot a zip\n");
        const std::string hex = sha256_hex("#!/bin/sh\nnot a zip\n");
        REQUIRE(s.import_file(src, hex).ok());
        StoreResult r = s.ensure_tree(hex);
        CHECK(r.status == StoreStatus::bad_archive);
        CHECK(r.error.find(hex) != std::string::npos);
    }
    SECTION("unsafe entry inside a raw wheel") {
        const std::string wheel = make_zip(t.path + "/w.zip", {{"../../escape.py", "x"}}, true);
        const std::string pex =
            make_zip(t.path + "/p.zip", {{".deps/evil-1.0-py3-none-any.whl", wheel}}, true);
        const std::string src = t.path + "/evil.pex";
        write_file(src, pex);
        const std::string hex = sha256_hex(pex);
        REQUIRE(s.import_file(src, hex).ok());
        StoreResult r = s.ensure_tree(hex);
        CHECK(r.status == StoreStatus::bad_archive);
        CHECK(r.entry.find("../../escape.py") != std::string::npos);
        CHECK(r.error.find("evil-1.0-py3-none-any.whl") != std::string::npos);
    }
    SECTION("wheels share the entry budget with the pex") {
        auto [pex, hex] = pex_with_wheel(t.path);
        REQUIRE(s.import_file(pex, hex).ok());
        ExtractLimits lim;
        lim.max_entries = 6; // 5 in the pex leaves 1 for a 3-entry wheel
        StoreResult r = s.ensure_tree(hex, lim);
        CHECK(r.status == StoreStatus::bad_archive);
        CHECK(r.error.find("more than 1 entries") != std::string::npos);
    }
    SECTION("a .hearth entry next to raw wheels") {
        const std::string wheel = make_zip(t.path + "/w.zip", {{"m.py", "x"}}, true);
        const std::string pex =
            make_zip(t.path + "/p.zip",
                     {{".hearth/wheels/x.whl/m.py", "planted"}, {".deps/x.whl", wheel}}, true);
        const std::string src = t.path + "/planted.pex";
        write_file(src, pex);
        const std::string hex = sha256_hex(pex);
        REQUIRE(s.import_file(src, hex).ok());
        StoreResult r = s.ensure_tree(hex);
        CHECK(r.status == StoreStatus::bad_archive);
        CHECK(r.entry == ".hearth");
    }
    CHECK(names_in(t.path + "/state/trees/sha256").empty());
    CHECK(names_in(t.path + "/state/tmp").empty());
}

TEST_CASE("concurrent ensure_tree on one digest yields one tree", "[store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    // Enough files that the four extractions overlap in time.
    std::vector<File> files;
    for (int i = 0; i < 400; ++i) {
        files.push_back({"pkg/m" + std::to_string(i) + ".py", std::string(2000, 'a' + i % 26)});
    }
    const std::string pex = make_zip(t.path + "/p.zip", files, false, "#!/usr/bin/env python3\n");
    const std::string src = t.path + "/app.pex";
    write_file(src, pex);
    const std::string hex = sha256_hex(pex);
    REQUIRE(s.import_file(src, hex).ok());

    std::vector<StoreResult> results(4);
    std::vector<std::thread> threads;
    for (std::size_t k = 0; k < results.size(); ++k) {
        threads.emplace_back([&, k] { results[k] = s.ensure_tree(hex, {}, 2); });
    }
    for (auto& th : threads)
        th.join();
    int fresh = 0;
    for (const StoreResult& r : results) {
        INFO(r.error);
        CHECK(r.ok());
        CHECK(r.path == s.tree_path(hex));
        if (!r.hit) ++fresh;
    }
    CHECK(fresh == 1);
    CHECK(s.list_trees() == std::vector<std::string>{hex});
    CHECK(names_in(s.tree_path(hex) + "/pkg").size() == 400);
    CHECK(names_in(t.path + "/state/tmp").empty());
}

TEST_CASE("open removes misnamed and mistyped entries under blobs/ and trees/", "[store]") {
    TempDir t;
    const std::string state = t.path + "/state";
    const std::string good = sha256_hex("good");
    const std::string other = sha256_hex("other");
    {
        Store s(state, fast());
        REQUIRE(s.open().ok());
        const std::string src = t.path + "/good";
        write_file(src, "good");
        REQUIRE(s.import_file(src, good).ok());
    }
    const std::string blobs = state + "/blobs/sha256/";
    const std::string trees = state + "/trees/sha256/";
    // A valid tree, made by hand (only its name and type matter to open()).
    fs::create_directories(trees + good + "/pkg");
    write_file(trees + good + "/pkg/m.py", "x");
    // Foreign: bad names, wrong types, links; one read-only directory.
    write_file(blobs + "notes.txt", "x");
    write_file(blobs + std::string(64, 'A'), "upper case");
    fs::create_directories(blobs + other + "/sub"); // a blob must be a file
    write_file(trees + other, "a tree must be a directory");
    REQUIRE(::symlink((trees + good).c_str(), (trees + sha256_hex("link")).c_str()) == 0);
    REQUIRE(::symlink("/etc/passwd", (blobs + sha256_hex("link")).c_str()) == 0);
    fs::create_directories(trees + "partial/a");
    write_file(trees + "partial/a/f", "x");
    REQUIRE(::chmod((trees + "partial/a").c_str(), 0555) == 0);
    write_file(state + "/tmp/leftover", "x");

    Store s(state, fast());
    StoreResult r = s.open();
    INFO(r.error);
    REQUIRE(r.ok());
    CHECK(r.entries == 1 + 7);
    CHECK(names_in(blobs) == std::vector<std::string>{good});
    CHECK(names_in(trees) == std::vector<std::string>{good});
    CHECK(file_text(s.tree_path(good) + "/pkg/m.py") == "x");
    CHECK(fs::exists("/etc/passwd")); // links removed, never followed
    CHECK(names_in(state + "/tmp").empty());
}

TEST_CASE("ensure_tree reports the caller's byte budget as no_space", "[store]") {
    TempDir t;
    Store s(t.path + "/state", fast());
    REQUIRE(s.open().ok());
    auto [pex, hex] = pex_with_wheel(t.path);
    REQUIRE(s.import_file(pex, hex).ok());
    // What the pex and its wheel need, measured by extracting once.
    StoreResult full = s.ensure_tree(hex);
    REQUIRE(full.ok());
    const std::uint64_t need = full.bytes;
    REQUIRE(s.remove_tree(hex).ok());

    const auto tree_with = [&](std::uint64_t max_bytes, std::uint64_t budget_bytes) {
        ExtractLimits lim;
        lim.max_bytes = max_bytes;
        lim.budget_bytes = budget_bytes;
        StoreResult r = s.ensure_tree(hex, lim);
        UNSCOPED_INFO(r.error);
        return r;
    };
    SECTION("the pex itself does not fit") {
        StoreResult r = tree_with(need, 10);
        CHECK(r.status == StoreStatus::no_space);
        CHECK(r.sys_errno == 0);
    }
    SECTION("the budget is shared with the raw wheels") {
        StoreResult r = tree_with(need, need - 1); // the pex fits, its wheel (last) does not
        CHECK(r.status == StoreStatus::no_space);
        CHECK(r.sys_errno == 0);
        CHECK(r.entry.rfind(".deps/requests-2.0-py3-none-any.whl", 0) == 0);
    }
    SECTION("the archive's own byte limit stays bad_archive") {
        StoreResult r = tree_with(need - 1, need * 2);
        CHECK(r.status == StoreStatus::bad_archive);
        CHECK(r.sys_errno == 0);
    }
    SECTION("exactly enough") {
        CHECK(tree_with(need, need).ok());
    }
    if (!s.has_tree(hex)) CHECK(names_in(t.path + "/state/trees/sha256").empty());
    CHECK(names_in(t.path + "/state/tmp").empty());
}

TEST_CASE("a full filesystem is no_space with ENOSPC for imports and trees", "[store]") {
    TempDir t;
    SmallTmpfs disk(t.path + "/mnt", "256k");
    if (!disk.mounted()) {
        WARN(disk.error() << "; nothing to check");
        return;
    }
    Store s(disk.path() + "/state", fast());
    REQUIRE(s.open().ok());

    SECTION("import") {
        const std::string big(512 << 10, 'i');
        write_file(t.path + "/big.pex", big);
        StoreResult r = s.import_file(t.path + "/big.pex", sha256_hex(big));
        INFO(r.error);
        CHECK(r.status == StoreStatus::no_space);
        CHECK(r.sys_errno == ENOSPC);
        CHECK(s.list_blobs().empty());
    }
    SECTION("extraction") {
        // Deflated: 1 MiB of one byte is a blob of about a kilobyte, which
        // fits, and a tree that does not.
        const std::string pex = make_zip(
            t.path + "/p.zip", {{"PEX-INFO", "{}"}, {"big.bin", std::string(1 << 20, 'z')}}, false,
            "#!/usr/bin/env python3\n");
        write_file(t.path + "/p.pex", pex);
        const std::string hex = sha256_hex(pex);
        REQUIRE(s.import_file(t.path + "/p.pex", hex).ok());
        ExtractLimits lim;
        lim.max_ratio = 1e9; // the point is the disk, not the ratio
        StoreResult r = s.ensure_tree(hex, lim);
        INFO(r.error);
        CHECK(r.status == StoreStatus::no_space);
        CHECK(r.sys_errno == ENOSPC);
        CHECK(r.entry == "big.bin");
        CHECK_FALSE(s.has_tree(hex));
    }
    CHECK(names_in(disk.path() + "/state/tmp").empty());
}
