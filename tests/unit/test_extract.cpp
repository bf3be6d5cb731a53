#include "small_tmpfs.hpp"
#include "store/extract.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace hearth;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/hearth-extract-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { (void)remove_all(path); }
};

// A minimal zip writer (stored entries only) that writes whatever it is told:
// hostile names, any mode, wrong CRCs, lying sizes. Offsets are relative to
// the start of the zip, as in a pex whose shebang line was prepended.
struct ZEntry {
    std::string name;
    std::string data;
    std::uint32_t mode = 0100644;
    bool bad_crc = false;
    std::int64_t declared_size = -1; // uncompressed size to claim; -1: the truth
    std::uint32_t method = 0;        // 8: `data` is raw deflate of `plain`
    std::string plain;               // the uncompressed bytes when method == 8
};

std::uint32_t crc32(const std::string& s) {
    std::uint32_t c = 0xffffffffu;
    for (unsigned char ch : s) {
        c ^= ch;
        for (int k = 0; k < 8; ++k)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

void put16(std::string& o, std::uint32_t v) {
    o += static_cast<char>(v & 0xff);
    o += static_cast<char>((v >> 8) & 0xff);
}
void put32(std::string& o, std::uint32_t v) {
    put16(o, v & 0xffff);
    put16(o, v >> 16);
}

std::string make_zip(const std::vector<ZEntry>& entries, const std::string& prefix = "") {
    std::string body, central;
    for (const ZEntry& e : entries) {
        const std::uint32_t offset = static_cast<std::uint32_t>(body.size());
        const std::string& plain = e.method == 8 ? e.plain : e.data;
        const std::uint32_t crc = crc32(plain) ^ (e.bad_crc ? 0x5a5a5a5au : 0u);
        const auto csize = static_cast<std::uint32_t>(e.data.size());
        const auto usize =
            static_cast<std::uint32_t>(e.declared_size >= 0 ? e.declared_size : plain.size());
        auto common = [&](std::string& o) {
            put16(o, 20);     // version needed
            put16(o, 0x0800); // flags: UTF-8 names
            put16(o, e.method);
            put16(o, 0);    // time
            put16(o, 0x21); // date 1980-01-01
            put32(o, crc);
            put32(o, csize);
            put32(o, usize);
            put16(o, static_cast<std::uint32_t>(e.name.size()));
            put16(o, 0); // extra length
        };
        put32(body, 0x04034b50);
        common(body);
        body += e.name;
        body += e.data;

        put32(central, 0x02014b50);
        put16(central, (3u << 8) | 20u); // made by: unix
        common(central);
        put16(central, 0); // comment length
        put16(central, 0); // disk
        put16(central, 0); // internal attributes
        put32(central, e.mode << 16);
        put32(central, offset);
        central += e.name;
    }
    std::string eocd;
    put32(eocd, 0x06054b50);
    put16(eocd, 0);
    put16(eocd, 0);
    put16(eocd, static_cast<std::uint32_t>(entries.size()));
    put16(eocd, static_cast<std::uint32_t>(entries.size()));
    put32(eocd, static_cast<std::uint32_t>(central.size()));
    put32(eocd, static_cast<std::uint32_t>(body.size()));
    put16(eocd, 0);
    return prefix + body + central + eocd;
}

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

// Deflated zip through libarchive's own writer (for ratio tests).
void write_deflated_zip(const std::string& path,
                        const std::vector<std::pair<std::string, std::string>>& files) {
    struct archive* a = archive_write_new();
    REQUIRE(archive_write_set_format_zip(a) == ARCHIVE_OK);
    REQUIRE(archive_write_zip_set_compression_deflate(a) == ARCHIVE_OK);
    REQUIRE(archive_write_open_filename(a, path.c_str()) == ARCHIVE_OK);
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
}

std::uint32_t get16(const std::string& s, std::size_t at) {
    return static_cast<unsigned char>(s[at]) | static_cast<unsigned char>(s[at + 1]) << 8;
}
std::uint32_t get32(const std::string& s, std::size_t at) {
    return get16(s, at) | get16(s, at + 2) << 16;
}

// Raw deflate bytes for `plain`, taken out of a zip libarchive wrote.
std::string deflate_raw(const std::string& scratch, const std::string& plain) {
    write_deflated_zip(scratch, {{"x", plain}});
    std::ifstream f(scratch, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string z = ss.str();
    const std::size_t eocd = z.rfind(std::string("PK\x05\x06", 4));
    REQUIRE(eocd != std::string::npos);
    const std::size_t cd = get32(z, eocd + 16);
    REQUIRE(get32(z, cd) == 0x02014b50u);
    REQUIRE(get16(z, cd + 10) == 8);
    const std::size_t csize = get32(z, cd + 20);
    const std::size_t local = get32(z, cd + 42);
    const std::size_t data = local + 30 + get16(z, local + 26) + get16(z, local + 28);
    return z.substr(data, csize);
}

// Everything below `dir`, relative, symlinks not followed.
std::set<std::string> listing(const std::string& dir) {
    std::set<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
        out.insert(fs::relative(it->path(), dir).string());
    }
    return out;
}

mode_t mode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    return st.st_mode;
}

// Extracts `zip` (bytes) in a fresh scratch dir and expects a refusal naming
// `entry`; checks that nothing at all was left in the scratch dir (so nothing
// was written outside the destination, and no partial tree remains).
ExtractResult expect_refused(const std::string& zip, const std::string& entry,
                             const ExtractLimits& limits = {}, unsigned threads = 1) {
    TempDir t;
    const std::string archive = t.path + "/a.zip";
    write_file(archive, zip);
    ExtractResult r = extract_zip(archive, t.path + "/out", limits, threads);
    INFO("error: " << r.error);
    CHECK_FALSE(r.ok());
    CHECK(r.entry == entry);
    CHECK(r.error.find("'" + entry + "'") != std::string::npos);
    CHECK(listing(t.path) == std::set<std::string>{"a.zip"});
    return r;
}

} // namespace

TEST_CASE("check_entry_name", "[extract]") {
    CHECK(check_entry_name("a/b/c.py").empty());
    CHECK(check_entry_name("./a//b/").empty());
    CHECK(check_entry_name("a/..b/c..").empty());
    CHECK(check_entry_name("").find("empty") != std::string::npos);
    CHECK(check_entry_name("./").find("empty") != std::string::npos);
    CHECK(check_entry_name("/etc/passwd").find("absolute") != std::string::npos);
    CHECK(check_entry_name("a/../b").find("..") != std::string::npos);
    CHECK(check_entry_name("..").find("..") != std::string::npos);
    CHECK(check_entry_name("a/b/c/d", 3).find("components") != std::string::npos);
    CHECK(check_entry_name(std::string(300, 'x')).find("longer") != std::string::npos);
}

TEST_CASE("a pex-like zip with a shebang prefix extracts", "[extract]") {
    TempDir t;
    const std::string archive = t.path + "/app.pex";
    write_file(archive, make_zip({{"PEX-INFO", "{\"entry_point\": \"app.main\"}"},
                                  {"__main__.py", "print('boot')\n", 0100755},
                                  {"app/", "", 040755},
                                  {"app/__init__.py", ""},
                                  {"app/main.py", "def main(): pass\n"},
                                  {"caf\xc3\xa9/data.txt", "utf-8 name"},
                                  {".deps/x/y/z.py", "deep implicit dirs"}},
                                 "#!/usr/bin/env python3\n"));
    const std::string out = t.path + "/out";
    ExtractResult r = extract_zip(archive, out);
    INFO(r.error);
    REQUIRE(r.ok());
    CHECK(r.entries == 7);
    CHECK(r.bytes == 27 + 14 + 17 + 10 + 18);
    CHECK(file_text(out + "/PEX-INFO") == "{\"entry_point\": \"app.main\"}");
    CHECK(file_text(out + "/app/main.py") == "def main(): pass\n");
    CHECK(file_text(out + "/caf\xc3\xa9/data.txt") == "utf-8 name");
    CHECK(file_text(out + "/.deps/x/y/z.py") == "deep implicit dirs");
    CHECK((mode_of(out + "/__main__.py") & 07777) == 0755);
    CHECK((mode_of(out + "/app/main.py") & 07777) == 0644);
    CHECK((mode_of(out + "/.deps/x") & 07777) == 0755);
    CHECK(listing(out).size() == 11);

    // The destination must not exist yet, and an existing one is left alone.
    r = extract_zip(archive, out);
    CHECK(r.code == ExtractError::io);
    CHECK(file_text(out + "/app/main.py") == "def main(): pass\n");
}

TEST_CASE("destination failures carry their errno", "[extract]") {
    // The store tells a full disk (ENOSPC, EDQUOT: no_space) from other I/O
    // errors by this errno, never by the message text (store_enospc.sh
    // covers ENOSPC on a real tmpfs).
    TempDir t;
    const std::string archive = t.path + "/a.zip";
    write_file(archive, make_zip({{"a.txt", "x"}}));
    ExtractResult missing_parent = extract_zip(archive, t.path + "/no/such/out");
    CHECK(missing_parent.code == ExtractError::io);
    CHECK(missing_parent.sys_errno == ENOENT);
    ::mkdir((t.path + "/exists").c_str(), 0755);
    ExtractResult exists = extract_zip(archive, t.path + "/exists");
    CHECK(exists.code == ExtractError::io);
    CHECK(exists.sys_errno == EEXIST);
    ExtractResult no_archive = extract_zip(t.path + "/none.zip", t.path + "/out");
    CHECK(no_archive.sys_errno == ENOENT);
    ExtractResult ok = extract_zip(archive, t.path + "/out");
    REQUIRE(ok.ok());
    CHECK(ok.sys_errno == 0);
}

TEST_CASE("modes: exec bits kept, setuid/setgid/sticky stripped", "[extract]") {
    TempDir t;
    const std::string archive = t.path + "/a.zip";
    write_file(archive, make_zip({{"plain", "x", 0100600},
                                  {"tool", "x", 0100700},
                                  {"suid", "x", 0104755},
                                  {"sgid", "x", 0102711},
                                  {"sticky", "x", 0101666},
                                  {"odd", "x", 0100001},
                                  {"d/", "", 041777}}));
    SECTION("writable") {
        const std::string out = t.path + "/out";
        ExtractResult r = extract_zip(archive, out);
        REQUIRE(r.ok());
        CHECK((mode_of(out + "/plain") & 07777) == 0644);
        CHECK((mode_of(out + "/tool") & 07777) == 0755);
        CHECK((mode_of(out + "/suid") & 07777) == 0755);
        CHECK((mode_of(out + "/sgid") & 07777) == 0755);
        CHECK((mode_of(out + "/sticky") & 07777) == 0644);
        CHECK((mode_of(out + "/odd") & 07777) == 0755);
        CHECK((mode_of(out + "/d") & 07777) == 0755);
        CHECK((mode_of(out) & 07777) == 0755);
    }
    SECTION("read-only") {
        const std::string out = t.path + "/ro";
        ExtractOptions o;
        o.read_only = true;
        ExtractResult r = extract_zip(archive, out, {}, 1, o);
        REQUIRE(r.ok());
        CHECK((mode_of(out + "/plain") & 07777) == 0444);
        CHECK((mode_of(out + "/suid") & 07777) == 0555);
        CHECK((mode_of(out + "/d") & 07777) == 0555);
        CHECK((mode_of(out) & 07777) == 0755); // the caller seals the root
        REQUIRE(remove_all(out).ok());
        CHECK_FALSE(fs::exists(out));
    }
}

TEST_CASE("unsafe names are refused, naming the entry", "[extract]") {
    TempDir t;
    const std::string abs_target = t.path + "/abs-victim";
    SECTION("absolute path") {
        auto r = expect_refused(make_zip({{"ok.txt", "x"}, {abs_target, "pwned"}}), abs_target);
        CHECK(r.code == ExtractError::unsafe_entry);
        CHECK(r.error.find("absolute") != std::string::npos);
        CHECK_FALSE(fs::exists(abs_target));
    }
    SECTION("dot-dot") {
        auto r = expect_refused(make_zip({{"a/../../evil", "pwned"}}), "a/../../evil");
        CHECK(r.code == ExtractError::unsafe_entry);
        CHECK(r.error.find("..") != std::string::npos);
    }
    SECTION("dot-dot alone, as a directory") {
        expect_refused(make_zip({{"../", "", 040755}}), "../");
    }
    SECTION("empty name") {
        auto r = expect_refused(make_zip({{"fine", "x"}, {"", "x"}}), "");
        CHECK(r.error.find("empty") != std::string::npos);
    }
    SECTION("too deep") {
        ExtractLimits lim;
        lim.max_depth = 4;
        auto r = expect_refused(make_zip({{"a/b/c/d/e", "x"}}), "a/b/c/d/e", lim);
        CHECK(r.code == ExtractError::limit);
    }
}

TEST_CASE("links that leave the tree are refused", "[extract]") {
    TempDir t;
    SECTION("absolute symlink") {
        auto r = expect_refused(make_zip({{"etc", "/etc", 0120777}}), "etc");
        CHECK(r.error.find("absolute") != std::string::npos);
    }
    SECTION("relative symlink climbing out") {
        auto r = expect_refused(make_zip({{"sub/", "", 040755}, {"sub/up", "../../x", 0120777}}),
                                "sub/up");
        CHECK(r.error.find("leaves") != std::string::npos);
    }
    SECTION("escape through another link that looks harmless lexically") {
        // a/b/c/root -> ../../.. is the tree root (fine); m -> a/b/c/root/..
        // is lexically a/b but really the parent of the tree.
        expect_refused(make_zip({{"a/b/c/root", "../../..", 0120777},
                                 {"m", "a/b/c/root/../outside", 0120777}}),
                       "m");
    }
    SECTION("symlink loop") {
        auto r = expect_refused(make_zip({{"x", "y/z", 0120777}, {"y", "x/w", 0120777}}), "x");
        CHECK(r.error.find("levels") != std::string::npos);
    }
    SECTION("write through a symlink planted by an earlier entry") {
        auto r = expect_refused(
            make_zip(
                {{"inner/", "", 040755}, {"link", "inner", 0120777}, {"link/file", "via link"}}),
            "link/file");
        CHECK(r.error.find("symlink") != std::string::npos);
    }
    SECTION("link planted over a directory already used") {
        expect_refused(make_zip({{"dir/file", "x"}, {"dir", ".", 0120777}}), "dir");
    }
}

TEST_CASE("symlinks inside the tree are created last and intact", "[extract]") {
    TempDir t;
    const std::string archive = t.path + "/a.zip";
    write_file(archive, make_zip({{"bin/tool", "../lib/tool.py", 0120777},
                                  {"lib/tool.py", "print(1)\n"},
                                  {"self", ".", 0120777},
                                  {"lib/dangling", "missing/file", 0120777}}));
    const std::string out = t.path + "/out";
    ExtractResult r = extract_zip(archive, out);
    INFO(r.error);
    REQUIRE(r.ok());
    CHECK(fs::is_symlink(out + "/bin/tool"));
    CHECK(fs::read_symlink(out + "/bin/tool") == "../lib/tool.py");
    CHECK(file_text(out + "/bin/tool") == "print(1)\n");
    CHECK(fs::read_symlink(out + "/self") == ".");
    CHECK(fs::is_symlink(out + "/lib/dangling"));
}

TEST_CASE("special files and type-changing duplicates are refused", "[extract]") {
    TempDir t;
    SECTION("character device") {
        auto r = expect_refused(make_zip({{"dev/null", "", 0020666}}), "dev/null");
        CHECK(r.error.find("device") != std::string::npos);
    }
    SECTION("block device") {
        expect_refused(make_zip({{"sda", "", 0060660}}), "sda");
    }
    SECTION("socket") {
        auto r = expect_refused(make_zip({{"sock", "", 0140755}}), "sock");
        CHECK(r.error.find("socket") != std::string::npos);
    }
    SECTION("file replaced by a symlink") {
        auto r = expect_refused(make_zip({{"f", "data"}, {"f", "/etc/passwd", 0120777}}), "f");
        CHECK(r.error.find("duplicate") != std::string::npos);
    }
    SECTION("symlink replaced by a file") {
        expect_refused(make_zip({{"f", "target", 0120777}, {"f", "data"}}), "f");
    }
    SECTION("directory replaced by a file") {
        expect_refused(make_zip({{"d/x", "1"}, {"d", "data"}}), "d");
    }
    SECTION("file used as a directory") {
        auto r = expect_refused(make_zip({{"f", "data"}, {"f/x", "1"}}), "f/x");
        CHECK(r.error.find("regular file") != std::string::npos);
    }
}

TEST_CASE("a FIFO mode never produces a FIFO; duplicate files and dirs are fine", "[extract]") {
    TempDir t;
    const std::string archive = t.path + "/a.zip";
    // libarchive turns Info-ZIP's FIFO mode into a regular file (a known
    // Info-ZIP quirk), so this either extracts a regular file or is refused.
    write_file(archive, make_zip({{"fifo", "", 0010644},
                                  {"d/", "", 040755},
                                  {"d/", "", 040755},
                                  {"f", "first"},
                                  {"f", "second"}}));
    const std::string out = t.path + "/out";
    ExtractResult r = extract_zip(archive, out);
    if (r.ok()) {
        CHECK(S_ISREG(mode_of(out + "/fifo")));
        CHECK(file_text(out + "/f") == "second");
    } else {
        CHECK(r.entry == "fifo");
        CHECK_FALSE(fs::exists(out));
    }
}

TEST_CASE("entry, byte and ratio limits", "[extract]") {
    TempDir t;
    SECTION("too many entries") {
        ExtractLimits lim;
        lim.max_entries = 3;
        auto r =
            expect_refused(make_zip({{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}}), "d", lim);
        CHECK(r.code == ExtractError::limit);
    }
    SECTION("too many bytes (honest headers)") {
        ExtractLimits lim;
        lim.max_bytes = 1000;
        auto r = expect_refused(
            make_zip({{"a", std::string(600, 'a')}, {"b", std::string(600, 'b')}}), "b", lim);
        CHECK(r.code == ExtractError::limit);
    }
    SECTION("too many bytes behind a lying header") {
        // Headers claim 10 bytes; 300 KiB follow. The count on real output
        // trips before libarchive's end-of-entry size check would.
        ExtractLimits lim;
        lim.max_bytes = 64 << 10;
        ZEntry e{"liar", std::string(300 << 10, 'z')};
        e.declared_size = 10;
        auto r = expect_refused(make_zip({e}), "liar", lim);
        CHECK(r.code == ExtractError::limit);
    }
    SECTION("compression ratio") {
        const std::string archive = t.path + "/bomb.zip";
        write_deflated_zip(archive, {{"small-zeros", std::string(512 << 10, '\0')},
                                     {"bomb", std::string(8 << 20, '\0')}});
        ExtractResult r = extract_zip(archive, t.path + "/out");
        CHECK(r.code == ExtractError::limit);
        CHECK(r.entry == "bomb");
        CHECK(r.error.find("ratio") != std::string::npos);
        CHECK_FALSE(fs::exists(t.path + "/out"));

        // Headers that understate the size: the plan cannot see the bomb,
        // the count on the bytes inflate really produces does.
        ZEntry liar{"liar", deflate_raw(t.path + "/scratch.zip", std::string(8 << 20, '\0'))};
        liar.method = 8;
        liar.plain = std::string(8 << 20, '\0');
        liar.declared_size = 100;
        r = expect_refused(make_zip({liar}), "liar");
        CHECK(r.code == ExtractError::limit);
        CHECK(r.error.find("ratio") != std::string::npos);

        // A deflated entry built the same way but honest extracts.
        ZEntry honest{"text", deflate_raw(t.path + "/scratch2.zip", std::string(5000, 'q'))};
        honest.method = 8;
        honest.plain = std::string(5000, 'q');
        write_file(t.path + "/honest.zip", make_zip({honest}));
        r = extract_zip(t.path + "/honest.zip", t.path + "/honest");
        INFO(r.error);
        CHECK(r.ok());
        CHECK(file_text(t.path + "/honest/text") == honest.plain);

        // The same archive passes with a looser bound; the small entry is
        // exempt either way (below ratio_min_size).
        ExtractLimits lim;
        lim.max_ratio = 5000;
        r = extract_zip(archive, t.path + "/out2", lim);
        INFO(r.error);
        CHECK(r.ok());
        CHECK(fs::file_size(t.path + "/out2/bomb") == (8u << 20));
    }
}

TEST_CASE("truncated and corrupt archives are errors, never partial trees", "[extract]") {
    TempDir t;
    std::vector<ZEntry> entries;
    for (int i = 0; i < 20; ++i) {
        entries.push_back(
            {"f" + std::to_string(i), std::string(1000 + i, static_cast<char>('a' + i))});
    }
    const std::string good = make_zip(entries, "#!/usr/bin/python3\n");
    const std::string archive = t.path + "/a.zip";
    const std::string out = t.path + "/out";

    SECTION("truncated") {
        for (std::size_t cut : {good.size() / 2, good.size() - 10, std::size_t(30)}) {
            write_file(archive, good.substr(0, cut));
            ExtractResult r = extract_zip(archive, out);
            INFO("cut at " << cut << ": " << r.error);
            CHECK(r.code == ExtractError::corrupt);
            CHECK_FALSE(fs::exists(out));
        }
    }
    SECTION("not a zip at all") {
        write_file(archive, "#!/bin/sh\necho hello\n");
        ExtractResult r = extract_zip(archive, out);
        CHECK(r.code == ExtractError::corrupt);
        CHECK_FALSE(fs::exists(out));
    }
    SECTION("CRC in the headers does not match the data") {
        entries[13].bad_crc = true;
        write_file(archive, make_zip(entries));
        ExtractResult r = extract_zip(archive, out);
        CHECK(r.code == ExtractError::corrupt);
        CHECK(r.entry == "f13");
        CHECK(r.error.find("CRC") != std::string::npos);
        CHECK_FALSE(fs::exists(out));
    }
    SECTION("a flipped data byte") {
        std::string bad = good;
        const std::size_t at = bad.find(std::string(1007, 'h')); // f7's data
        REQUIRE(at != std::string::npos);
        bad[at + 500] = 'X';
        write_file(archive, bad);
        ExtractResult r = extract_zip(archive, out);
        CHECK(r.code == ExtractError::corrupt);
        CHECK(r.entry == "f7");
        CHECK_FALSE(fs::exists(out));
    }
    SECTION("the same archive intact extracts") {
        write_file(archive, good);
        ExtractResult r = extract_zip(archive, out);
        REQUIRE(r.ok());
        CHECK(file_text(out + "/f19") == std::string(1019, 't'));
    }
}

TEST_CASE("parallel readers produce the same tree as one reader", "[extract]") {
    TempDir t;
    std::vector<ZEntry> entries;
    for (int i = 0; i < 1200; ++i) {
        std::string name = "pkg" + std::to_string(i % 17) + "/m" + std::to_string(i) + ".py";
        std::string data(static_cast<std::size_t>(100 + (i * 7919) % 20000), '\0');
        for (std::size_t k = 0; k < data.size(); ++k)
            data[k] = static_cast<char>('a' + (k * i) % 26);
        entries.push_back({name, data, i % 10 == 0 ? 0100755u : 0100644u});
    }
    entries.push_back({"link", "pkg3", 0120777});
    const std::string archive = t.path + "/a.zip";
    write_file(archive, make_zip(entries, "#!/usr/bin/env python3\n"));

    ExtractResult one = extract_zip(archive, t.path + "/one", {}, 1);
    REQUIRE(one.ok());
    for (auto split : {ExtractOptions::Split::contiguous, ExtractOptions::Split::interleaved}) {
        for (unsigned n : {2u, 4u}) {
            ExtractOptions o;
            o.split = split;
            const std::string out = t.path + "/par" + std::to_string(n) +
                                    (split == ExtractOptions::Split::contiguous ? "c" : "i");
            ExtractResult r = extract_zip(archive, out, {}, n, o);
            INFO(out << ": " << r.error);
            REQUIRE(r.ok());
            CHECK(r.bytes == one.bytes);
            CHECK(r.entries == one.entries);
            CHECK(listing(out) == listing(t.path + "/one"));
            for (int i : {0, 1, 599, 600, 1199}) {
                const std::string& name = entries[static_cast<std::size_t>(i)].name;
                CHECK(file_text(out + "/" + name) == entries[static_cast<std::size_t>(i)].data);
                CHECK((mode_of(out + "/" + name) & 0777) == (i % 10 == 0 ? 0755u : 0644u));
            }
            CHECK(fs::read_symlink(out + "/link") == "pkg3");
        }
    }

    // A corrupt entry late in the archive fails the parallel run as a whole.
    entries[1100].bad_crc = true;
    write_file(archive, make_zip(entries));
    ExtractResult r = extract_zip(archive, t.path + "/bad", {}, 4);
    CHECK(r.code == ExtractError::corrupt);
    CHECK(r.entry == entries[1100].name);
    CHECK_FALSE(fs::exists(t.path + "/bad"));
}

TEST_CASE("remove_all handles read-only trees and does not follow links", "[extract]") {
    TempDir t;
    const std::string keep = t.path + "/keep";
    REQUIRE(::mkdir(keep.c_str(), 0755) == 0);
    write_file(keep + "/precious", "x");
    const std::string victim = t.path + "/victim";
    REQUIRE(::mkdir(victim.c_str(), 0755) == 0);
    REQUIRE(::mkdir((victim + "/sub").c_str(), 0755) == 0);
    write_file(victim + "/sub/f", "y");
    REQUIRE(::symlink(keep.c_str(), (victim + "/sub/to-keep").c_str()) == 0);
    REQUIRE(::chmod((victim + "/sub/f").c_str(), 0444) == 0);
    REQUIRE(::chmod((victim + "/sub").c_str(), 0555) == 0);
    REQUIRE(::chmod(victim.c_str(), 0555) == 0);
    CHECK(remove_all(victim).ok());
    CHECK_FALSE(fs::exists(victim));
    CHECK(file_text(keep + "/precious") == "x");
    CHECK(remove_all(victim).ok()); // missing is fine
}

TEST_CASE("the caller's byte budget is no_space, the archive's byte limit is limit", "[extract]") {
    const std::string two = make_zip({{"a", std::string(600, 'a')}, {"b", std::string(600, 'b')}});
    ZEntry liar{"liar", std::string(300 << 10, 'z')};
    liar.declared_size = 10;
    const std::string lying = make_zip({liar});

    SECTION("over the budget, by the headers") {
        ExtractLimits lim;
        lim.budget_bytes = 1000;
        auto r = expect_refused(two, "b", lim);
        CHECK(r.code == ExtractError::no_space);
        CHECK(r.sys_errno == 0);
        CHECK(r.error.find("budget of 1000 bytes") != std::string::npos);
    }
    SECTION("over the budget, by the bytes produced") {
        ExtractLimits lim;
        lim.budget_bytes = 64 << 10;
        auto r = expect_refused(lying, "liar", lim);
        CHECK(r.code == ExtractError::no_space);
        CHECK(r.sys_errno == 0);
    }
    SECTION("the smaller cap decides") {
        ExtractLimits lim;
        lim.max_bytes = 1000;
        lim.budget_bytes = 2000;
        CHECK(expect_refused(two, "b", lim).code == ExtractError::limit);
        CHECK(expect_refused(lying, "liar", lim).code == ExtractError::limit);
        lim.max_bytes = 2000;
        lim.budget_bytes = 1000;
        CHECK(expect_refused(two, "b", lim).code == ExtractError::no_space);
        CHECK(expect_refused(lying, "liar", lim).code == ExtractError::no_space);
    }
    SECTION("equal caps: the archive does not fit") {
        ExtractLimits lim;
        lim.max_bytes = 1000;
        lim.budget_bytes = 1000;
        CHECK(expect_refused(two, "b", lim).code == ExtractError::no_space);
    }
    SECTION("within both") {
        TempDir t;
        write_file(t.path + "/a.zip", two);
        ExtractLimits lim;
        lim.max_bytes = 1200;
        lim.budget_bytes = 1200;
        ExtractResult r = extract_zip(t.path + "/a.zip", t.path + "/out", lim);
        INFO(r.error);
        CHECK(r.ok());
        CHECK(r.bytes == 1200);
    }
}

TEST_CASE("a full filesystem is no_space with ENOSPC", "[extract]") {
    TempDir t;
    const std::string archive = t.path + "/a.zip";
    write_file(archive, make_zip({{"small", "x"}, {"big", std::string(256 << 10, 'b')}}));
    SmallTmpfs disk(t.path + "/mnt", "64k");
    if (!disk.mounted()) {
        WARN(disk.error() << "; nothing to check");
        return;
    }
    for (unsigned threads : {1u, 4u}) {
        const std::string out = disk.path() + "/out" + std::to_string(threads);
        ExtractResult r = extract_zip(archive, out, {}, threads);
        INFO(r.error);
        CHECK(r.code == ExtractError::no_space);
        CHECK(r.sys_errno == ENOSPC);
        CHECK(r.entry == "big");
        CHECK_FALSE(fs::exists(out));
    }
}
