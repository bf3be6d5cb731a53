#include "launch/pex_info.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using hearth::InheritPath;
using hearth::PexInfo;

namespace {

// PEX-INFO as pex 2.100.7 wrote it for `pex -D src -e app.main:main_none
// --inject-env ... --inject-args ...` (shape and key names are real).
constexpr const char* kRealPexInfo =
    R"({"bind_resource_paths":{},"bootstrap_hash":"712ada97f24d869d78414e4a8c6505d069e1a70a","build_properties":{"pex_version":"2.100.7"},"code_hash":"0d1f1c17784e05b24f18f8ce8cc0191db36e6094","deps_are_wheel_files":false,"distributions":{"beta-2.0-py3-none-any.whl":"9e1e8234271565433d60ea906e73cef39f40eb686d896d0c788e155357a2b5bd","alpha-1.0-py3-none-any.whl":"31cbb8f2c005021dee57de69c496d9a185817ef22d585c23278367df130b89c1"},"emit_warnings":true,"entry_point":"app.main:main_none","excluded":[],"ignore_errors":false,"includes_tools":false,"inherit_path":"false","inject_args":["--injected","port={pex.env.INJ_B}:{{x}}"],"inject_env":{"INJ_A":"fromfile","INJ_B":"b"},"inject_python_args":["-X","utf8"],"interpreter_constraints":["CPython>=3.8"],"interpreter_selection_strategy":"oldest","max_install_jobs":1,"overridden":[],"pex_hash":"462fd2e78f92780489c06a770785893655ac390f","pex_path":"","pex_paths":[],"requirements":["beta"],"strip_pex_env":true,"venv":false,"venv_bin_path":"false","venv_copies":false,"venv_hermetic_scripts":true,"venv_site_packages_copies":false,"venv_system_site_packages":false})";

PexInfo parse_ok(const std::string& text) {
    PexInfo info;
    std::string error;
    INFO(text);
    REQUIRE(hearth::parse_pex_info(text, info, error));
    CHECK(error.empty());
    return info;
}

std::string parse_err(const std::string& text) {
    PexInfo info;
    std::string error;
    INFO(text);
    REQUIRE_FALSE(hearth::parse_pex_info(text, info, error));
    REQUIRE_FALSE(error.empty());
    return error;
}

class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "hearth-pexinfo-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

void write(const fs::path& p, const std::string& content) {
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary);
    out << content;
    REQUIRE(out.good());
}

std::string layout(const std::string& dist_info) {
    return R"({"fingerprint":"00","record_relpath":")" + dist_info +
           R"(/RECORD","root_is_purelib":true,"stash_dir":".prefix","sys_path_entries":["."]})";
}

// An installed-wheel chroot like pex writes under .deps/.
void add_chroot(const fs::path& tree, const std::string& wheel, const std::string& dist_info,
                const std::string& requires_dist = "", const std::string& layout_json = "") {
    const fs::path base = tree / ".deps" / wheel;
    write(base / ".layout.json", layout_json.empty() ? layout(dist_info) : layout_json);
    std::string meta = "Metadata-Version: 2.1\nName: x\nVersion: 1\n" + requires_dist + "\nbody\n";
    write(base / dist_info / "METADATA", meta);
    write(base / dist_info / "RECORD", "");
}

std::string rel(const fs::path& root, const std::string& p) {
    return fs::path(p).lexically_relative(root).string();
}

} // namespace

TEST_CASE("parse_pex_info reads a real pex 2.x PEX-INFO", "[pex_info]") {
    PexInfo info = parse_ok(kRealPexInfo);
    CHECK(info.entry_point == "app.main:main_none");
    CHECK(info.script.empty());
    REQUIRE(info.distributions.size() == 2);
    // nlohmann keeps object keys sorted, which is also how pex writes them.
    CHECK(info.distributions[0].first == "alpha-1.0-py3-none-any.whl");
    CHECK(info.distributions[0].second.substr(0, 8) == "31cbb8f2");
    CHECK(info.requirements == std::vector<std::string>{"beta"});
    CHECK(info.inherit_path == InheritPath::none);
    CHECK(info.interpreter_constraints == std::vector<std::string>{"CPython>=3.8"});
    REQUIRE(info.inject_env.size() == 2);
    CHECK(info.inject_env[0] == std::pair<std::string, std::string>{"INJ_A", "fromfile"});
    CHECK(info.inject_args == std::vector<std::string>{"--injected", "port={pex.env.INJ_B}:{{x}}"});
    CHECK(info.inject_python_args == std::vector<std::string>{"-X", "utf8"});
    CHECK(info.strip_pex_env);
    CHECK_FALSE(info.deps_are_wheel_files);
    CHECK(info.pex_hash == "462fd2e78f92780489c06a770785893655ac390f");
    CHECK(info.code_hash == "0d1f1c17784e05b24f18f8ce8cc0191db36e6094");
    CHECK(info.pex_path.empty());
    CHECK(info.pex_version == "2.100.7");
}

TEST_CASE("parse_pex_info defaults and value forms", "[pex_info]") {
    PexInfo info = parse_ok("{}");
    CHECK(info.entry_point.empty());
    CHECK(info.inherit_path == InheritPath::none);
    CHECK(info.strip_pex_env);
    CHECK_FALSE(info.deps_are_wheel_files);

    CHECK(parse_ok(R"({"inherit_path":"prefer"})").inherit_path == InheritPath::prefer);
    CHECK(parse_ok(R"({"inherit_path":"fallback"})").inherit_path == InheritPath::fallback);
    CHECK(parse_ok(R"({"inherit_path":true})").inherit_path == InheritPath::prefer);
    CHECK(parse_ok(R"({"inherit_path":false})").inherit_path == InheritPath::none);
    CHECK(parse_ok(R"({"inherit_path":null})").inherit_path == InheritPath::none);
    CHECK(hearth::to_string(InheritPath::none) == "false");
    CHECK(hearth::to_string(InheritPath::fallback) == "fallback");

    CHECK(parse_ok(R"({"pex_paths":["/a.pex","/b"]})").pex_path ==
          std::vector<std::string>{"/a.pex", "/b"});
    CHECK(parse_ok(R"({"pex_path":"/a.pex:/b"})").pex_path ==
          std::vector<std::string>{"/a.pex", "/b"});
    CHECK(parse_ok(R"({"script":"black","strip_pex_env":false,"deps_are_wheel_files":true})")
              .script == "black");
    CHECK(parse_ok(R"({"requirements":[["old==1",null,false],"new"]})").requirements ==
          std::vector<std::string>{"old==1", "new"});
}

TEST_CASE("parse_pex_info errors name the key and the problem", "[pex_info]") {
    CHECK_THAT(parse_err("not json"), Catch::Contains("not valid JSON"));
    CHECK_THAT(parse_err("[1]"), Catch::Contains("JSON object"));
    auto e = parse_err(R"({"inject_env":{"A":"x","B":3}})");
    CHECK_THAT(e, Catch::Contains("inject_env") && Catch::Contains("'B'") &&
                      Catch::Contains("string"));
    CHECK_THAT(parse_err(R"({"inherit_path":"sometimes"})"),
               Catch::Contains("inherit_path") && Catch::Contains("sometimes"));
    CHECK_THAT(parse_err(R"({"inject_args":["a",1]})"),
               Catch::Contains("inject_args") && Catch::Contains("item 1"));
    CHECK_THAT(parse_err(R"({"distributions":[]})"), Catch::Contains("distributions"));
    CHECK_THAT(parse_err(R"({"distributions":{"../x.whl":"f"}})"),
               Catch::Contains("invalid wheel name"));
    CHECK_THAT(parse_err(R"({"strip_pex_env":"yes"})"), Catch::Contains("strip_pex_env"));
    CHECK_THAT(parse_err(R"({"entry_point":"a","script":"b"})"), Catch::Contains("both set"));
    CHECK_THAT(parse_err(R"({"entry_point":"app.main:"})"), Catch::Contains("entry_point"));
    CHECK_THAT(parse_err(R"({"entry_point":7})"), Catch::Contains("entry_point"));
    // Invalid UTF-8 must not throw.
    CHECK_THAT(parse_err(std::string("{\"script\":\"\xff\"}")), Catch::Contains("PEX-INFO"));
}

TEST_CASE("load_pex_info names the file", "[pex_info]") {
    TempDir dir;
    PexInfo info;
    std::string error;
    CHECK_FALSE(hearth::load_pex_info(dir.path().string(), info, error));
    CHECK_THAT(error, Catch::Contains("PEX-INFO"));
    write(dir.path() / "PEX-INFO", R"({"inherit_path":3})");
    CHECK_FALSE(hearth::load_pex_info(dir.path().string(), info, error));
    CHECK_THAT(error, Catch::Contains((dir.path() / "PEX-INFO").string()) &&
                          Catch::Contains("inherit_path"));
    write(dir.path() / "PEX-INFO", R"({"entry_point":"app.main"})");
    REQUIRE(hearth::load_pex_info(dir.path().string(), info, error));
    CHECK(info.entry_point == "app.main");
}

TEST_CASE("parse_entry_point follows pex", "[pex_info]") {
    hearth::EntryPoint ep;
    std::string error;
    REQUIRE(hearth::parse_entry_point("app.main", ep, error));
    CHECK(ep.module == "app.main");
    CHECK(ep.attrs.empty());
    REQUIRE(hearth::parse_entry_point(" app.main : Cls.run [extra1, extra2]", ep, error));
    CHECK(ep.module == "app.main");
    CHECK(ep.attrs == "Cls.run");
    CHECK_FALSE(hearth::parse_entry_point("", ep, error));
    CHECK_FALSE(hearth::parse_entry_point(":main", ep, error));
    CHECK_FALSE(hearth::parse_entry_point("app:", ep, error));
    CHECK_FALSE(hearth::parse_entry_point("app main", ep, error));
    CHECK_FALSE(hearth::parse_entry_point("app..x", ep, error));
    CHECK_THAT(error, Catch::Contains("app..x"));
}

TEST_CASE("parse_layout_json", "[pex_info]") {
    hearth::InstalledWheelLayout l;
    std::string error;
    REQUIRE(hearth::parse_layout_json(
        R"({"fingerprint":"ab","record_relpath":"x-1.dist-info/RECORD","root_is_purelib":false,"stash_dir":".prefix","sys_path_entries":[".",".prefix/purelib"]})",
        "L", l, error));
    CHECK(l.sys_path_entries == std::vector<std::string>{".", ".prefix/purelib"});
    CHECK_FALSE(l.root_is_purelib);
    CHECK(l.record_relpath == "x-1.dist-info/RECORD");

    REQUIRE(hearth::parse_layout_json(R"({"record_relpath":"r","stash_dir":".prefix"})", "L", l,
                                      error));
    CHECK(l.sys_path_entries == std::vector<std::string>{"."});

    CHECK_FALSE(
        hearth::parse_layout_json(R"({"record_relpath":"r"})", "/t/.layout.json", l, error));
    CHECK_THAT(error, Catch::Contains("/t/.layout.json") && Catch::Contains("stash_dir"));
    CHECK_FALSE(hearth::parse_layout_json(
        R"({"record_relpath":"r","stash_dir":"s","sys_path_entries":["../up"]})", "F", l, error));
    CHECK_THAT(error, Catch::Contains("leaves the chroot"));
    CHECK_FALSE(hearth::parse_layout_json(
        R"({"record_relpath":"r","stash_dir":"s","sys_path_entries":["/abs"]})", "F", l, error));
    CHECK_FALSE(hearth::parse_layout_json("{", "F", l, error));
    CHECK_THAT(error, Catch::StartsWith("F:"));
}

TEST_CASE("build_sys_path follows pex's activation order", "[pex_info]") {
    TempDir dir;
    const fs::path src = dir.path() / "src";
    const fs::path deps = dir.path() / "deps";
    write(src / "PEX-INFO", "{}");
    write(src / "app" / "__init__.py", "");
    write(deps / "PEX-INFO", "{}");
    // beta requires alpha; gamma requires nothing reachable (its marker is
    // false for 3.11); zeta is in the pex but no requirement reaches it.
    // alpha and beta require each other: the walk must terminate.
    add_chroot(deps, "alpha-1.0-py3-none-any.whl", "alpha-1.0.dist-info", "Requires-Dist: beta\n");
    add_chroot(deps, "beta-2.0-py3-none-any.whl", "beta-2.0.dist-info",
               "Requires-Dist: Alpha (>=1)\nRequires-Dist: missing ; extra == 'x'\n");
    add_chroot(
        deps, "gamma-0.5-py3-none-any.whl", "gamma-0.5.dist-info",
        "Requires-Dist: zeta ; python_version < '3'\n",
        R"({"record_relpath":"gamma-0.5.dist-info/RECORD","stash_dir":".prefix","sys_path_entries":[".",".prefix/platlib"]})");
    add_chroot(deps, "zeta-1.0-py3-none-any.whl", "zeta-1.0.dist-info");

    PexInfo src_info, deps_info;
    deps_info.requirements = {"beta", "gamma"};
    for (auto w : {"alpha-1.0-py3-none-any.whl", "beta-2.0-py3-none-any.whl",
                   "gamma-0.5-py3-none-any.whl", "zeta-1.0-py3-none-any.whl"})
        deps_info.distributions.emplace_back(w, "fp");

    std::vector<std::string> path;
    std::string error;
    const hearth::PythonTarget py311{3, 11, 0, "x86_64"};
    REQUIRE(hearth::build_sys_path({{src.string(), &src_info}, {deps.string(), &deps_info}}, py311,
                                   path, error));
    std::vector<std::string> rels;
    for (const auto& p : path)
        rels.push_back(rel(dir.path(), p));
    CHECK(rels == std::vector<std::string>{
                      "deps",
                      "src",
                      "deps/.deps/beta-2.0-py3-none-any.whl",
                      "deps/.deps/alpha-1.0-py3-none-any.whl",
                      "deps/.deps/gamma-0.5-py3-none-any.whl",
                      "deps/.deps/gamma-0.5-py3-none-any.whl/.prefix/platlib",
                      "deps/.deps/zeta-1.0-py3-none-any.whl",
                  });
    for (const auto& p : path)
        CHECK(fs::path(p).is_absolute());

    SECTION("a fallback pex inserts its distributions at the head") {
        deps_info.inherit_path = InheritPath::fallback;
        REQUIRE(hearth::build_sys_path({{src.string(), &src_info}, {deps.string(), &deps_info}},
                                       py311, path, error));
        CHECK(rel(dir.path(), path.front()) == "deps/.deps/zeta-1.0-py3-none-any.whl");
        CHECK(rel(dir.path(), path[4]) == "deps/.deps/beta-2.0-py3-none-any.whl");
        CHECK(rel(dir.path(), path[5]) == "deps");
        CHECK(rel(dir.path(), path.back()) == "src"); // the main root ends the head
    }

    SECTION("the same wheel in two trees is activated once, from the first") {
        const fs::path deps2 = dir.path() / "deps2";
        write(deps2 / "PEX-INFO", "{}");
        add_chroot(deps2, "alpha-1.0-py3-none-any.whl", "alpha-1.0.dist-info");
        add_chroot(deps2, "omega-1.0-py3-none-any.whl", "omega-1.0.dist-info");
        PexInfo deps2_info;
        deps2_info.requirements = {"alpha", "omega"};
        deps2_info.distributions = {{"alpha-1.0-py3-none-any.whl", "fp"},
                                    {"omega-1.0-py3-none-any.whl", "fp"}};
        REQUIRE(hearth::build_sys_path(
            {{src.string(), &src_info}, {deps.string(), &deps_info}, {deps2.string(), &deps2_info}},
            py311, path, error));
        REQUIRE(path.size() == 9);
        CHECK(rel(dir.path(), path[0]) == "deps2");
        CHECK(rel(dir.path(), path[1]) == "deps");
        CHECK(rel(dir.path(), path[2]) == "src");
        CHECK(rel(dir.path(), path[8]) == "deps2/.deps/omega-1.0-py3-none-any.whl");
    }

    SECTION("a malformed .layout.json is an error naming the file") {
        write(deps / ".deps" / "alpha-1.0-py3-none-any.whl" / ".layout.json", "{\"stash_dir\":");
        CHECK_FALSE(hearth::build_sys_path({{src.string(), &src_info}, {deps.string(), &deps_info}},
                                           py311, path, error));
        CHECK_THAT(error, Catch::Contains("alpha-1.0-py3-none-any.whl/.layout.json"));
    }

    SECTION("a missing chroot is an error") {
        deps_info.distributions.emplace_back("ghost-1-py3-none-any.whl", "fp");
        CHECK_FALSE(hearth::build_sys_path({{src.string(), &src_info}, {deps.string(), &deps_info}},
                                           py311, path, error));
        CHECK_THAT(error, Catch::Contains("ghost-1-py3-none-any.whl"));
    }

    SECTION("relative roots are refused") {
        CHECK_FALSE(hearth::build_sys_path("relative/tree", src_info, path, error));
        CHECK_THAT(error, Catch::Contains("not absolute"));
    }
}

TEST_CASE("build_sys_path picks one wheel per project for the target", "[pex_info]") {
    TempDir dir;
    const fs::path deps = dir.path() / "deps";
    write(deps / "PEX-INFO", "{}");
    const char* wheels[] = {"np-1-cp310-cp310-manylinux_2_17_x86_64.whl",
                            "np-1-cp311-cp311-manylinux_2_17_x86_64.whl",
                            "np-1-cp311-cp311-manylinux_2_17_aarch64.whl"};
    PexInfo info;
    info.requirements = {"np"};
    for (auto w : wheels) {
        add_chroot(deps, w, "np-1.dist-info");
        info.distributions.emplace_back(w, w);
    }
    std::vector<std::string> path;
    std::string error;
    REQUIRE(hearth::build_sys_path({{deps.string(), &info}}, {3, 11, 0, "x86_64"}, path, error));
    REQUIRE(path.size() == 2);
    CHECK(fs::path(path[1]).filename() == wheels[1]);
    REQUIRE(hearth::build_sys_path({{deps.string(), &info}}, {3, 11, 0, "aarch64"}, path, error));
    REQUIRE(path.size() == 2);
    CHECK(fs::path(path[1]).filename() == wheels[2]);
}

TEST_CASE("build_sys_path uses unpacked raw wheels", "[pex_info]") {
    TempDir dir;
    const fs::path deps = dir.path() / "deps";
    write(deps / "PEX-INFO", "{}");
    const std::string plat = "plat-1.0-cp311-cp311-linux_x86_64.whl";
    const std::string pure = "pure-1.0-py3-none-any.whl";
    const fs::path pw = deps / ".hearth" / "wheels" / plat;
    write(pw / "plat-1.0.dist-info" / "WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n");
    write(pw / "plat-1.0.dist-info" / "METADATA", "Name: plat\n");
    write(pw / "plat-1.0.data" / "purelib" / "x.py", "");
    write(pw / "plat-1.0.data" / "platlib" / "y.py", "");
    const fs::path uw = deps / ".hearth" / "wheels" / pure;
    write(uw / "pure-1.0.dist-info" / "WHEEL", "Root-Is-Purelib: true\n");
    write(uw / "pure-1.0.dist-info" / "METADATA", "Name: pure\n");
    write(uw / "pure-1.0.data" / "purelib" / "a.py", "");
    write(uw / "pure-1.0.data" / "platlib" / "b.py", "");
    write(uw / "pure-1.0.data" / "scripts" / "tool", "");

    PexInfo info;
    info.deps_are_wheel_files = true;
    info.requirements = {"plat", "pure"};
    info.distributions = {{plat, "a"}, {pure, "b"}};
    std::vector<std::string> path;
    std::string error;
    REQUIRE(hearth::build_sys_path(deps.string(), info, path, error));
    std::vector<std::string> rels;
    for (const auto& p : path)
        rels.push_back(rel(deps, p));
    CHECK(rels == std::vector<std::string>{
                      ".",
                      ".hearth/wheels/" + plat,
                      ".hearth/wheels/" + plat + "/plat-1.0.data/platlib",
                      ".hearth/wheels/" + plat + "/plat-1.0.data/purelib",
                      ".hearth/wheels/" + pure,
                      ".hearth/wheels/" + pure + "/pure-1.0.data/purelib",
                      ".hearth/wheels/" + pure + "/pure-1.0.data/platlib",
                  });

    fs::remove_all(uw);
    CHECK_FALSE(hearth::build_sys_path(deps.string(), info, path, error));
    CHECK_THAT(error, Catch::Contains(pure) && Catch::Contains("not unpacked"));
}

TEST_CASE("pex environment: strip PEX_*, inject_env as defaults, inject_args", "[pex_info]") {
    PexInfo info = parse_ok(kRealPexInfo);
    std::map<std::string, std::string> env{
        {"INJ_A", "fromenv"}, {"PEX_ROOT", "/x"}, {"PEX", "/keep"}, {"HOME", "/root"}};
    hearth::apply_pex_environment(info, env);
    CHECK(env.at("INJ_A") == "fromenv"); // the environment wins over inject_env
    CHECK(env.at("INJ_B") == "b");
    CHECK(env.count("PEX_ROOT") == 0);
    CHECK(env.at("PEX") == "/keep"); // only the PEX_ prefix is stripped

    std::vector<std::string> args;
    std::string error;
    REQUIRE(hearth::expand_inject_args(info, env, args, error));
    CHECK(args == std::vector<std::string>{"--injected", "port=b:{x}"});

    info.strip_pex_env = false;
    env = {{"PEX_ROOT", "/x"}};
    hearth::apply_pex_environment(info, env);
    CHECK(env.at("PEX_ROOT") == "/x");

    info.inject_args = {"{pex.env[HOME]}-{pex.env.UNSET}-{{}}"};
    REQUIRE(hearth::expand_inject_args(info, {{"HOME", "/h"}}, args, error));
    CHECK(args == std::vector<std::string>{"/h--{}"});
    for (std::string bad : {"{other}", "{pex.env}", "x}", "{pex.env.A", "{pex.env.A.b}"}) {
        info.inject_args = {"ok", bad};
        INFO(bad);
        CHECK_FALSE(hearth::expand_inject_args(info, {}, args, error));
        CHECK_THAT(error, Catch::Contains("inject_args") && Catch::Contains("item 1"));
    }
}
