#include "launch/python.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace fs = std::filesystem;
using namespace hearth;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "hearth-python-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

void make_file(const fs::path& p, const std::string& content, mode_t mode) {
    fs::create_directories(p.parent_path());
    {
        std::ofstream f(p);
        f << content;
    }
    REQUIRE(::chmod(p.c_str(), mode) == 0);
}

Interpreter interp(std::string impl, int major, int minor, int micro, std::string path = "/x") {
    Interpreter i;
    i.path = std::move(path);
    i.implementation = std::move(impl);
    i.major = major;
    i.minor = minor;
    i.micro = micro;
    return i;
}

Constraint constraint(const std::string& text) {
    Constraint c;
    std::string err;
    INFO(text);
    REQUIRE(parse_constraint(text, c, err));
    return c;
}

bool match(const std::string& text, const Interpreter& i) {
    return matches(i, constraint(text));
}

std::string constraint_error(const std::string& text) {
    Constraint c;
    std::string err;
    INFO(text);
    REQUIRE_FALSE(parse_constraint(text, c, err));
    return err;
}

// Runs argv and returns its stdout (test-only helper; the daemon runs probes
// on its own loop).
std::string run(const std::vector<std::string>& argv, int& status) {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    REQUIRE(rc == 0);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return out;
}

} // namespace

TEST_CASE("python_candidates scans PATH newest first and dedupes by realpath", "[python]") {
    TempDir t;
    fs::path a = t.path / "a", b = t.path / "b", c = t.path / "c";
    make_file(a / "python3.9", "", 0755);
    make_file(a / "python3.12", "", 0755);
    make_file(a / "python3.6", "", 0755);            // too old: not a candidate name
    make_file(a / "python3.11", "", 0644);           // not executable
    fs::create_directories(a / "python3.10");        // a directory, not a file
    fs::create_symlink("python3.12", a / "python3"); // same file as python3.12
    make_file(b / "python", "", 0755);
    fs::create_symlink(a / "python3.9", b / "python3.9"); // same as a/python3.9
    make_file(b / "python3.20", "", 0755);
    make_file(c / "python3", "", 0755);

    std::string path_env = a.string() + "::relative/dir:" + b.string() + "/:" + c.string();
    auto got = python_candidates(path_env, {});
    std::vector<std::string> want = {
        (a / "python3.12").string(), (a / "python3.9").string(), (b / "python3.20").string(),
        (b / "python").string(),     (c / "python3").string(),
    };
    CHECK(got == want);

    CHECK(python_candidates("", {}).empty());
    CHECK(python_candidates((t.path / "missing").string(), {}).empty());
}

TEST_CASE("python_candidates uses configured interpreters only", "[python]") {
    TempDir t;
    fs::path a = t.path / "a";
    make_file(a / "python3.11", "", 0755);
    make_file(a / "python3.12", "", 0755);
    fs::create_symlink("python3.11", a / "py");
    std::vector<std::string> configured = {
        (a / "python3.11").string(),
        "python3.12",           // bare name: looked up on PATH
        (a / "py").string(),    // same file as the first: dropped
        "/nonexistent/python9", // kept: the probe will say it is missing
        "nosuchpython",         // not on PATH: kept bare
    };
    auto got = python_candidates(a.string(), configured);
    std::vector<std::string> want = {(a / "python3.11").string(), (a / "python3.12").string(),
                                     "/nonexistent/python9", "nosuchpython"};
    CHECK(got == want);
}

TEST_CASE("probe output parsing", "[python]") {
    std::string err;
    auto i = parse_probe_output("HEARTH-PROBE-1\n/usr/bin/python3.11\ncpython\n3.11.2\n", err);
    REQUIRE(i);
    CHECK(i->path == "/usr/bin/python3.11");
    CHECK(i->implementation == "CPython");
    CHECK(i->major == 3);
    CHECK(i->minor == 11);
    CHECK(i->micro == 2);
    CHECK(i->version() == "3.11.2");

    // Noise before the marker (a chatty wrapper) is ignored; \r\n tolerated.
    i = parse_probe_output(
        "pyenv: hello\r\nHEARTH-PROBE-1\r\n/opt/pypy/bin/pypy3\r\npypy\r\n3.10.14", err);
    REQUIRE(i);
    CHECK(i->implementation == "PyPy");
    CHECK(i->path == "/opt/pypy/bin/pypy3");
    CHECK(i->micro == 14);

    i = parse_probe_output("HEARTH-PROBE-1\n/usr/bin/gp\ngraalpy\n3.10.8\n", err);
    REQUIRE(i);
    CHECK(i->implementation == "graalpy");

    CHECK_FALSE(parse_probe_output("", err));
    CHECK_THAT(err, Catch::Contains("did not answer"));
    CHECK_FALSE(parse_probe_output("Unknown option: -I\n", err));
    CHECK_FALSE(parse_probe_output("HEARTH-PROBE-1\n/usr/bin/python3\ncpython\n", err));
    CHECK_THAT(err, Catch::Contains("truncated"));
    CHECK_FALSE(parse_probe_output("HEARTH-PROBE-1\n\ncpython\n3.11.2\n", err));
    CHECK_THAT(err, Catch::Contains("empty sys.executable"));
    CHECK_FALSE(parse_probe_output("HEARTH-PROBE-1\npython3\ncpython\n3.11.2\n", err));
    CHECK_THAT(err, Catch::Contains("relative"));
    CHECK_FALSE(parse_probe_output("HEARTH-PROBE-1\n/p\ncpython\n3.11\n", err));
    CHECK_THAT(err, Catch::Contains("malformed version"));
    CHECK_FALSE(parse_probe_output("HEARTH-PROBE-1\n/p\ncpython\n3.11.2rc1\n", err));
    CHECK_FALSE(parse_probe_output("HEARTH-PROBE-1\n/p\ncpython\n3.x.1\n", err));
    CHECK_FALSE(parse_probe_output("HEARTH-PROBE-1\n/p\n\n3.11.1\n", err));
}

TEST_CASE("probe_argv runs on a real interpreter and resolves a shim", "[python]") {
    const char* real = "/usr/bin/python3";
    if (::access(real, X_OK) != 0) {
        WARN("no /usr/bin/python3; skipped");
        return;
    }
    auto argv = probe_argv(real);
    REQUIRE(argv.size() == 5);
    CHECK(argv[0] == real);
    CHECK(argv[1] == "-I");
    CHECK(argv[2] == "-S");
    CHECK(argv[3] == "-c");
    int status = -1;
    std::string out = run(argv, status);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    std::string err;
    auto i = parse_probe_output(out, err);
    INFO(out << err);
    REQUIRE(i);
    CHECK(i->implementation == "CPython");
    CHECK(i->major == 3);
    CHECK(i->minor >= 7);
    char* resolved = ::realpath(real, nullptr);
    REQUIRE(resolved);
    std::string real_resolved = resolved;
    std::free(resolved);

    // A pyenv-style shim: a script that execs the real interpreter. The probe
    // reports the real binary, so launches can skip the shim.
    TempDir t;
    fs::path shim = t.path / "shims" / "python3";
    make_file(shim, "#!/bin/sh\nexec " + real_resolved + " \"$@\"\n", 0755);
    auto cands = python_candidates((t.path / "shims").string(), {});
    REQUIRE(cands == std::vector<std::string>{shim.string()});
    out = run(probe_argv(cands[0]), status);
    i = parse_probe_output(out, err);
    INFO(out << err);
    REQUIRE(i);
    CHECK(i->path == real_resolved);
}

TEST_CASE("constraint parsing", "[python]") {
    Constraint c = constraint("CPython>=3.8,<4");
    CHECK(c.implementation == "CPython");
    REQUIRE(c.specifiers.size() == 2);
    CHECK(c.specifiers[0].op == Specifier::Op::ge);
    CHECK(c.specifiers[1].op == Specifier::Op::lt);
    CHECK(c.text == "CPython>=3.8,<4");

    c = constraint(">=3.9");
    CHECK(c.implementation.empty());
    CHECK(c.specifiers.size() == 1);

    c = constraint("PyPy");
    CHECK(c.implementation == "PyPy");
    CHECK(c.specifiers.empty());

    c = constraint("  CPython >= 3.8 , < 4 ");
    CHECK(c.specifiers.size() == 2);
    c = constraint("CPython (>=3.8)");
    CHECK(c.specifiers.size() == 1);
    c = constraint("CPython==3.11.*");
    CHECK(c.specifiers[0].wildcard);

    CHECK_THAT(constraint_error(""), Catch::Contains("empty"));
    CHECK_THAT(constraint_error("CPython>=3.x"),
               Catch::Contains("\"CPython>=3.x\"") && Catch::Contains("not a valid version"));
    CHECK_THAT(constraint_error("3.8"), Catch::Contains("no comparison operator"));
    CHECK_THAT(constraint_error("CPython=>3.8"), Catch::Contains("no comparison operator"));
    CHECK_THAT(constraint_error("CPython>=3.8,"), Catch::Contains("trailing comma"));
    CHECK_THAT(constraint_error("CPython>=3.8,,<4"), Catch::Contains("empty specifier"));
    CHECK_THAT(constraint_error(">=3.*"), Catch::Contains("wildcard"));
    CHECK_THAT(constraint_error("==3.11rc1.*"), Catch::Contains("wildcard"));
    CHECK_THAT(constraint_error("~=3"), Catch::Contains("two release components"));
    CHECK_THAT(constraint_error("~=3.10.*"), Catch::Contains("wildcard"));
    CHECK_THAT(constraint_error(">=3.8+local"), Catch::Contains("local"));
    CHECK_THAT(constraint_error("CPython>=3.8; python_version>'3'"), Catch::Contains("markers"));
    CHECK_THAT(constraint_error("CPython[x]>=3.8"), Catch::Contains("extras"));
    CHECK_THAT(constraint_error(">="), Catch::Contains("no version"));
    CHECK_THAT(constraint_error(">=3. 8"), Catch::Contains("space"));
    CHECK_THAT(constraint_error("-CPython>=3"), Catch::Contains("implementation name"));
    CHECK_THAT(constraint_error(">=99999999999999999999999"), Catch::Contains("too large"));

    std::vector<Constraint> list;
    std::string err;
    CHECK_FALSE(parse_constraints({"CPython>=3.8", "CPython>=three"}, list, err));
    CHECK_THAT(err, Catch::Contains("CPython>=three"));
    REQUIRE(parse_constraints({"CPython>=3.8", "PyPy"}, list, err));
    CHECK(list.size() == 2);
    CHECK(describe(list) == "CPython>=3.8 or PyPy");
    CHECK(describe({}).empty());
}

TEST_CASE("PEP 440 version parsing", "[python]") {
    Version v;
    std::string err;
    REQUIRE(parse_version("1!2.0.3rc4.post5.dev6+Ubuntu-1", v, err));
    CHECK(v.epoch == 1);
    CHECK(v.release == std::vector<std::uint64_t>{2, 0, 3});
    REQUIRE(v.pre);
    CHECK(v.pre->first == 2);
    CHECK(v.pre->second == 4);
    CHECK(v.post == 5u);
    CHECK(v.dev == 6u);
    CHECK(v.local == "ubuntu.1");
    REQUIRE(parse_version("v3.11-2", v, err));
    CHECK(v.post == 2u);
    REQUIRE(parse_version("3.13.0alpha", v, err));
    CHECK(v.pre == std::make_pair(0, std::uint64_t{0}));
    REQUIRE(parse_version("3.13.0-preview.2", v, err));
    CHECK(v.pre == std::make_pair(2, std::uint64_t{2}));
    CHECK_FALSE(parse_version("3.", v, err));
    CHECK_FALSE(parse_version("3..1", v, err));
    CHECK_FALSE(parse_version("3.1+", v, err));
    CHECK_FALSE(parse_version("3.1+a..b", v, err));
    CHECK_FALSE(parse_version("abc", v, err));
}

TEST_CASE("constraint matching follows pex and PEP 440", "[python]") {
    auto cp3112 = interp("CPython", 3, 11, 2);
    auto cp380 = interp("CPython", 3, 8, 0);
    auto cp3100 = interp("CPython", 3, 10, 0);
    auto cp3124 = interp("CPython", 3, 12, 4);
    auto pypy = interp("PyPy", 3, 10, 14);

    CHECK(match("CPython>=3.8,<4", cp3112));
    CHECK(match("CPython>=3.8,<4", cp380));
    CHECK_FALSE(match("CPython>=3.8,<4", pypy));
    CHECK(match(">=3.9", pypy)); // no name: any implementation
    CHECK_FALSE(match(">=3.9", cp380));
    CHECK(match("cpython>=3.8", cp3112)); // names compare case-insensitively
    CHECK(match("PyPy", pypy));
    CHECK_FALSE(match("PyPy", cp3112));
    CHECK_FALSE(match("Jython", cp3112));

    // == and != with and without wildcards; release padding.
    CHECK(match("CPython==3.11.*", cp3112));
    CHECK_FALSE(match("CPython==3.11.*", cp3124));
    CHECK(match("==3.*", cp3124));
    CHECK(match("==3.8", cp380)); // 3.8 == 3.8.0
    CHECK(match("==3.8.0.0", cp380));
    CHECK_FALSE(match("==3.8", interp("CPython", 3, 8, 1)));
    CHECK(match("==3.8.0.*", cp380));
    CHECK_FALSE(match("==3.8.0.1.*", cp380));
    CHECK(match("!=3.11.*", cp3124));
    CHECK_FALSE(match("!=3.11.*", cp3112));
    CHECK(match("!=3.11.1", cp3112));
    CHECK_FALSE(match("!=3.11.2", cp3112));
    CHECK_FALSE(match("==3.11.2+local", cp3112)); // a local spec needs a local candidate
    CHECK(match("!=3.11.2+local", cp3112));
    CHECK(match("==0!3.11.2", cp3112));
    CHECK_FALSE(match("==1!3.11.2", cp3112));
    CHECK_FALSE(match(">=1!0", cp3112)); // any epoch 1 version is newer

    // Ordered comparisons, including pre/post/dev spec versions.
    CHECK(match("<3.12", cp3112));
    CHECK_FALSE(match("<3.12", cp3124));
    CHECK_FALSE(match(">3.11.2", cp3112));
    CHECK(match(">3.11.1", cp3112));
    CHECK(match("<=3.11.2", cp3112));
    CHECK(match(">=3.11.2", cp3112));
    CHECK_FALSE(match("<3.11.2", cp3112));
    CHECK(match("<3.12.0a1", cp3112));
    CHECK_FALSE(match("<3.12.0a1", interp("CPython", 3, 12, 0)));
    CHECK(match(">3.12.0rc2", interp("CPython", 3, 12, 0))); // final > rc
    CHECK(match(">3.12.0.dev1", interp("CPython", 3, 12, 0)));
    CHECK_FALSE(match(">=3.12.0.post1", interp("CPython", 3, 12, 0))); // post > final
    CHECK(match("<3.12.0.post1", interp("CPython", 3, 12, 0)));

    // ~= compatible release.
    CHECK(match("CPython~=3.10", cp3112));
    CHECK(match("CPython~=3.10", cp3100));
    CHECK_FALSE(match("CPython~=3.10", cp380));
    CHECK_FALSE(match("CPython~=3.10", interp("CPython", 4, 0, 0)));
    CHECK(match("~=3.10.0", cp3100));
    CHECK_FALSE(match("~=3.10.1", cp3100));
    CHECK_FALSE(match("~=3.10.0", cp3112));

    // === is plain string equality with the interpreter's version.
    CHECK(match("===3.11.2", cp3112));
    CHECK_FALSE(match("===3.11", cp3112));

    // A list matches if any constraint does; an empty list matches everything.
    std::vector<Constraint> cs = {constraint("CPython>=3.12"), constraint("PyPy")};
    CHECK(satisfies(pypy, cs));
    CHECK(satisfies(cp3124, cs));
    CHECK_FALSE(satisfies(cp3112, cs));
    CHECK(satisfies(cp380, {}));
}

TEST_CASE("choose picks the first match in candidate order", "[python]") {
    std::vector<Interpreter> in = {
        interp("CPython", 3, 12, 4, "/usr/bin/python3.12"),
        interp("CPython", 3, 11, 2, "/usr/bin/python3.11"),
        interp("PyPy", 3, 10, 14, "/usr/bin/pypy3"),
        interp("CPython", 3, 11, 9, "/opt/bin/python3.11"),
    };
    const Interpreter* got = choose(in, {});
    REQUIRE(got);
    CHECK(got == &in[0]);
    got = choose(in, {constraint("CPython==3.11.*")});
    REQUIRE(got);
    CHECK(got->path == "/usr/bin/python3.11");
    got = choose(in, {constraint("CPython<3.11"), constraint("PyPy")});
    REQUIRE(got);
    CHECK(got->path == "/usr/bin/pypy3");
    CHECK(choose(in, {constraint("CPython<3.8")}) == nullptr);
    CHECK(choose({}, {}) == nullptr);
}
