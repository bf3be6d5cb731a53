// hearth-extract-bench: runs hearth's zip extraction once, for bench/extract.sh.
//
//   hearth-extract-bench [--threads N] [--store] [--sync] ARCHIVE DEST
//
// Default: extract_zip(ARCHIVE, DEST) with the options a store tree gets
// (read-only files, archive mtimes) and the default limits; DEST must not
// exist. --threads N: readers (default: the CPU count, as the daemon uses).
// --store: instead, DEST is a fresh state dir; the archive is imported as a
// blob first (not timed), then Store::ensure_tree() is timed: extraction,
// raw-wheel unpacking, sealing, publishing, and with --sync the syncfs a
// daemon's store does before publishing.
//
// Prints one line of JSON: {"seconds":S,"entries":N,"bytes":N,"threads":N}.
// Exit 0 on success, 1 on an extraction error (message on stderr), 2 on a
// usage error. The time is CLOCK_MONOTONIC around the call only; the script
// also times the whole process, as it does for bsdtar and unzip.

#include "store/extract.hpp"
#include "store/sha256.hpp"
#include "store/store.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

int usage() {
    std::fputs("usage: hearth-extract-bench [--threads N] [--store] [--sync] ARCHIVE DEST\n",
               stderr);
    return 2;
}

std::string file_sha256(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    hearth::Sha256 h;
    static char buf[1 << 20];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            ::close(fd);
            return {};
        }
        if (n == 0) break;
        h.update(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return h.finish_hex();
}

} // namespace

int main(int argc, char** argv) {
    unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    bool store_mode = false;
    bool sync = false;
    std::string archive, dest;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) {
            threads = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
            if (threads == 0) return usage();
        } else if (a == "--store") {
            store_mode = true;
        } else if (a == "--sync") {
            sync = true;
        } else if (!a.empty() && a[0] == '-') {
            return usage();
        } else if (archive.empty()) {
            archive = a;
        } else if (dest.empty()) {
            dest = a;
        } else {
            return usage();
        }
    }
    if (archive.empty() || dest.empty()) return usage();
    // As hearth does at start-up (main_hearth.cpp): without TZ, glibc stats
    // /etc/localtime for every mktime() libarchive makes per zip header.
    ::setenv("TZ", ":/etc/localtime", 0);

    double seconds = 0;
    std::uint64_t entries = 0, bytes = 0;
    if (!store_mode) {
        hearth::ExtractOptions opts;
        opts.read_only = true;
        auto t0 = std::chrono::steady_clock::now();
        hearth::ExtractResult r = hearth::extract_zip(archive, dest, {}, threads, opts);
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (!r.ok()) {
            std::fprintf(stderr, "hearth-extract-bench: %s\n", r.error.c_str());
            return 1;
        }
        entries = r.entries;
        bytes = r.bytes;
    } else {
        hearth::StoreOptions so;
        so.sync = sync;
        hearth::Store store(dest, so);
        hearth::StoreResult o = store.open();
        if (!o.ok()) {
            std::fprintf(stderr, "hearth-extract-bench: open %s: %s\n", dest.c_str(),
                         o.error.c_str());
            return 1;
        }
        std::string hex = file_sha256(archive);
        hearth::StoreResult imp = store.import_file(archive, hex);
        if (hex.empty() || !imp.ok()) {
            std::fprintf(stderr, "hearth-extract-bench: import %s: %s\n", archive.c_str(),
                         imp.error.c_str());
            return 1;
        }
        auto t0 = std::chrono::steady_clock::now();
        hearth::StoreResult r = store.ensure_tree(hex, {}, threads);
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (!r.ok()) {
            std::fprintf(stderr, "hearth-extract-bench: ensure_tree: %s\n", r.error.c_str());
            return 1;
        }
        entries = r.entries;
        bytes = r.bytes;
    }
    std::printf("{\"seconds\":%.6f,\"entries\":%llu,\"bytes\":%llu,\"threads\":%u}\n", seconds,
                static_cast<unsigned long long>(entries), static_cast<unsigned long long>(bytes),
                threads);
    return 0;
}
