// libarchive and libcurl loaded on first use (src/util/lazy_lib.hpp).
//
// Whether a library is mapped can only be checked in a process that has not
// called into it yet, and this test binary has (other tests extract and
// fetch), so the checks run in a fresh exec of this same binary that runs
// only one hidden test case, tagged [lazy_child_*], and reports through its
// exit status and a marker line.

#include "store/extract.hpp"
#include "store/fetch.hpp"
#ifdef HEARTH_LAZY_LIBS
#include "util/fs.hpp"
#include "util/lazy_lib.hpp"
#endif

#include <archive.h>
#include <archive_entry.h>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <curl/curl.h>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <vector>

extern char** environ;

// The variadic forwarders: every argument type curl_easy_setopt takes must
// arrive intact, and curl_easy_getinfo must write through the pointer. Holds
// whether or not the library is loaded lazily.
TEST_CASE("curl setopt and getinfo pass their argument through", "[lazy_lib]") {
    CURL* e = curl_easy_init();
    REQUIRE(e != nullptr);
    int marker = 0;
    // object pointer in, the same pointer back out through getinfo
    REQUIRE(curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(&marker)) == CURLE_OK);
    char* priv = nullptr;
    REQUIRE(curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv) == CURLE_OK);
    CHECK(static_cast<void*>(priv) == static_cast<void*>(&marker));
    // long: curl rejects an out-of-range value, so the value itself arrived
    CHECK(curl_easy_setopt(e, CURLOPT_VERBOSE, 0L) == CURLE_OK);
    CHECK(curl_easy_setopt(e, CURLOPT_SSLVERSION, 1000L) == CURLE_BAD_FUNCTION_ARGUMENT);
    CHECK(curl_easy_setopt(e, CURLOPT_MAXREDIRS, -2L) == CURLE_BAD_FUNCTION_ARGUMENT);
    // curl_off_t: negative sizes are refused, positive ones accepted
    CHECK(curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, curl_off_t{-5}) ==
          CURLE_BAD_FUNCTION_ARGUMENT);
    CHECK(curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, curl_off_t{1} << 40) == CURLE_OK);
    // string
    CHECK(curl_easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:1/x") == CURLE_OK);
    // function pointer
    curl_write_callback cb = [](char*, size_t size, size_t n, void*) { return size * n; };
    CHECK(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, cb) == CURLE_OK);
    long code = -1;
    REQUIRE(curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK);
    CHECK(code == 0);
    curl_off_t length = 123;
    REQUIRE(curl_easy_getinfo(e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK);
    CHECK(length == -1);
    curl_easy_cleanup(e);

    CURLM* m = curl_multi_init();
    REQUIRE(m != nullptr);
    CHECK(curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 4L) == CURLM_OK);
    CHECK(curl_multi_setopt(m, CURLMOPT_TIMERDATA, static_cast<void*>(&marker)) == CURLM_OK);
    CHECK(curl_multi_setopt(m, static_cast<CURLMoption>(CURLOPTTYPE_LONG + 9999), 1L) ==
          CURLM_UNKNOWN_OPTION);
    CHECK(std::string(curl_multi_strerror(CURLM_OK)) == "No error");
    CHECK(curl_multi_cleanup(m) == CURLM_OK);
    CHECK(std::string(curl_easy_strerror(CURLE_OK)) == "No error");
}

TEST_CASE("archive_set_error passes the formatted message", "[lazy_lib]") {
    struct archive* a = archive_read_new();
    REQUIRE(a != nullptr);
    archive_set_error(a, 5, "read archive: %s at %d", "boom", 42);
    REQUIRE(archive_error_string(a) != nullptr);
    CHECK(std::string(archive_error_string(a)) == "read archive: boom at 42");
#ifdef HEARTH_LAZY_LIBS
    // Only the forwarder knows precisions (libarchive prints "%.3s" as is).
    archive_set_error(a, 5, "(%.3s) %zu", "abcdef", std::size_t{7});
    CHECK(std::string(archive_error_string(a)) == "(abc) 7");
#endif
    // A '%' in the formatted text must not be re-interpreted by libarchive.
    archive_set_error(a, 5, "%s", "100%d done %s");
    CHECK(std::string(archive_error_string(a)) == "100%d done %s");
    CHECK(archive_read_free(a) == ARCHIVE_OK);
}

#ifdef HEARTH_LAZY_LIBS

namespace {

constexpr const char* child_env = "HEARTH_LAZY_LIB_CHILD";
constexpr const char* child_ok = "lazy-child-ok";

bool mapped(const char* needle) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line))
        if (line.find(needle) != std::string::npos) return true;
    return false;
}

std::size_t count(const std::string& haystack, const std::string& needle) {
    std::size_t n = 0;
    for (auto pos = haystack.find(needle); pos != std::string::npos;
         pos = haystack.find(needle, pos + 1))
        ++n;
    return n;
}

struct ChildResult {
    int status = -1;
    std::string output; // stdout and stderr
};

// Runs this binary (or `exe`, a copy of it) afresh with only the test cases
// matching `spec`, with HEARTH_LAZY_LIB_CHILD=1 and, when `ld_library_path`
// is given, that LD_LIBRARY_PATH.
ChildResult run_child(const std::string& spec, const std::string& ld_library_path = "",
                      const std::string& exe = "/proc/self/exe") {
    // Everything the child needs is built before fork: in between fork and
    // exec only async-signal-safe calls.
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
        if (std::strncmp(*e, "LD_LIBRARY_PATH=", 16) == 0 && !ld_library_path.empty()) continue;
        env_strings.emplace_back(*e);
    }
    env_strings.push_back(std::string(child_env) + "=1");
    if (!ld_library_path.empty()) env_strings.push_back("LD_LIBRARY_PATH=" + ld_library_path);
    std::vector<char*> envp;
    for (auto& s : env_strings)
        envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string arg0 = "unit-tests";
    std::string arg1 = spec;
    char* argv[] = {arg0.data(), arg1.data(), nullptr};

    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(fds[1], 1);
        ::dup2(fds[1], 2);
        ::execve(exe.c_str(), argv, envp.data());
        ::_exit(127);
    }
    ::close(fds[1]);
    ChildResult r;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n > 0) {
            r.output.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    r.status = status;
    return r;
}

bool in_child() {
    return std::getenv(child_env) != nullptr;
}

std::string temp_dir() {
    char tmpl[] = "/tmp/hearth-lazy-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    return tmpl;
}

} // namespace

TEST_CASE("Library loads by soname and resolves every symbol", "[lazy_lib]") {
    static const char* const good[] = {"getpid", "strlen"};
    hearth::lazy::Library lib("libc.so.6", "testing", good, 2);
    REQUIRE(lib.available());
    CHECK(lib.error().empty());
    CHECK(reinterpret_cast<decltype(&::getpid)>(lib.symbol(0))() == ::getpid());
    CHECK(reinterpret_cast<decltype(&::strlen)>(lib.symbol(1))("four") == 4);
    CHECK(lib.symbol(2) == nullptr); // out of range
}

TEST_CASE("Library fails as a whole on a missing library or symbol", "[lazy_lib]") {
    static const char* const names[] = {"getpid", "hearth_no_such_symbol"};
    hearth::lazy::Library missing_symbol("libc.so.6", "testing", names, 2);
    CHECK(missing_symbol.symbol(0) == nullptr); // getpid exists, but not all do
    CHECK_FALSE(missing_symbol.available());
    CHECK(missing_symbol.error().find("hearth_no_such_symbol") != std::string::npos);
    CHECK(missing_symbol.error().find("libc.so.6") != std::string::npos);

    hearth::lazy::Library missing_lib("libhearth-not-there.so.7", "testing", names, 1);
    CHECK_FALSE(missing_lib.available());
    CHECK(missing_lib.symbol(0) == nullptr);
    CHECK(missing_lib.error().find("libhearth-not-there.so.7") != std::string::npos);
}

TEST_CASE("bundled_path is <dir of the executable>/../lib/<soname>", "[lazy_lib]") {
    using hearth::lazy::bundled_path;
    CHECK(bundled_path("/opt/hearth/bin/hearth", "libcurl.so.4") ==
          "/opt/hearth/bin/../lib/libcurl.so.4");
    CHECK(bundled_path("/hearth", "libarchive.so.13") == "/../lib/libarchive.so.13");
    // readlink of a replaced executable: the directory is still right
    CHECK(bundled_path("/b/bin/hearth (deleted)", "x.so") == "/b/bin/../lib/x.so");
    CHECK(bundled_path("", "x.so").empty());
    CHECK(bundled_path("bin/hearth", "x.so").empty());
}

namespace {

// A bundle-shaped directory next to this binary: bin/unit-tests (a hard link
// to this binary, or a copy) and lib/. Removed by the destructor.
struct FakeBundle {
    std::string root, exe;
    FakeBundle() {
        char self[4096];
        ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
        REQUIRE(n > 0);
        self[n] = '\0';
        std::string dir(self, std::string(self).rfind('/'));
        std::string tmpl = dir + "/lazy-bundle-XXXXXX";
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        root = tmpl;
        REQUIRE(::mkdir((root + "/bin").c_str(), 0755) == 0);
        REQUIRE(::mkdir((root + "/lib").c_str(), 0755) == 0);
        exe = root + "/bin/unit-tests";
        if (::link(self, exe.c_str()) != 0) copy(self, exe, 0755);
    }
    ~FakeBundle() { (void)hearth::remove_all(root); }
    static void copy(const std::string& from, const std::string& to, mode_t mode) {
        std::ifstream in(from, std::ios::binary);
        REQUIRE(in);
        {
            std::ofstream out(to, std::ios::binary);
            out << in.rdbuf();
            REQUIRE(out.good());
        }
        REQUIRE(::chmod(to.c_str(), mode) == 0);
    }
};

} // namespace

TEST_CASE("Library loads <exe dir>/../lib/<soname> before the soname", "[lazy_lib]") {
    FakeBundle b;
    // Found nowhere but in the bundle's lib dir.
    FakeBundle::copy(HEARTH_LAZY_TEST_LIB, b.root + "/lib/libhearth-lazy-test.so.1", 0644);
    // A broken bundled copy of a library the system has: loading falls back
    // to the soname.
    std::ofstream(b.root + "/lib/libc.so.6");
    ChildResult r = run_child("[lazy_child_bundle]", "", b.exe);
    INFO(r.output);
    CHECK(WIFEXITED(r.status));
    CHECK(WEXITSTATUS(r.status) == 0);
    CHECK(r.output.find(child_ok) != std::string::npos);
    CHECK(r.output.find("loaded from " + b.root + "/bin/../lib/libhearth-lazy-test.so.1") !=
          std::string::npos);
    // One warning naming the broken file; the fallback served.
    CHECK(count(r.output, "cannot load the bundled " + b.root + "/bin/../lib/libc.so.6") == 1);
    CHECK(r.output.find("file too short") != std::string::npos);
}

TEST_CASE("lazy_child_bundle", "[.][lazy_child_bundle]") {
    if (!in_child()) return;
    static const char* const answer[] = {"hearth_lazy_test_answer"};
    hearth::lazy::Library bundled("libhearth-lazy-test.so.1", "testing", answer, 1);
    REQUIRE(bundled.available());
    std::printf("loaded from %s\n", bundled.loaded_from().c_str());
    CHECK(reinterpret_cast<int (*)()>(bundled.symbol(0))() == 42);
    CHECK(mapped("/lib/libhearth-lazy-test.so.1"));

    static const char* const good[] = {"getpid"};
    hearth::lazy::Library fallback("libc.so.6", "testing", good, 1);
    REQUIRE(fallback.available());
    CHECK(fallback.loaded_from() == "libc.so.6");
    CHECK(fallback.error().empty());
    CHECK(reinterpret_cast<decltype(&::getpid)>(fallback.symbol(0))() == ::getpid());
    std::printf("%s\n", child_ok);
}

TEST_CASE("libarchive and libcurl are mapped only once used", "[lazy_lib]") {
    ChildResult r = run_child("[lazy_child_load]");
    INFO(r.output);
    CHECK(WIFEXITED(r.status));
    CHECK(WEXITSTATUS(r.status) == 0);
    CHECK(r.output.find(child_ok) != std::string::npos);
}

TEST_CASE("lazy_child_load", "[.][lazy_child_load]") {
    if (!in_child()) return;
    // Nothing before this point may have touched either library.
    REQUIRE_FALSE(mapped("/libarchive.so"));
    REQUIRE_FALSE(mapped("/libcurl.so"));
    REQUIRE_FALSE(mapped("/libxml2.so"));

    struct archive* a = archive_read_new();
    REQUIRE(a != nullptr);
    CHECK(mapped("/libarchive.so"));
    CHECK_FALSE(mapped("/libcurl.so"));
    CHECK(archive_read_free(a) == ARCHIVE_OK);

    REQUIRE(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
    CHECK(mapped("/libcurl.so"));
    CURL* e = curl_easy_init();
    REQUIRE(e != nullptr);
    curl_easy_cleanup(e);
    std::printf("%s\n", child_ok);
}

TEST_CASE("without the libraries, callers get errors and the process goes on", "[lazy_lib]") {
    // An LD_LIBRARY_PATH entry holding empty files with both sonames makes
    // dlopen find them first and fail ("file too short").
    std::string dir = temp_dir();
    for (const char* so : {"libarchive.so.13", "libcurl.so.4"})
        std::ofstream(dir + "/" + so);
    ChildResult r = run_child("[lazy_child_missing]", dir);
    for (const char* so : {"libarchive.so.13", "libcurl.so.4"})
        ::unlink((dir + "/" + so).c_str());
    ::rmdir(dir.c_str());
    INFO(r.output);
    CHECK(WIFEXITED(r.status));
    CHECK(WEXITSTATUS(r.status) == 0);
    CHECK(r.output.find(child_ok) != std::string::npos);
    // One log line per library, however many calls failed.
    CHECK(count(r.output, "cannot load libarchive.so.13") == 1);
    CHECK(count(r.output, "cannot load libcurl.so.4") == 1);
    CHECK(r.output.find("file too short") != std::string::npos);
}

TEST_CASE("lazy_child_missing", "[.][lazy_child_missing]") {
    if (!in_child()) return;
    CHECK(archive_read_new() == nullptr);
    CHECK(archive_write_new() == nullptr);
    CHECK(archive_entry_new() == nullptr);
    CHECK(archive_read_free(nullptr) == ARCHIVE_OK);
    CHECK(archive_write_free(nullptr) == ARCHIVE_OK);
    archive_entry_free(nullptr);
    CHECK_FALSE(mapped("/libarchive.so"));

    // What extraction reports.
    std::string dir = temp_dir();
    std::ofstream(dir + "/a.zip") << "PK\x05\x06" << std::string(18, '\0');
    hearth::ExtractResult x = hearth::extract_zip(dir + "/a.zip", dir + "/out");
    CHECK_FALSE(x.ok());
    CHECK_FALSE(x.error.empty());
    std::printf("extract_zip error: %s\n", x.error.c_str());
    ::unlink((dir + "/a.zip").c_str());
    (void)hearth::remove_all(dir);

    CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_FAILED_INIT);
    CHECK(curl_easy_init() == nullptr);
    CHECK(curl_multi_init() == nullptr);
    CHECK(curl_easy_setopt(nullptr, CURLOPT_VERBOSE, 1L) == CURLE_FAILED_INIT);
    std::string why = curl_easy_strerror(CURLE_FAILED_INIT);
    CHECK(why.find("libcurl.so.4") != std::string::npos);
    CHECK(std::string(curl_multi_strerror(CURLM_BAD_HANDLE)) == why);
    CHECK_FALSE(mapped("/libcurl.so"));

    // What a Fetcher reports.
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    try {
        hearth::Fetcher f(&loop);
        FAIL("Fetcher constructed without libcurl");
    } catch (const std::exception& ex) {
        CHECK(std::string(ex.what()).find("libcurl.so.4") != std::string::npos);
        std::printf("Fetcher error: %s\n", ex.what());
    }
    CHECK(uv_loop_close(&loop) == 0);
    std::printf("%s\n", child_ok);
}

#endif // HEARTH_LAZY_LIBS
