#include "launch/markers.hpp"
#include "launch/version.hpp"
#include "launch/wheel_tags.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace hearth;

TEST_CASE("project names, markers and wheel tags", "[markers]") {
    CHECK(normalize_project_name("Foo_Bar..baz-") == "foo-bar-baz");
    CHECK(normalize_project_name("hearth_sample-fmt") == "hearth-sample-fmt");

    const PythonTarget py311{3, 11, 2, "x86_64"};
    const PythonTarget unknown{};
    CHECK(marker_applies("", {}, py311));
    CHECK(marker_applies("extra == 'socks'", {"socks"}, py311));
    CHECK_FALSE(marker_applies("extra == 'socks'", {}, py311));
    CHECK_FALSE(marker_applies("extra == \"Socks_X\"", {"other"}, unknown));
    CHECK(marker_applies("extra == \"Socks_X\"", {"socks-x"}, unknown));
    CHECK(marker_applies("python_version >= '3.8'", {}, py311));
    CHECK_FALSE(marker_applies("python_version < \"3.8\"", {}, py311));
    CHECK(marker_applies("python_version < \"3.8\"", {}, unknown)); // unknown counts as true
    CHECK_FALSE(marker_applies("'3.12' <= python_version", {}, py311));
    CHECK(marker_applies("python_full_version == '3.11.*'", {}, py311));
    CHECK_FALSE(marker_applies("python_version ~= '3.12'", {}, py311));
    CHECK_FALSE(marker_applies("sys_platform == 'win32'", {}, unknown));
    CHECK(marker_applies("sys_platform == 'win32' or (platform_machine == 'x86_64' and "
                         "python_version > '3.9')",
                         {}, py311));
    CHECK_FALSE(
        marker_applies("(extra == 'a' or extra == 'b') and os_name != 'posix'", {"a"}, py311));
    CHECK(marker_applies("'linux' in sys_platform", {}, unknown));
    CHECK(marker_applies("this is not a marker ((", {}, py311));

    CHECK(wheel_tag_rank("a-1-py3-none-any.whl", unknown) == 0);
    const int any = wheel_tag_rank("a-1-py3-none-any.whl", py311);
    const int abi3 = wheel_tag_rank("a-1-cp38-abi3-manylinux_2_17_x86_64.whl", py311);
    const int exact =
        wheel_tag_rank("a-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", py311);
    CHECK(any >= 0);
    CHECK(abi3 > any);
    CHECK(exact > abi3);
    CHECK(wheel_tag_rank("a-1-cp310-cp310-manylinux_2_17_x86_64.whl", py311) < 0);
    CHECK(wheel_tag_rank("a-1-cp311-cp311-manylinux_2_17_aarch64.whl", py311) < 0);
    CHECK(wheel_tag_rank("a-1-cp311-cp311-macosx_11_0_arm64.whl", py311) < 0);
    CHECK(wheel_tag_rank("a-1-py2.py3-none-any.whl", py311) >= 0);
    CHECK(wheel_tag_rank("a-1-py312-none-any.whl", py311) < 0);
}

TEST_CASE("marker versions compare by PEP 440, the right side as the specifier", "[markers]") {
    const PythonTarget py311{3, 11, 2, "x86_64"};
    const PythonTarget no_micro{3, 11, -1, "x86_64"};
    CHECK(marker_applies("python_full_version >= '3.11.0rc1'", {}, py311));
    CHECK(marker_applies("python_full_version > '3.11'", {}, py311));
    CHECK_FALSE(marker_applies("python_full_version == '3.11'", {}, py311));
    CHECK(marker_applies("python_version == '3.11.0'", {}, py311)); // 3.11 == 3.11.0
    CHECK_FALSE(marker_applies("python_version != '3.11.*'", {}, py311));
    CHECK(marker_applies("python_version ~= '3.10'", {}, py311));
    CHECK(marker_applies("'3.10' < python_version", {}, py311));
    CHECK(marker_applies("python_version === '3.11'", {}, py311));
    CHECK_FALSE(marker_applies("python_version === '3.11.0'", {}, py311)); // === compares text
    // A literal no specifier accepts cannot decide: the marker counts as true.
    CHECK(marker_applies("python_version < '3.*'", {}, py311));
    CHECK(marker_applies("python_full_version < '3.8'", {}, no_micro));
    CHECK(marker_applies("implementation_name == 'cpython' and platform_system == 'Linux'", {},
                         py311));
    CHECK_FALSE(marker_applies("platform_python_implementation == 'PyPy'", {}, py311));
}

TEST_CASE("parse_requirement keeps name, extras and marker", "[markers]") {
    Requirement r;
    REQUIRE(
        parse_requirement("Requests[Socks, security,socks] >=2.0 ; python_version >= '3.8'", r));
    CHECK(r.project == "requests");
    CHECK(r.extras == std::vector<std::string>{"security", "socks"});
    CHECK(r.marker == "python_version >= '3.8'");

    Requirement url;
    REQUIRE(parse_requirement("pkg @ https://example.org/a;b.whl ; extra == 'x'", url));
    CHECK(url.project == "pkg");
    CHECK(url.marker == "extra == 'x'");

    Requirement bad;
    CHECK_FALSE(parse_requirement("[x]", bad));
    CHECK_FALSE(parse_requirement("name[unclosed", bad));
}

TEST_CASE("parse_wheel_name splits the tags", "[markers]") {
    WheelName w = parse_wheel_name("My_Pkg-1.0-1build-cp311-abi3-manylinux_2_17_x86_64.whl");
    REQUIRE(w.ok);
    CHECK(w.project == "my-pkg");
    CHECK(w.name_version == "My_Pkg-1.0");
    CHECK(w.python == "cp311");
    CHECK(w.abi == "abi3");
    CHECK(w.platform == "manylinux_2_17_x86_64");
    CHECK_FALSE(parse_wheel_name("pkg-1.0.tar.gz").ok);
    CHECK_FALSE(parse_wheel_name("pkg-1.0-py3-none.whl").ok);
}

TEST_CASE("one version comparison", "[version]") {
    auto v = [](const char* text) {
        Version out;
        std::string err;
        REQUIRE(parse_version(text, out, err));
        return out;
    };
    CHECK(compare_versions(v("3.11"), v("3.11.0")) == 0);
    CHECK(compare_versions(v("3.11.0rc1"), v("3.11.0")) < 0);
    CHECK(compare_versions(v("3.11.0.dev1"), v("3.11.0a1")) < 0);
    CHECK(compare_versions(v("3.11.0.post1"), v("3.11.0")) > 0);
    CHECK(compare_versions(v("1!1.0"), v("2.0")) > 0);
    CHECK(compare_versions(v("3.9"), v("3.10")) < 0);
    CHECK(compare_versions(v("1.0+local"), v("1.0")) == 0);
    CHECK(release_prefix_match(v("3.11.4"), v("3.11"), 2));
    CHECK_FALSE(release_prefix_match(v("3.12"), v("3.11"), 2));
    CHECK(release_prefix_match(v("3"), v("3.0"), 2)); // zero-padded

    Specifier s;
    std::string why;
    REQUIRE(parse_specifier("~=3.10", s, why));
    CHECK(specifier_matches(v("3.12.1"), "3.12.1", s));
    CHECK_FALSE(specifier_matches(v("4.0"), "4.0", s));
    CHECK_FALSE(parse_specifier("<3.*", s, why));
    CHECK(why.find("wildcard") != std::string::npos);
}
